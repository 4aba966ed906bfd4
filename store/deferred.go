package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Deferred sync. When the caller keeps another durable copy of the state
// (a snapshot holding the data, plus the log after it), the state file can
// be rebuilt from it, and a store opened with DeferSync commits without
// fsync. ringkvd no longer does (its snapshots hold no copy), but a file
// written so by an earlier release is still recognised. A crash of the process loses nothing (the kernel still holds every
// page written), but a crash of the machine may tear the file. To tell the
// two apart the store records the kernel's boot id while unsynced writes may
// be outstanding, and removes the record after a clean Close. At the next
// Open, a record from another boot means the machine went down with unsynced
// pages: Open returns ErrTorn and the caller must discard the file and
// rebuild it.

// bootIDPath is where Linux publishes a per-boot random id.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

func currentBootID() (string, error) {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (s *Store) markerPath() string { return s.path + ".unsynced" }

// markBeforeOpen, before the file is opened, fails with ErrTorn when a
// marker says a machine crash may have torn it, and records the boot id
// for a deferring store. settle reports whether a store that syncs must
// settle a marker of this boot once the file is open.
func (s *Store) markBeforeOpen() (settle bool, err error) {
	if s.opts.NoSync {
		return false, nil
	}
	boot, err := currentBootID()
	if err != nil || boot == "" {
		return false, nil
	}
	// A marker left by a deferring store (this one before, or an earlier
	// release) says whether the file may be torn.
	if err := s.checkMarker(boot); err != nil {
		return false, err
	}
	if !s.opts.DeferSync {
		return true, nil
	}
	s.bootID = boot
	if err := s.writeMarker(); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	return false, nil
}

// checkMarker fails with ErrTorn when a previous boot left unsynced writes.
func (s *Store) checkMarker(boot string) error {
	b, err := os.ReadFile(s.markerPath())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(bytes.TrimSpace(b), []byte(boot)) {
		return fmt.Errorf("%w: %s was written without fsync before boot %s", ErrTorn, s.path, bytes.TrimSpace(b))
	}
	return nil
}

// writeMarker records the current boot id, durably, before any unsynced
// commit.
func (s *Store) writeMarker() error {
	tmp := s.markerPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(s.bootID+"\n"), 0o600); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, s.markerPath()); err != nil {
		return err
	}
	return syncDir(filepath.Dir(s.path))
}

// settleMarker, for a store that syncs every commit, makes durable what a
// deferring store of this boot left unsynced (the process stopped, the
// machine did not), then removes its marker.
func (s *Store) settleMarker() error {
	if _, err := os.Stat(s.markerPath()); os.IsNotExist(err) {
		return nil
	}
	if err := s.db.Sync(); err != nil {
		return err
	}
	return s.clearMarker()
}

// clearMarker runs after a final fsync at Close.
func (s *Store) clearMarker() error {
	if err := os.Remove(s.markerPath()); err != nil && !os.IsNotExist(err) {
		return err
	}
	return syncDir(filepath.Dir(s.path))
}
