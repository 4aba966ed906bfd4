package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// The identities every route is tried with, in the order of accessRow.want.
var identities = []string{"none", "anonymous", "read app/", "write app/", "operator read", "operator write", "management", "deleted"}

// accessRow is one request and what each identity gets: a allowed (any
// status but 401 and 403), u 401 unauthorized, f 403 forbidden.
type accessRow struct {
	route, method, path, body string
	want                      string
}

const (
	operatorRead  = "uuffaaau"
	operatorWrite = "uufffaau"
	management    = "uuffffau"
	open          = "aaaaaaaa"
)

// accessTable is the one place that says who may call what. Every method
// of every route of routeTable needs a row (TestEveryRouteHasARowInTheAccessTable).
var accessTable = []accessRow{
	{"kv", "GET", "/v1/kv/app/k", "", "uaaaffau"},
	{"kv", "GET", "/v1/kv/other", "", "uuffffau"},
	{"kv", "GET", "/v1/kv/?recurse", "", "aaaaaaau"}, // filtered, see TestListsShowOnlyReadableKeys
	{"kv", "PUT", "/v1/kv/app/k", "v", "uufaffau"},
	{"kv", "PUT", "/v1/kv/other", "v", "uuffffau"},
	{"kv", "DELETE", "/v1/kv/app/k", "", "uufaffau"},
	{"watch", "GET", "/v1/watch/app/?since=bad", "", "aaaaaaau"}, // filtered, see TestWatchShowsOnlyReadableKeys
	{"status", "GET", "/v1/status", "", operatorRead},
	{"ring", "GET", "/v1/ring", "", operatorRead},
	{"ring_lookup", "GET", "/v1/ring/lookup?key=a", "", operatorRead},
	{"ring_plan", "GET", "/v1/ring/plan?add=1", "", operatorRead},
	{"ring_groups", "POST", "/v1/ring/groups", `{"weight":1}`, operatorWrite},
	{"ring_group", "DELETE", "/v1/ring/groups/1", "", operatorWrite},
	{"ring_weight", "PUT", "/v1/ring/groups/1/weight", `{"weight":2}`, operatorWrite},
	{"ring_migration", "DELETE", "/v1/ring/migration", "", operatorWrite},
	{"group_leader", "PUT", "/v1/groups/1/leader", `{"node":"n1"}`, operatorWrite},
	{"group_leader", "DELETE", "/v1/groups/1/leader", "", operatorWrite},
	{"join", "POST", "/v1/cluster/join", `{"id":"n9","http_addr":"127.0.0.1:1","raft_addr":"127.0.0.1:2"}`, operatorWrite},
	{"peer_secret", "GET", "/v1/cluster/peer-secret", "", operatorWrite},
	{"cluster", "GET", "/v1/cluster", "", operatorRead},
	{"remove_node", "DELETE", "/v1/cluster/nodes/busy", "", operatorWrite},
	{"drain_node", "PUT", "/v1/cluster/nodes/busy/drain", "", operatorWrite},
	{"drain_node", "DELETE", "/v1/cluster/nodes/busy/drain", "", operatorWrite},
	{"verify", "POST", "/v1/verify", "", operatorWrite},
	{"verify", "POST", "/v1/verify?repair=false", "", operatorRead},
	{"verify_group", "POST", "/v1/groups/1/verify", "", operatorWrite},
	{"verify_group", "POST", "/v1/groups/1/verify?repair=false", "", operatorRead},
	{"wait", "POST", "/v1/wait?group=1&index=1", "", "aaaaaaau"},
	{"snapshot", "POST", "/v1/snapshot", "", operatorWrite},
	{"backup", "GET", "/v1/backup", "", operatorRead},
	{"restore", "POST", "/v1/restore", "not an archive", operatorWrite},
	{"merkle", "GET", "/v1/groups/1/merkle", "", operatorRead},
	{"healthz", "GET", "/healthz", "", open},
	{"readyz", "GET", "/readyz", "", open},
	{"metrics", "GET", "/metrics", "", operatorRead},
	{"fault", "POST", "/v1/debug/fault", `{"block":[]}`, operatorWrite},
	{"pprof", "GET", "/debug/pprof/", "", operatorWrite},
	{"pprof", "POST", "/debug/pprof/cmdline", "", operatorWrite},
	{"pprof_profile", "GET", "/debug/pprof/profile?seconds=1", "", operatorWrite},
	{"pprof_profile", "POST", "/debug/pprof/profile?seconds=1", "", operatorWrite},
	{"pprof_trace", "GET", "/debug/pprof/trace?seconds=0.05", "", operatorWrite},
	{"pprof_trace", "POST", "/debug/pprof/trace?seconds=0.05", "", operatorWrite},
	{"acl_bootstrap", "POST", "/v1/acl/bootstrap", "", open}, // 409 once bootstrapped
	{"acl_policy", "POST", "/v1/acl/policy", `{"name":"new","rules":[{"prefix":"n/","access":"read"}]}`, management},
	{"acl_policy_name", "GET", "/v1/acl/policy/read-app", "", management},
	{"acl_policy_name", "PUT", "/v1/acl/policy/read-app", `{"name":"read-app","rules":[]}`, management},
	{"acl_policy_name", "DELETE", "/v1/acl/policy/unused", "", management},
	{"acl_policies", "GET", "/v1/acl/policies", "", management},
	{"acl_token", "POST", "/v1/acl/token", `{"description":"x","policies":["read-app"]}`, management},
	{"acl_token_self", "GET", "/v1/acl/token/self", "", "uuaaaaau"},
	{"acl_token_id", "GET", "/v1/acl/token/{spare}", "", management},
	{"acl_token_id", "DELETE", "/v1/acl/token/{spare}", "", management},
	{"acl_tokens", "GET", "/v1/acl/tokens", "", management},
}

// aclFixture is an access control state with a token for each identity.
type aclFixture struct {
	state      *layout.ACLState  // anonymous denies everything
	openAnon   *layout.ACLState  // anonymous reads app/
	secrets    map[string]string // by identity
	spare      string            // accessor of a token no identity uses
	management string            // secret of the management token
}

func newACLFixture(t testing.TB) aclFixture {
	t.Helper()
	s := layout.NewACLState()
	apply := func(c layout.ACLChange) {
		t.Helper()
		next, err := s.With(&c)
		if err != nil {
			t.Fatalf("%s: %v", c.Op, err)
		}
		s = next
	}
	policy := func(name, op string, rules ...acl.Rule) {
		apply(layout.ACLChange{Op: "policy_create", Policy: &acl.Policy{Name: name, Operator: op, Rules: append([]acl.Rule{}, rules...)}})
	}
	token := func(management bool, policies ...string) (acl.Token, string) {
		tok, secret, err := acl.NewToken("", policies, management)
		if err != nil {
			t.Fatal(err)
		}
		apply(layout.ACLChange{Op: "token_create", Token: &tok})
		return tok, secret
	}
	policy("read-app", "none", acl.Rule{Prefix: "app/", Access: "read"})
	policy("write-app", "none", acl.Rule{Prefix: "app/", Access: "write"})
	policy("op-read", "read")
	policy("op-write", "write")
	policy("unused", "none")
	f := aclFixture{secrets: map[string]string{"none": "", "anonymous": ""}}
	_, f.secrets["read app/"] = token(false, "read-app")
	_, f.secrets["write app/"] = token(false, "write-app")
	_, f.secrets["operator read"] = token(false, "op-read")
	_, f.secrets["operator write"] = token(false, "op-write")
	_, f.secrets["management"] = token(true)
	f.management = f.secrets["management"]
	spare, _ := token(true)
	f.spare = spare.AccessorID
	gone, goneSecret := token(false, "op-write")
	f.secrets["deleted"] = goneSecret
	apply(layout.ACLChange{Op: "token_delete", Name: gone.AccessorID})
	apply(layout.ACLChange{Op: "bootstrap", Token: func() *acl.Token { tok, _, _ := acl.NewToken("", nil, true); return &tok }()})
	f.state = s
	apply(layout.ACLChange{Op: "policy_update", Policy: &acl.Policy{Name: acl.Anonymous, Operator: "none", Rules: []acl.Rule{{Prefix: "app/", Access: "read"}}}})
	f.openAnon = s
	return f
}

func newACLAPI(t testing.TB, f *fakeBackend) *API {
	t.Helper()
	cfg := DefaultConfig()
	cfg.FaultHook, cfg.Pprof = true, true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	api, err := New(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// serve runs one request through api, with secret as X-Ringkv-Token
// unless empty.
func serve(api *API, method, path, body, secret string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://ringkv"+path, strings.NewReader(body))
	if secret != "" {
		req.Header.Set(hdrToken, secret)
	}
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	return rec
}

// Every route × every identity: the status is the table's, and a denied
// request reaches no handler (the backend is not called), so it changes
// nothing.
func TestAccessTable(t *testing.T) {
	fx := newACLFixture(t)
	for _, row := range accessTable {
		for _, problem := range checkRow(t, fx, row, nil) {
			t.Error(problem)
		}
	}
}

// checkRow tries row as every identity, on an API whose route table
// weaken may alter, and returns what is not as the row says.
func checkRow(t *testing.T, fx aclFixture, row accessRow, weaken func([]route)) []string {
	var problems []string
	for i, who := range identities {
		f := newFake()
		f.data["app/k"] = protocol.KV{Key: []byte("app/k"), Value: []byte("v"), ModifyIndex: 1, Group: 1}
		f.data["other"] = protocol.KV{Key: []byte("other"), Value: []byte("v"), ModifyIndex: 1, Group: 1}
		f.acl = fx.state
		if who == "anonymous" {
			f.acl = fx.openAnon
		}
		before := f.acl
		api := newACLAPI(t, f)
		if weaken != nil {
			table := api.routeTable()
			weaken(table)
			api.router = api.routes(table)
		}
		path := strings.ReplaceAll(row.path, "{spare}", fx.spare)
		rec := serve(api, row.method, path, row.body, fx.secrets[who])
		var body base.WireError
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		got := rec.Code
		switch want := row.want[i]; {
		case want == 'a' && (got == http.StatusUnauthorized || got == http.StatusForbidden):
			problems = append(problems, fmt.Sprintf("%s %s as %s: %d %s, want it allowed", row.method, path, who, got, rec.Body.Bytes()))
		case want == 'u' && (got != http.StatusUnauthorized || body.Code != base.CodeUnauthorized):
			problems = append(problems, fmt.Sprintf("%s %s as %s: %d %s, want 401 unauthorized", row.method, path, who, got, rec.Body.Bytes()))
		case want == 'f' && (got != http.StatusForbidden || body.Code != base.CodeForbidden):
			problems = append(problems, fmt.Sprintf("%s %s as %s: %d %s, want 403 forbidden", row.method, path, who, got, rec.Body.Bytes()))
		case want != 'a':
			if n := f.touched.Load(); n != 0 || f.acl != before || len(f.data) != 2 || string(f.data["app/k"].Value) != "v" {
				problems = append(problems, fmt.Sprintf("%s %s as %s was denied, yet reached the backend (%d calls) or changed something", row.method, path, who, n))
			}
		}
	}
	return problems
}

// The table can fail: a restore route weakened to operator read, or
// opened to anyone, is caught.
func TestAccessTableCatchesAWeakenedRoute(t *testing.T) {
	fx := newACLFixture(t)
	row := accessTable[slices.IndexFunc(accessTable, func(r accessRow) bool { return r.route == "restore" })]
	for _, n := range []need{needNothing, needOperatorRead, needIdentity} {
		problems := checkRow(t, fx, row, func(table []route) {
			for _, rt := range table {
				if rt.name == "restore" {
					rt.methods[http.MethodPost] = endpoint{rt.methods[http.MethodPost].h, n}
				}
			}
		})
		if len(problems) == 0 {
			t.Errorf("restore needing %s passes the table", n)
		}
	}
}

// A route cannot be added without saying who may call it.
func TestEveryRouteHasARowInTheAccessTable(t *testing.T) {
	api := newACLAPI(t, newFake())
	rows := map[string]bool{}
	for _, row := range accessTable {
		rows[row.route+" "+row.method] = true
	}
	declared := map[string]bool{}
	for _, rt := range api.routeTable() {
		for m := range rt.methods {
			k := rt.name + " " + m
			declared[k] = true
			if !rows[k] {
				t.Errorf("route %s (%s %s) has no row in accessTable", rt.name, m, rt.path)
			}
		}
	}
	for k := range rows {
		if !declared[k] {
			t.Errorf("accessTable has a row for %s, which routeTable does not declare", k)
		}
	}
}

func TestListsShowOnlyReadableKeys(t *testing.T) {
	fx := newACLFixture(t)
	f := newFake()
	for _, k := range []string{"a", "app/1", "app/2", "app/3", "apple", "z"} {
		f.data[k] = protocol.KV{Key: []byte(k), Value: []byte("v"), Group: 1}
	}
	f.acl = fx.state
	api := newACLAPI(t, f)
	for _, tt := range []struct {
		who, query string
		want       string
	}{
		{"read app/", "?recurse&keys", `["app/1","app/2","app/3"]`},
		{"read app/", "?recurse&keys&limit=2", `["app/1","app/2"]`},
		{"none", "?recurse&keys", `[]`},
		{"operator write", "?recurse&keys", `[]`},
		{"management", "?recurse&keys&limit=4", `["a","app/1","app/2","app/3"]`},
	} {
		rec := serve(api, "GET", "/v1/kv/"+tt.query, "", fx.secrets[tt.who])
		if got := strings.TrimSpace(rec.Body.String()); rec.Code != 200 || got != tt.want {
			t.Errorf("list%s as %s = %d %s, want %s", tt.query, tt.who, rec.Code, got, tt.want)
		}
	}
}

// Tokens of a bad form, in either header, are refused with 401, and the
// Bearer form works.
func TestTokensTravelInEitherHeader(t *testing.T) {
	fx := newACLFixture(t)
	f := newFake()
	f.data["app/k"] = protocol.KV{Key: []byte("app/k"), Value: []byte("v"), Group: 1}
	f.acl = fx.state
	api := newACLAPI(t, f)
	do := func(h, v string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "http://ringkv/v1/kv/app/k", nil)
		req.Header.Set(h, v)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		return rec
	}
	if rec := do("Authorization", "Bearer "+fx.secrets["read app/"]); rec.Code != 200 {
		t.Errorf("Bearer token: %d %s", rec.Code, rec.Body)
	}
	if rec := do("authorization", "bearer "+fx.secrets["read app/"]); rec.Code != 200 {
		t.Errorf("bearer in lower case: %d %s", rec.Code, rec.Body)
	}
	for _, tt := range []struct{ h, v, says string }{
		{hdrToken, "", "an empty token"},
		{hdrToken, "x", "no such token"},
		{hdrToken, strings.Repeat("t", 100000), "a token is 1 to 128 bytes"},
		{"Authorization", "Basic dXNlcjpwYXNz", "Bearer TOKEN"},
		{"Authorization", "Bearer " + fx.secrets["deleted"], "no such token"},
	} {
		rec := do(tt.h, tt.v)
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), tt.says) || !strings.Contains(rec.Body.String(), `"code":"unauthorized"`) {
			t.Errorf("%s of %d bytes: %d %s, want 401 saying %q", tt.h, len(tt.v), rec.Code, rec.Body, tt.says)
		}
	}
}

// FuzzACLBodies sends any body to the policy and token routes as the
// management token: never a server error, and anything stored validates.
func FuzzACLBodies(f *testing.F) {
	f.Add("POST", `{"name":"app","rules":[{"prefix":"app/","access":"write"}],"operator":"read"}`)
	f.Add("PUT", `{"name":"read-app","rules":[{"prefix":"","access":"deny"}]}`)
	f.Add("TOKEN", `{"description":"x","policies":["read-app","op-read"]}`)
	f.Add("TOKEN", `{"policies":["read-app","read-app"],"management":true}`)
	f.Add("POST", `{"name":"a","rules":[{"prefix":"a","access":"read"},{"prefix":"a","access":"read"}]}`)
	fx := newACLFixture(f)
	f.Fuzz(func(t *testing.T, kind, body string) {
		fk := newFake()
		fk.acl = fx.state
		api := newACLAPI(t, fk)
		method, path := http.MethodPost, "/v1/acl/policy"
		switch kind {
		case "PUT":
			method, path = http.MethodPut, "/v1/acl/policy/read-app"
		case "TOKEN":
			path = "/v1/acl/token"
		}
		rec := serve(api, method, path, body, fx.management)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		for _, p := range fk.acl.Policies {
			if err := p.Validate(); err != nil {
				t.Fatalf("stored an invalid policy: %v", err)
			}
		}
		for _, tk := range fk.acl.Tokens {
			if err := tk.Validate(); err != nil {
				t.Fatalf("stored an invalid token: %v", err)
			}
			for _, p := range tk.Policies {
				if _, ok := fk.acl.Policy(p); !ok {
					t.Fatalf("token names missing policy %q", p)
				}
			}
		}
	})
}

// A bootstrap that reaches a node with --acl before its layout is known
// is told to retry (503), not that access control is off (400): a
// script bootstrapping a fresh cluster would take the 400 as final.
func TestBootstrapBeforeTheLayoutIsKnown(t *testing.T) {
	f := newFake()
	f.aclPending = true
	srv := newTestAPI(t, f)
	resp, body := do(t, "POST", srv.URL+"/v1/acl/bootstrap", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"code":"unavailable"`) {
		t.Fatalf("bootstrap before the layout: %d %s, want 503 unavailable", resp.StatusCode, body)
	}
	f.aclPending = false
	resp, body = do(t, "POST", srv.URL+"/v1/acl/bootstrap", nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "access control is off") {
		t.Fatalf("bootstrap with access control off: %d %s, want 400", resp.StatusCode, body)
	}
}
