package httpapi

import (
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringkv/ringkv/protocol"
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

// endpoint is one method of a route: its handler and what it needs of
// the request's token when access control is on.
type endpoint struct {
	h    http.HandlerFunc
	need need
}

// route is a path with its methods.
type route struct {
	name    string
	path    string
	methods map[string]endpoint
}

// routeTable declares every endpoint of the client port once, each method
// with what access control asks of it. A route added here without a need
// reads as needNothing (open); TestEveryRouteHasARowInTheAccessTable
// keeps that from happening unnoticed.
func (a *API) routeTable() []route {
	const (
		get, put, post, del = http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete
	)
	e := func(h handler, n need) endpoint { return endpoint{answer(h), n} }
	table := []route{
		// Matched by prefix, not by a pattern: the handlers take the key
		// from the encoded path themselves (kvRequest) and check it.
		{"kv", kvPrefix, map[string]endpoint{get: e(a.getKV, needKeys), put: e(a.putKV, needKeys), del: e(a.deleteKV, needKeys)}},
		// Matched by prefix: the handler takes the prefix from the path
		// and shows only the keys the token may read.
		{"watch", watchPrefix, map[string]endpoint{get: e(a.watch, needKeys)}},
		{"status", "/v1/status", map[string]endpoint{get: e(a.status, needOperatorRead)}},
		{"ring", "/v1/ring", map[string]endpoint{get: e(a.ring, needOperatorRead)}},
		{"ring_lookup", "/v1/ring/lookup", map[string]endpoint{get: e(a.lookup, needOperatorRead)}},
		{"ring_plan", "/v1/ring/plan", map[string]endpoint{get: e(a.ringPlan, needOperatorRead)}},
		{"ring_groups", "/v1/ring/groups", map[string]endpoint{post: e(a.ringAdd, needOperatorWrite)}},
		{"ring_group", "/v1/ring/groups/{id}", map[string]endpoint{del: e(a.ringRemove, needOperatorWrite)}},
		{"ring_weight", "/v1/ring/groups/{id}/weight", map[string]endpoint{put: e(a.ringWeight, needOperatorWrite)}},
		{"ring_migration", "/v1/ring/migration", map[string]endpoint{del: e(a.ringAbort, needOperatorWrite)}},
		{"group_leader", "/v1/groups/{id}/leader", map[string]endpoint{put: e(a.pinLeader, needOperatorWrite), del: e(a.pinLeader, needOperatorWrite)}},
		{"join", "/v1/cluster/join", map[string]endpoint{post: e(a.join, needOperatorWrite)}},
		{"peer_secret", raftnode.PeerSecretPath, map[string]endpoint{get: e(a.peerSecret, needOperatorWrite)}},
		{"cluster", "/v1/cluster", map[string]endpoint{get: e(a.cluster, needOperatorRead)}},
		{"remove_node", "/v1/cluster/nodes/{id}", map[string]endpoint{del: e(a.removeNode, needOperatorWrite)}},
		{"drain_node", "/v1/cluster/nodes/{id}/drain", map[string]endpoint{put: e(a.drainNode, needOperatorWrite), del: e(a.drainNode, needOperatorWrite)}},
		{"verify", "/v1/verify", map[string]endpoint{post: e(a.verifyAll, needVerify)}},
		{"verify_group", "/v1/groups/{id}/verify", map[string]endpoint{post: e(a.verifyGroup, needVerify)}},
		{"wait", "/v1/wait", map[string]endpoint{post: e(a.wait, needIdentity)}},
		{"snapshot", "/v1/snapshot", map[string]endpoint{post: e(a.snapshot, needOperatorWrite)}},
		{"backup", "/v1/backup", map[string]endpoint{get: e(a.backup, needOperatorRead)}},
		{"restore", "/v1/restore", map[string]endpoint{post: e(a.restore, needOperatorWrite)}},
		{"merkle", "/v1/groups/{id}/merkle", map[string]endpoint{get: e(a.tree, needOperatorRead)}},
		{"healthz", "/healthz", map[string]endpoint{get: e(a.healthz, needNothing)}},
		{"readyz", "/readyz", map[string]endpoint{get: e(a.readyz, needNothing)}},
		{"metrics", "/metrics", map[string]endpoint{
			get: {promhttp.HandlerFor(a.cfg.Registry, promhttp.HandlerOpts{}).ServeHTTP, needOperatorRead}}},
		{"acl_bootstrap", "/v1/acl/bootstrap", map[string]endpoint{post: e(a.aclBootstrap, needNothing)}},
		{"acl_policy", "/v1/acl/policy", map[string]endpoint{post: e(a.aclPolicyCreate, needManagement)}},
		{"acl_policy_name", "/v1/acl/policy/{name}", map[string]endpoint{
			get: e(a.aclPolicyGet, needManagement), put: e(a.aclPolicyUpdate, needManagement), del: e(a.aclPolicyDelete, needManagement)}},
		{"acl_policies", "/v1/acl/policies", map[string]endpoint{get: e(a.aclPolicies, needManagement)}},
		{"acl_token", "/v1/acl/token", map[string]endpoint{post: e(a.aclTokenCreate, needManagement)}},
		// Before acl_token_id, which would take "self" for an accessor.
		{"acl_token_self", "/v1/acl/token/self", map[string]endpoint{get: e(a.aclTokenSelf, needToken)}},
		{"acl_token_id", "/v1/acl/token/{accessor}", map[string]endpoint{get: e(a.aclTokenGet, needManagement), del: e(a.aclTokenDelete, needManagement)}},
		{"acl_tokens", "/v1/acl/tokens", map[string]endpoint{get: e(a.aclTokens, needManagement)}},
	}
	if a.cfg.FaultHook {
		table = append(table, route{"fault", "/v1/debug/fault", map[string]endpoint{post: e(a.fault, needFaultHook)}})
	}
	if a.cfg.Pprof {
		all := func(h http.HandlerFunc) map[string]endpoint {
			return map[string]endpoint{get: {h, needOperatorWrite}, post: {h, needOperatorWrite}}
		}
		table = append(table, route{"pprof_profile", "/debug/pprof/profile", all(pprof.Profile)},
			route{"pprof_trace", "/debug/pprof/trace", all(pprof.Trace)},
			route{"pprof", "/debug/pprof/", all(pprof.Index)})
	}
	return table
}

// routes builds the client port's router from table. Each path has its
// methods and a fallback answering 405 with Allow.
func (a *API) routes(table []route) *mux.Router {
	r := newRouter("no such endpoint: ")
	for _, rt := range table {
		methods := map[string]http.HandlerFunc{}
		for m, ep := range rt.methods {
			methods[m] = a.guard(rt.name, ep.need, ep.h)
		}
		h := a.byMethod(rt.name, methods)
		switch {
		case rt.path == kvPrefix:
			// Matched by prefix in ServeHTTP, before the router: every
			// read and write comes this way, and skips the router's
			// matching and request copies.
			a.kv = h
		case rt.name == "pprof" || rt.name == "watch":
			r.PathPrefix(rt.path).Handler(h)
		default:
			r.NewRoute().Path(rt.path).Handler(h)
		}
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
		{"checkpoint", "/v1/internal/groups/{id}/checkpoint", map[string]http.HandlerFunc{http.MethodGet: answer(a.checkpoint)}},
		{"restore_group", "/v1/internal/groups/{id}/restore", map[string]http.HandlerFunc{http.MethodPost: answer(a.restoreGroup)}},
		{"forward", protocol.ForwardPath, map[string]http.HandlerFunc{http.MethodPost: answer(a.forward)}},
		{"peer_status", raftnode.PeerStatusPath, map[string]http.HandlerFunc{http.MethodGet: answer(a.status)}},
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
