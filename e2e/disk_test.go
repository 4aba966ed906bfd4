package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ringkv/ringkv/logstore"
)

// TestDiskSpaceComesBackAfterDeletes writes 100 MiB of values to one node,
// deletes nine in ten and takes one snapshot: the state files shrink to
// about the live data, the Raft logs to half of it, the snapshots hold
// none, the whole data dir is within 2x the live data, and the node
// restarts on them with every live value intact.
func TestDiskSpaceComesBackAfterDeletes(t *testing.T) {
	for _, kind := range logstore.Kinds {
		t.Run(kind, func(t *testing.T) { diskSpaceComesBack(t, kind) })
	}
}

// diskSpaceComesBack runs TestDiskSpaceComesBackAfterDeletes on one log
// store. raft-wal preallocates its segment files and drops a segment only
// once all of it is truncated: each group may hold two segments besides
// the live entries, a fixed cost per group the bounds allow for.
func diskSpaceComesBack(t *testing.T, kind string) {
	const (
		groups    = 2
		values    = 1000
		valueSize = 100 << 10
		keepEvery = 10
	)
	var segments int64
	if kind == logstore.KindWAL {
		segments = 2 * logstore.WALSegmentBytes
	}
	c := startCluster(t, 1, "--groups", fmt.Sprint(groups), "--log-store", kind)
	c.waitReady(1)
	url := c.procs[0].URL()
	value := make([]byte, valueSize)
	rand.Read(value)

	each := func(what string, fn func(i int) (*http.Request, int)) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, values)
		work := make(chan int)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					req, want := fn(i)
					if req == nil {
						continue
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						errs <- err
						continue
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != want {
						errs <- fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, body)
					}
				}
			}()
		}
		for i := 0; i < values; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%s: %v", what, err)
		}
	}
	each("write", func(i int) (*http.Request, int) {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/kv/big/%d", url, i), bytes.NewReader(value))
		return req, http.StatusOK
	})
	each("delete", func(i int) (*http.Request, int) {
		if i%keepEvery == 0 {
			return nil, 0
		}
		req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/v1/kv/big/%d", url, i), nil)
		return req, http.StatusOK
	})
	resp, err := http.Post(url+"/v1/snapshot", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("snapshot: %d %s", resp.StatusCode, body)
	}

	live := int64(values/keepEvery) * valueSize
	sizes := groupFiles(t, c.procs[0].DataDir)
	t.Logf("live %d B; on disk: %v", live, sizes)
	const slack = 1 << 20
	limits := map[string]int64{
		"state.db": live + live/4 + slack,
		// A snapshot holds no copy of the data (the state file is it).
		"snapshots": 64 << 10,
		// The log keeps at most half the live data's worth of entries per
		// group, and at least 1 MiB.
		"raft.db": max(live/2, groups*1<<20) + live/4 + slack,
		"wal":     max(live/2, groups*1<<20) + live/4 + slack + groups*segments,
	}
	for kind, limit := range limits {
		if sizes[kind] > limit {
			t.Errorf("%s: %d bytes on disk for %d bytes of live data, want at most %d", kind, sizes[kind], live, limit)
		}
	}
	// Everything the node keeps, the metadata group included.
	// The metadata group's log too.
	if total := dirAllocated(t, c.procs[0].DataDir); total > 2*live+(groups+1)*segments {
		t.Errorf("the data dir takes %d bytes for %d bytes of live data (%.2fx), want at most 2x and %d bytes of WAL segments", total, live, float64(total)/float64(live), (groups+1)*segments)
	} else {
		t.Logf("data dir %d bytes, %.2fx the live data", total, float64(total)/float64(live))
	}

	check := func() {
		t.Helper()
		for i := 0; i < values; i++ {
			resp, err := http.Get(fmt.Sprintf("%s/v1/kv/big/%d", url, i))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case i%keepEvery == 0 && (resp.StatusCode != http.StatusOK || !bytes.Equal(got, value)):
				t.Fatalf("big/%d: %d, %d bytes, want the value written", i, resp.StatusCode, len(got))
			case i%keepEvery != 0 && resp.StatusCode != http.StatusNotFound:
				t.Fatalf("big/%d: %d after its delete", i, resp.StatusCode)
			}
		}
	}
	check()
	if err := c.procs[0].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.procs[0].Start(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(1)
	check()
}

// allocated is the disk space a file takes, as du counts it: bbolt grows a
// file ahead of its pages without writing them.
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// dirAllocated is the disk space everything under dir takes.
func dirAllocated(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			total += allocated(fi)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// groupFiles sums, over the data groups of a data dir, the sizes of their
// state files, snapshot directories and Raft logs (allocated bytes).
func groupFiles(t *testing.T, dataDir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	root := filepath.Join(dataDir, "groups")
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == "0" {
			continue // the metadata group
		}
		err := filepath.Walk(filepath.Join(root, e.Name()), func(path string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(filepath.Join(root, e.Name()), path)
			kind := strings.SplitN(rel, string(filepath.Separator), 2)[0]
			out[kind] += allocated(fi)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}
