package raftnode

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/logstore"
)

// A data dir keeps the log store it was created with: a new one takes the
// flag or the default and records it; one of an earlier release (no
// record, raft.db files) stays on raft-boltdb with no flag needed; a flag
// naming another store than the data dir's is refused, not obeyed.
func TestDataDirKeepsItsLogStore(t *testing.T) {
	marker := func(dir string) string {
		b, _ := os.ReadFile(filepath.Join(dir, logStoreFile))
		return strings.TrimSpace(string(b))
	}
	dir := t.TempDir()
	if k, err := resolveLogStore(dir, ""); err != nil || k != logstore.Kinds[0] || marker(dir) != k {
		t.Fatalf("new data dir: %q, %v (recorded %q); want the default %q", k, err, marker(dir), logstore.Kinds[0])
	}
	if k, err := resolveLogStore(dir, ""); err != nil || k != logstore.Kinds[0] {
		t.Fatalf("restart: %q, %v", k, err)
	}
	if _, err := resolveLogStore(dir, logstore.KindBolt); err == nil || !strings.Contains(err.Error(), "cannot read them") {
		t.Fatalf("--log-store boltdb on a wal data dir: %v; want a refusal", err)
	}

	dir = t.TempDir()
	if k, err := resolveLogStore(dir, logstore.KindBolt); err != nil || k != logstore.KindBolt || marker(dir) != k {
		t.Fatalf("new data dir with --log-store boltdb: %q, %v", k, err)
	}

	// A data dir of a release before the record: raft.db in its groups.
	old := t.TempDir()
	meta := groupDir(old, base.MetaGroup)
	if err := os.MkdirAll(meta, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(meta, "raft.db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveLogStore(old, logstore.KindWAL); err == nil {
		t.Fatal("--log-store wal accepted on a raft-boltdb data dir")
	}
	if k, err := resolveLogStore(old, ""); err != nil || k != logstore.KindBolt || marker(old) != logstore.KindBolt {
		t.Fatalf("an earlier release's data dir: %q, %v; want boltdb, recorded", k, err)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, logStoreFile), []byte("leveldb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveLogStore(bad, ""); err == nil {
		t.Fatal("an unknown store in the record was accepted")
	}
}
