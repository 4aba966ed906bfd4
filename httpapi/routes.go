package httpapi

import (
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringkv/ringkv/raftnode"
)

// newRouter is a router that matches on the encoded path and answers an
// unknown path with a JSON 404 whose message begins with notFound.
func newRouter(notFound string) *mux.Router {
	r := mux.NewRouter()
	// Keys keep '%2F' and dot segments: match on the encoded path, never
	// clean or redirect.
	r.SkipClean(true)
	r.UseEncodedPath()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{WireError: wireErr(notFound+req.URL.Path, "not_found")})
	})
	return r
}

// routes declares every endpoint once. Each path has its methods and a
// fallback answering 405 with Allow.
func (a *API) routes() *mux.Router {
	r := newRouter("no such endpoint: ")

	if a.cfg.Pprof {
		r.HandleFunc("/debug/pprof/profile", pprof.Profile)
		r.HandleFunc("/debug/pprof/trace", pprof.Trace)
		r.PathPrefix("/debug/pprof/").HandlerFunc(pprof.Index)
	}

	type route struct {
		name    string
		path    string
		methods map[string]http.HandlerFunc
	}
	table := []route{
		// Matched by prefix, not by a pattern: the handlers take the key
		// from the encoded path themselves (kvRequest).
		{"kv", kvPrefix, map[string]http.HandlerFunc{
			http.MethodGet: a.getKV, http.MethodPut: a.putKV, http.MethodDelete: a.deleteKV}},
		{"status", "/v1/status", map[string]http.HandlerFunc{http.MethodGet: a.status}},
		{"ring", "/v1/ring", map[string]http.HandlerFunc{http.MethodGet: a.ring}},
		{"ring_lookup", "/v1/ring/lookup", map[string]http.HandlerFunc{http.MethodGet: a.lookup}},
		{"ring_plan", "/v1/ring/plan", map[string]http.HandlerFunc{http.MethodGet: a.ringPlan}},
		{"ring_groups", "/v1/ring/groups", map[string]http.HandlerFunc{http.MethodPost: a.ringAdd}},
		{"ring_group", "/v1/ring/groups/{id}", map[string]http.HandlerFunc{http.MethodDelete: a.ringRemove}},
		{"ring_weight", "/v1/ring/groups/{id}/weight", map[string]http.HandlerFunc{http.MethodPut: a.ringWeight}},
		{"ring_migration", "/v1/ring/migration", map[string]http.HandlerFunc{http.MethodDelete: a.ringAbort}},
		{"group_leader", "/v1/groups/{id}/leader", map[string]http.HandlerFunc{http.MethodPut: a.pinLeader, http.MethodDelete: a.pinLeader}},
		{"join", "/v1/cluster/join", map[string]http.HandlerFunc{http.MethodPost: a.join}},
		{"cluster", "/v1/cluster", map[string]http.HandlerFunc{http.MethodGet: a.cluster}},
		{"remove_node", "/v1/cluster/nodes/{id}", map[string]http.HandlerFunc{http.MethodDelete: a.removeNode}},
		{"drain_node", "/v1/cluster/nodes/{id}/drain", map[string]http.HandlerFunc{http.MethodPut: a.drainNode, http.MethodDelete: a.drainNode}},
		{"verify", "/v1/verify", map[string]http.HandlerFunc{http.MethodPost: a.verifyAll}},
		{"verify_group", "/v1/groups/{id}/verify", map[string]http.HandlerFunc{http.MethodPost: a.verifyGroup}},
		{"wait", "/v1/wait", map[string]http.HandlerFunc{http.MethodPost: a.wait}},
		{"snapshot", "/v1/snapshot", map[string]http.HandlerFunc{http.MethodPost: a.snapshot}},
		{"backup", "/v1/backup", map[string]http.HandlerFunc{http.MethodGet: a.backup}},
		{"restore", "/v1/restore", map[string]http.HandlerFunc{http.MethodPost: a.restore}},
		{"merkle", "/v1/groups/{id}/merkle", map[string]http.HandlerFunc{http.MethodGet: a.tree}},
		{"healthz", "/healthz", map[string]http.HandlerFunc{http.MethodGet: a.healthz}},
		{"readyz", "/readyz", map[string]http.HandlerFunc{http.MethodGet: a.readyz}},
		{"metrics", "/metrics", map[string]http.HandlerFunc{
			http.MethodGet: promhttp.HandlerFor(a.cfg.Registry, promhttp.HandlerOpts{}).ServeHTTP}},
	}
	if a.cfg.FaultHook {
		table = append(table, route{"fault", "/v1/debug/fault", map[string]http.HandlerFunc{http.MethodPost: a.fault}})
	}
	for _, rt := range table {
		h := a.byMethod(rt.name, rt.methods)
		if rt.path == kvPrefix {
			// Matched by prefix in ServeHTTP, before the router: every
			// read and write comes this way, and skips the router's
			// matching and request copies.
			a.kv = h
			continue
		}
		r.NewRoute().Path(rt.path).Handler(h)
	}
	// Every answer names the ring epoch this node routed it by.
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			a.setEpoch(w)
			next.ServeHTTP(w, req)
		})
	})
	return r
}

// peerRoutes declares the internal endpoints, which other nodes call on
// this node's Raft port (PeerHandler) and the client listener never serves.
func (a *API) peerRoutes() *mux.Router {
	r := newRouter("no such internal endpoint: ")
	for _, rt := range []struct {
		name    string
		path    string
		methods map[string]http.HandlerFunc
	}{
		{"checkpoint", "/v1/internal/groups/{id}/checkpoint", map[string]http.HandlerFunc{http.MethodGet: a.checkpoint}},
		{"restore_group", "/v1/internal/groups/{id}/restore", map[string]http.HandlerFunc{http.MethodPost: a.restoreGroup}},
		{"forward", "/v1/internal/forward", map[string]http.HandlerFunc{http.MethodPost: a.forward}},
		{"peer_status", raftnode.PeerStatusPath, map[string]http.HandlerFunc{http.MethodGet: a.status}},
	} {
		r.NewRoute().Path(rt.path).Handler(a.byMethod(rt.name, rt.methods))
	}
	return r
}

// byMethod answers a path's methods with their handlers (HEAD with GET's)
// and any other method with 405 and Allow, each measured as route name.
func (a *API) byMethod(name string, methods map[string]http.HandlerFunc) http.Handler {
	var allow []string
	handlers := map[string]http.Handler{}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		if h, ok := methods[m]; ok {
			allow = append(allow, m)
			handlers[m] = a.metrics.instrument(name, h)
		}
	}
	if h, ok := handlers[http.MethodGet]; ok {
		handlers[http.MethodHead] = h
	}
	allowed := strings.Join(allow, ", ")
	notAllowed := a.metrics.instrument(name, func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Allow", allowed)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{WireError: wireErr(
			"method "+req.Method+" is not allowed here; allowed: "+allowed, codeMethodNotAllowed)})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if h, ok := handlers[req.Method]; ok {
			h.ServeHTTP(w, req)
			return
		}
		notAllowed.ServeHTTP(w, req)
	})
}

// setEpoch names, in an answer's headers, the ring epoch this node routes by.
func (a *API) setEpoch(w http.ResponseWriter) {
	w.Header()["X-Ring-Epoch"] = []string{strconv.FormatUint(a.b.RingEpoch(), 10)}
}
