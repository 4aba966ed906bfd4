package chaos

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// op builds an operation; ret < 0 marks an unknown outcome.
func op(client int, in Input, call int64, out Output, ret int64) porcupine.Operation {
	if out.Unknown {
		ret = 1 << 62
	}
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func put(k, v string) Input           { return Input{Op: OpPut, Key: k, Value: v} }
func get(k string) Input              { return Input{Op: OpGet, Key: k} }
func cas(k, v string, e uint64) Input { return Input{Op: OpCAS, Key: k, Value: v, CAS: e} }
func del(k string) Input              { return Input{Op: OpDelete, Key: k} }

func TestModel(t *testing.T) {
	tests := []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"sequential", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{OK: true, Index: 5}, 10),
			op(1, get("x"), 20, Output{OK: true, Value: "a", Index: 5}, 30),
		}, true},
		{"stale read after an acknowledged write", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{OK: true, Index: 5}, 10),
			op(0, put("x", "b"), 20, Output{OK: true, Index: 6}, 30),
			op(1, get("x"), 40, Output{OK: true, Value: "a", Index: 5}, 50),
		}, false},
		{"concurrent read may see either", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{OK: true, Index: 5}, 10),
			op(0, put("x", "b"), 20, Output{OK: true, Index: 6}, 50),
			op(1, get("x"), 25, Output{OK: true, Value: "a", Index: 5}, 30),
		}, true},
		{"acknowledged write lost", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{OK: true, Index: 5}, 10),
			op(1, get("x"), 20, Output{}, 30),
		}, false},
		{"unknown write may have happened", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{Unknown: true}, 0),
			op(1, get("x"), 20, Output{OK: true, Value: "a", Index: 9}, 30),
			op(1, get("x"), 40, Output{OK: true, Value: "a", Index: 9}, 50),
		}, true},
		{"unknown write may not have happened", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{Unknown: true}, 0),
			op(1, get("x"), 20, Output{}, 30),
		}, true},
		{"unknown write cannot change its index later", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{Unknown: true}, 0),
			op(1, get("x"), 20, Output{OK: true, Value: "a", Index: 9}, 30),
			op(1, get("x"), 40, Output{OK: true, Value: "a", Index: 10}, 50),
		}, false},
		{"refused write has no effect", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{OK: true, Index: 5}, 10),
			op(1, del("x"), 20, Output{OK: true}, 30),
			op(1, get("x"), 40, Output{}, 50),
		}, true},
		{"cas succeeds only on the current index", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{OK: true, Index: 5}, 10),
			op(1, cas("x", "b", 4), 20, Output{Current: 5}, 30),
			op(1, cas("x", "c", 5), 40, Output{OK: true, Index: 7}, 50),
			op(1, get("x"), 60, Output{OK: true, Value: "c", Index: 7}, 70),
		}, true},
		{"cas succeeding on a stale index", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{OK: true, Index: 5}, 10),
			op(0, put("x", "b"), 20, Output{OK: true, Index: 6}, 30),
			op(1, cas("x", "c", 5), 40, Output{OK: true, Index: 7}, 50),
		}, false},
		{"create-only cas on an existing key", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{OK: true, Index: 5}, 10),
			op(1, cas("x", "b", 0), 20, Output{OK: true, Index: 6}, 30),
		}, false},
		{"keys are independent", []porcupine.Operation{
			op(0, put("x", "a"), 0, Output{OK: true, Index: 5}, 10),
			op(1, get("y"), 20, Output{}, 30),
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Check(tt.ops, 5*time.Second, filepath.Join(t.TempDir(), "viz.html"))
			if err != nil {
				t.Fatal(err)
			}
			if v.Linearizable != tt.ok {
				t.Fatalf("linearizable = %v, want %v", v.Linearizable, tt.ok)
			}
			if !tt.ok && v.Visualization == "" {
				t.Error("no visualization written for a violation")
			}
		})
	}
}

func TestHistoryRecordsUnknownAsOpenEnded(t *testing.T) {
	h := NewHistory()
	call := h.Now()
	h.Add(0, put("x", "a"), call, Output{Unknown: true}, h.Now())
	ops := h.Operations()
	if len(ops) != 1 || ops[0].Return <= ops[0].Call || ops[0].Return < 1<<62 {
		t.Fatalf("unknown outcome recorded as %+v, want an open-ended return", ops)
	}
}

// A key whose write had an unknown outcome is never picked again.
func TestRetiredKeyIsNotPickedAgain(t *testing.T) {
	ks := &keySet{keys: []string{"lin/0", "lin/1"}, ops: make([]int, 2), gen: 2}
	ks.retire("lin/0")
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		seen[ks.pick(rng, 1000)] = true
	}
	if seen["lin/0"] || !seen["lin/1"] || !seen["lin/3"] || len(seen) != 2 {
		t.Fatalf("picked %v after retiring lin/0: want lin/1 and its replacement lin/3 only", seen)
	}
}
