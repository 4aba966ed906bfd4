package raftnode_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/raftnode/raftnodetest"
)

// BenchmarkPut measures the write path of an in-process 3-node cluster:
// with one group and Puts issued on its leader (the Raft path alone), and
// with three groups and Puts issued on every node in turn (forwarding
// included).
func BenchmarkPut(b *testing.B) {
	for _, bc := range []struct {
		groups, conc int
		anyNode      bool
	}{{1, 1, false}, {1, 64, false}, {1, 64, true}, {3, 64, false}, {3, 64, true}} {
		b.Run(fmt.Sprintf("groups=%d/conc=%d/any-node=%v", bc.groups, bc.conc, bc.anyNode), func(b *testing.B) {
			c := raftnodetest.Start(b, raftnodetest.Options{Groups: bc.groups})
			c.WaitConverged()
			leaders := map[base.GroupID]*raftnode.Node{}
			for g := 1; g <= bc.groups; g++ {
				leaders[base.GroupID(g)] = c.Members[c.WaitForLeader(base.GroupID(g))].Node
			}
			target := func(i int64, key []byte) *raftnode.Node {
				if bc.anyNode {
					return c.Members[i%3].Node
				}
				l, _ := c.Members[0].Node.Lookup(key)
				return leaders[l.Group]
			}
			conc := bc.conc
			ctx := raftnodetest.Ctx(b, 10*time.Minute) // one context, not one per put
			value := make([]byte, 128)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						key := []byte(fmt.Sprintf("k%d", i%10000))
						if _, _, err := target(i, key).Put(ctx, key, value, raftnode.WriteOptions{}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "puts/s")
		})
	}
}
