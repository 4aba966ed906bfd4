package e2e

import (
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

var restartKeys = flag.Int("restart.keys", 10000, "keys loaded before BenchmarkRestart restarts the node")

// BenchmarkRestart loads a single node with -restart.keys keys, kills it
// with SIGKILL and reports how long the restarted node takes to serve a
// linearizable read again. Run it at two sizes to see that restart time does
// not grow with the data:
//
//	go test ./e2e -run XXX -bench Restart -benchtime 1x -restart.keys 10000
//	go test ./e2e -run XXX -bench Restart -benchtime 1x -restart.keys 1000000 -timeout 60m
func BenchmarkRestart(b *testing.B) {
	c := startCluster(b, 1)
	p := c.procs[0]
	value := make([]byte, 128)
	load := ctx(b, 2*time.Hour) // one context for the load, not one per put
	var next atomic.Int64
	var wg sync.WaitGroup
	loadStart := time.Now()
	for w := 0; w < 128; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(*restartKeys) {
					return
				}
				k := fmt.Sprintf("key/%09d", i)
				for {
					if _, err := p.Client.Put(load, k, value, client.PutOptions{}); err == nil {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	b.Logf("loaded %d keys in %v", *restartKeys, time.Since(loadStart).Round(time.Millisecond))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Kill(); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := p.Start(); err != nil {
			b.Fatal(err)
		}
		c.waitReady(1)
		for {
			v, err := p.Client.Get(load, fmt.Sprintf("key/%09d", *restartKeys-1), "linearizable")
			if err == nil && len(v.Data) == 128 {
				break
			}
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/restart")
		b.Logf("%d keys: restarted and served a linearizable read in %v", *restartKeys, time.Since(start).Round(time.Millisecond))
	}
}
