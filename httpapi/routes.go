package httpapi

import (
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes declares every endpoint once. Each path has its methods and a
// fallback answering 405 with Allow.
func (a *API) routes() *mux.Router {
	r := mux.NewRouter()
	// Keys keep '%2F' and dot segments: match on the encoded path, never
	// clean or redirect.
	r.SkipClean(true)
	r.UseEncodedPath()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{WireError: wireErr("no such endpoint: "+req.URL.Path, "not_found")})
	})

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
		// from the encoded path themselves (kvRequest), and this is the
		// route every read and write goes through.
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
		{"checkpoint", "/v1/internal/groups/{id}/checkpoint", map[string]http.HandlerFunc{http.MethodGet: a.checkpoint}},
		{"restore_group", "/v1/internal/groups/{id}/restore", map[string]http.HandlerFunc{http.MethodPost: a.restoreGroup}},
		{"forward", "/v1/internal/forward", map[string]http.HandlerFunc{http.MethodPost: a.forward}},
		{"healthz", "/healthz", map[string]http.HandlerFunc{http.MethodGet: a.healthz}},
		{"readyz", "/readyz", map[string]http.HandlerFunc{http.MethodGet: a.readyz}},
		{"metrics", "/metrics", map[string]http.HandlerFunc{
			http.MethodGet: promhttp.HandlerFor(a.cfg.Registry, promhttp.HandlerOpts{}).ServeHTTP}},
	}
	if a.cfg.FaultHook {
		table = append(table, route{"fault", "/v1/debug/fault", map[string]http.HandlerFunc{http.MethodPost: a.fault}})
	}
	match := func(path string) *mux.Route {
		if path == kvPrefix {
			return r.NewRoute().MatcherFunc(func(req *http.Request, _ *mux.RouteMatch) bool {
				return strings.HasPrefix(req.URL.EscapedPath(), kvPrefix)
			})
		}
		return r.NewRoute().Path(path)
	}
	for _, rt := range table {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
			if h, ok := rt.methods[m]; ok {
				allow = append(allow, m)
				methods := []string{m}
				if m == http.MethodGet {
					methods = append(methods, http.MethodHead)
				}
				match(rt.path).Methods(methods...).Handler(a.metrics.instrument(rt.name, h))
			}
		}
		allowed := strings.Join(allow, ", ")
		match(rt.path).Handler(a.metrics.instrument(rt.name, func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Allow", allowed)
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{WireError: wireErr(
				"method "+req.Method+" is not allowed here; allowed: "+allowed, codeMethodNotAllowed)})
		}))
	}
	// Every answer names the ring epoch this node routed it by.
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("X-Ring-Epoch", strconv.FormatUint(a.b.RingEpoch(), 10))
			next.ServeHTTP(w, req)
		})
	})
	return r
}
