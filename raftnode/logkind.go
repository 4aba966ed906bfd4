package raftnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/logstore"
)

// logStoreFile, in the data dir, names the store its groups keep their
// Raft logs in (logstore.KindWAL or KindBolt).
const logStoreFile = "log-store"

// resolveLogStore decides the store of a data dir's Raft logs: the one
// the data dir records, or, for a data dir of a release that did not
// record it, the one its groups hold; a new data dir takes want, or the
// default. A data dir keeps its store: want naming another is an error,
// for its logs could not be read.
func resolveLogStore(dataDir, want string) (string, error) {
	have := ""
	if b, err := os.ReadFile(filepath.Join(dataDir, logStoreFile)); err == nil {
		have = strings.TrimSpace(string(b))
		if !slices.Contains(logstore.Kinds, have) {
			return "", fmt.Errorf("%s: unknown log store %q", filepath.Join(dataDir, logStoreFile), have)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	} else {
		have = detectLogStore(dataDir)
	}
	switch {
	case have != "" && want != "" && want != have:
		return "", fmt.Errorf("data dir %s keeps its Raft logs in %s; --log-store %s cannot read them (leave --log-store out, or start on an empty data dir)", dataDir, have, want)
	case have == "" && want != "":
		have = want
	case have == "":
		have = logstore.Kinds[0]
	}
	if err := os.WriteFile(filepath.Join(dataDir, logStoreFile), []byte(have+"\n"), 0o644); err != nil {
		return "", err
	}
	return have, nil
}

// detectLogStore is the store the groups of a data dir hold their logs
// in, "" when none holds one.
func detectLogStore(dataDir string) string {
	dirs := []string{groupDir(dataDir, base.MetaGroup)}
	if ids, err := localGroups(dataDir); err == nil {
		for _, id := range ids {
			dirs = append(dirs, groupDir(dataDir, id))
		}
	}
	for _, d := range dirs {
		if k := logstore.Detect(d); k != "" {
			return k
		}
	}
	return ""
}
