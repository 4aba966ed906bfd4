package ringkv_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ringkv/ringkv"

// deps lists the packages pkg depends on, directly or not.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "./"+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func isStd(p string) bool { return !strings.Contains(strings.SplitN(p, "/", 2)[0], ".") }

// TestArrows enforces the package arrows drawn in the README's
// "Architecture" section: base (ids, errors, wire codes) and the leaf
// packages use the standard library only (ring may use base; layout, the
// metadata group's pure logic, base, ring and acl; api, the HTTP wire
// types, base and ring; client, which shares them, those, api and acl for
// the policy types, and its circuit breaker and backoff libraries); store never sees Raft or HTTP; transport (the Raft
// port) knows nothing of groups' contents; raftnode never imports HTTP
// handlers; client stands alone.
func TestArrows(t *testing.T) {
	rules := []struct {
		pkg       string
		stdOnly   bool
		allowed   []string // of this module, for a stdOnly package
		forbidden []string
	}{
		{pkg: "base", stdOnly: true},
		{pkg: "ring", stdOnly: true, allowed: []string{module + "/base"}},
		{pkg: "snapshot", stdOnly: true},
		{pkg: "layout", stdOnly: true, allowed: []string{module + "/base", module + "/ring", module + "/acl", module + "/api"}},
		{pkg: "client", stdOnly: true, allowed: []string{module + "/api", module + "/base", module + "/ring", module + "/acl",
			"github.com/sony/gobreaker/v2", "github.com/cenkalti/backoff/v5"}},
		{pkg: "api", stdOnly: true, allowed: []string{module + "/base", module + "/ring"}},
		{pkg: "reshard", forbidden: []string{module + "/raftnode", module + "/httpapi"}},
		{pkg: "placer", forbidden: []string{module + "/raftnode", module + "/httpapi"}},
		{pkg: "backup", forbidden: []string{module + "/raftnode", module + "/httpapi"}},
		{pkg: "verify", forbidden: []string{module + "/raftnode", module + "/httpapi"}},
		{pkg: "certs", stdOnly: true},
		{pkg: "acl", stdOnly: true},
		{pkg: "bench", forbidden: []string{module + "/raftnode", module + "/httpapi", module + "/store", "github.com/hashicorp/raft"}},
		{pkg: "store", forbidden: []string{"github.com/hashicorp/raft", "net/http", module + "/raftnode", module + "/httpapi", module + "/ring"}},
		{pkg: "transport", forbidden: []string{module + "/raftnode", module + "/httpapi", module + "/store", module + "/ring"}},
		{pkg: "logstore", forbidden: []string{module + "/raftnode", module + "/httpapi", module + "/transport"}},
		{pkg: "protocol", forbidden: []string{module + "/raftnode", module + "/httpapi", module + "/cmd"}},
		{pkg: "raftnode", forbidden: []string{module + "/httpapi", "github.com/gorilla/mux", "github.com/prometheus/client_golang/prometheus/promhttp", module + "/cmd"}},
		{pkg: "httpapi", forbidden: []string{module + "/cmd", module + "/client"}},
	}
	for _, r := range rules {
		for _, d := range deps(t, r.pkg) {
			if strings.HasPrefix(d, module+"/"+r.pkg) || d == module+"/"+r.pkg {
				continue
			}
			if r.stdOnly && !isStd(d) && !strings.HasPrefix(d, "vendor/") && !slices.Contains(r.allowed, d) {
				t.Errorf("%s imports %s; it must use the standard library only", r.pkg, d)
			}
			for _, f := range r.forbidden {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s imports %s, against the package arrows", r.pkg, d)
				}
			}
		}
	}
}
