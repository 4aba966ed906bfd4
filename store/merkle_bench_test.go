package store

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ringkv/ringkv/snapshot"
)

var (
	benchKeys  = flag.Int("merkle.keys", 100_000, "keys in the store for BenchmarkTreeBuild")
	benchDepth = flag.Int("merkle.depth", snapshot.DefaultTreeDepth, "tree depth for the benchmarks")
)

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{Group: 1, NoSync: true, MmapSize: 64 << 20, TreeDepth: *benchDepth})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkApplyBatch measures the cost of keeping the Merkle tree: the
// store's ApplyBatch (tree maintained in the same transaction) against the
// same bbolt writes with no tree, batches of 64 puts of 128-byte values
// over 100k keys.
func BenchmarkApplyBatch(b *testing.B) {
	val := make([]byte, 128)
	batch := func(rng *rand.Rand, next *uint64) []LogEntry {
		es := make([]LogEntry, 64)
		for i := range es {
			*next++
			es[i] = LogEntry{Index: *next, Data: put(fmt.Sprintf("key-%06d", rng.Intn(100_000)), string(val))}
		}
		return es
	}
	b.Run("merkle", func(b *testing.B) {
		s := benchStore(b)
		rng, next := rand.New(rand.NewSource(1)), uint64(0)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.ApplyBatch(batch(rng, &next)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "writes/s")
	})
	b.Run("bbolt-only", func(b *testing.B) {
		db, err := bolt.Open(filepath.Join(b.TempDir(), "plain.db"), 0o600, &bolt.Options{NoSync: true, InitialMmapSize: 64 << 20, FreelistType: bolt.FreelistMapType})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.Update(func(tx *bolt.Tx) error {
			tx.CreateBucketIfNotExists(bucketKV)
			_, err := tx.CreateBucketIfNotExists(bucketMeta)
			return err
		})
		rng, next := rand.New(rand.NewSource(1)), uint64(0)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			es := batch(rng, &next)
			err := db.Update(func(tx *bolt.Tx) error {
				kv := tx.Bucket(bucketKV)
				for _, e := range es {
					cmd, err := DecodeCommand(e.Data)
					if err != nil {
						return err
					}
					create := e.Index
					if old := kv.Get(cmd.Key); old != nil {
						create, _ = binary.Uvarint(old)
					}
					if err := kv.Put(cmd.Key, encodeRecord(create, e.Index, cmd.Value)); err != nil {
						return err
					}
				}
				return putU64(tx.Bucket(bucketMeta), keyApplied, next)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "writes/s")
	})
}

// BenchmarkApplyWaves measures the state machine as a group's replica
// runs it under load: each log entry a wave of 48 puts packed into one
// batch (128-byte values, 10k keys), applied one entry at a time, commits
// deferred as ringkvd defers them (flushed every 64 entries here, about a
// second of waves at 256 clients).
func BenchmarkApplyWaves(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{Group: 1, NoSync: true, MmapSize: 64 << 20, TreeDepth: *benchDepth, CommitDelay: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng, val := rand.New(rand.NewSource(1)), make([]byte, 128)
	waves := make([][]byte, 256)
	for i := range waves {
		seen := map[int]bool{}
		var cmds [][]byte
		for len(cmds) < 48 {
			k := rng.Intn(10_000)
			if !seen[k] {
				seen[k] = true
				cmds = append(cmds, put(fmt.Sprintf("key-%06d", k), string(val)))
			}
		}
		waves[i] = EncodeBatch(cmds)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.ApplyBatch([]LogEntry{{Index: uint64(i + 1), Term: 1, Data: waves[i%len(waves)]}}); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			s.mu.RLock()
			err := s.flush()
			s.mu.RUnlock()
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*48)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkTreeBuild measures recomputing a group's Merkle tree from all
// its entries (what a deep verification and a restore check do) and
// reading the kept root, for -merkle.keys keys.
func BenchmarkTreeBuild(b *testing.B) {
	s := benchStore(b)
	val := string(make([]byte, 128))
	const per = 1000
	for n := 0; n < *benchKeys; n += per {
		es := make([]LogEntry, per)
		for i := range es {
			es[i] = LogEntry{Index: uint64(n + i + 1), Data: put(fmt.Sprintf("key-%08d", n+i), val)}
		}
		if _, err := s.ApplyBatch(es); err != nil {
			b.Fatal(err)
		}
	}
	b.Run(fmt.Sprintf("build/%d", *benchKeys), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var t *snapshot.Tree
			err := s.db.View(func(tx *bolt.Tx) error {
				var err error
				t, err = buildTree(tx, *benchDepth)
				return err
			})
			if err != nil || t.Root() != s.Root().Hash {
				b.Fatalf("rebuilt root %v, kept %x: %v", t, s.Root().Hash, err)
			}
		}
	})
	b.Run(fmt.Sprintf("root/%d", *benchKeys), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = s.Root()
		}
	})
}
