package logstore

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// The log stores a group can keep its Raft log in (ringkvd --log-store).
const (
	KindWAL  = "wal"    // hashicorp/raft-wal, in the group's wal/ directory
	KindBolt = "boltdb" // hashicorp/raft-boltdb, the group's raft.db file
)

// Kinds lists the stores, the default for new data dirs first.
var Kinds = []string{KindWAL, KindBolt}

// Store is a group's Raft log and stable store.
type Store interface {
	raft.LogStore
	raft.StableStore
	// TrailingWithin is how many of the newest entries raft should keep
	// after a snapshot so that they hold at most limit bytes.
	TrailingWithin(limit int64, maxEntries uint64) uint64
	Close() error
}

// Detect names the store group directory dir holds: KindBolt or KindWAL,
// or "" when it holds no log yet.
func Detect(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); err == nil {
		return KindBolt
	}
	if _, err := os.Stat(filepath.Join(dir, "wal")); err == nil {
		return KindWAL
	}
	return ""
}

// Open opens the log of kind in group directory dir, remembering the
// sizes of up to sizes of its newest entries. onFatal is called if the
// log is lost beyond repair (Bolt's compaction could not reopen it).
func Open(kind, dir string, sizes int, log *slog.Logger, hlog hclog.Logger, onFatal func(error)) (Store, error) {
	switch kind {
	case KindWAL:
		return OpenWAL(filepath.Join(dir, "wal"), sizes, hlog)
	case KindBolt:
		// The log's free pages are not written at each append (one page
		// write fewer per append); bbolt finds them again by walking the
		// file when it opens, which for a log compacted by snapshots is
		// a small file.
		return OpenBolt(raftboltdb.Options{
			Path:        filepath.Join(dir, "raft.db"),
			BoltOptions: &bolt.Options{Timeout: 5 * time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true},
		}, sizes, log, onFatal)
	}
	return nil, fmt.Errorf("log store %q: want %s or %s", kind, KindWAL, KindBolt)
}
