package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A server that stops answering for a while in the middle of a run: the
// run counts its operations and errors, and its longest stall covers the
// outage.
func TestRunMeasuresOpsErrorsAndStall(t *testing.T) {
	const outage = 300 * time.Millisecond
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			w.WriteHeader(http.StatusNotFound) // the client's probes and refreshes
			return
		}
		i := n.Add(1)
		switch {
		case i == 20:
			time.Sleep(outage) // the outage: this request hangs
		case i > 20 && i <= 25:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":"no_leader","message":"no leader"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"index":1}`))
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.Endpoints = []string{srv.URL}
	cfg.Concurrency = 1
	cfg.Duration = 0
	cfg.Ops = 100
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.All.Ops != 95 || res.All.Errors != 5 {
		t.Fatalf("ops %d errors %d, want 95 and 5", res.All.Ops, res.All.Errors)
	}
	if res.MaxStall < outage || res.MaxStall > res.Elapsed {
		t.Fatalf("longest stall %v: want at least the %v outage and at most the run's %v", res.MaxStall, outage, res.Elapsed)
	}
}

// A node that does not answer at all costs the run nothing: the client's
// first probe opens its breaker and every operation goes to the live one.
func TestRunMovesOffADeadEndpoint(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // connections to it are refused
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"index":1}`))
	}))
	defer live.Close()
	cfg := DefaultConfig()
	cfg.Endpoints = []string{dead.URL, live.URL}
	cfg.Concurrency = 1
	cfg.Duration = 0
	cfg.Ops = 50
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.All.Errors != 0 || res.All.Ops != 50 {
		t.Fatalf("errors %d ops %d: want 50 operations on the live node", res.All.Errors, res.All.Ops)
	}
	if len(res.Nodes) != 2 || res.Nodes[0].Requests != 0 || res.Nodes[1].Share != 1 {
		t.Fatalf("per-node shares %+v: want none to the dead node, all to the live one", res.Nodes)
	}
}
