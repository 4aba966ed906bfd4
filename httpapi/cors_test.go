package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestValidateOrigins(t *testing.T) {
	for _, ok := range []string{"*", "https://app.example.com", "http://localhost:3000", "https://*.example.com", "http://127.0.0.1:8080/"} {
		if err := ValidateOrigins([]string{ok}); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"app.example.com", "localhost:3000", "ftp://x.example.com", "https://x.example.com/app",
		"https://", "https://a.example.com?x=1", "https://*.*.example.com", "https://app.*.com", "*.example.com", "https://u:p@x.example.com", ""} {
		if err := ValidateOrigins([]string{bad}); err == nil {
			t.Errorf("%q accepted; a browser never sends such an origin", bad)
		}
	}
	cfg := DefaultConfig()
	cfg.CORSOrigins = []string{"example.com"}
	if _, err := New(newFake(), cfg); err == nil {
		t.Error("New accepted a CORS origin without a scheme")
	}
}

// TestCORS: only the origins named get the headers a browser needs, a
// preflight is answered without a token and changes nothing, and with no
// origin named no request gets any.
func TestCORS(t *testing.T) {
	f := newFake()
	cfg := DefaultConfig()
	cfg.CORSOrigins = []string{"https://app.example.com", "https://*.dash.example.com"}
	a, err := New(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	plain := newTestAPI(t, f)

	req := func(base, method, origin string, hdr map[string]string) *http.Response {
		t.Helper()
		r, _ := http.NewRequest(method, base+"/v1/kv/cors/a", strings.NewReader("v"))
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	preflight := map[string]string{"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type,x-ringkv-token"}

	// A named origin: the preflight allows the method and the token header.
	resp := req(srv.URL, "OPTIONS", "https://app.example.com", preflight)
	if resp.StatusCode/100 != 2 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "x-ringkv-token") {
		t.Fatalf("preflight from a named origin: %d %v", resp.StatusCode, resp.Header)
	}
	if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Error("credentials allowed; tokens go in headers, never cookies")
	}
	if len(f.data) != 0 {
		t.Fatalf("a preflight wrote %v", f.data)
	}
	// A subdomain of a wildcard; the answer exposes the index headers.
	resp = req(srv.URL, "GET", "https://ops.dash.example.com", nil)
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://ops.dash.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Kv-Index") {
		t.Fatalf("GET from a wildcard subdomain: %v", resp.Header)
	}
	// Another origin gets nothing that lets its page read the answer.
	for _, o := range []string{"https://evil.example.com", "https://app.example.com.evil.net", "http://app.example.com"} {
		resp = req(srv.URL, "OPTIONS", o, preflight)
		if h := resp.Header.Get("Access-Control-Allow-Origin"); h != "" {
			t.Errorf("preflight from %s allowed (%q)", o, h)
		}
		resp = req(srv.URL, "GET", o, nil)
		if h := resp.Header.Get("Access-Control-Allow-Origin"); h != "" {
			t.Errorf("GET from %s allowed (%q)", o, h)
		}
	}
	// Hostile preflights: a header list of 200 KB, odd methods, and
	// many origins at once; refused or answered, never a 5xx, nothing
	// written.
	long := strings.Repeat("x-a,", 50000)
	for _, h := range []map[string]string{
		{"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": long},
		{"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": ",,,, ,"},
		{"Access-Control-Request-Method": "TRACE"},
		{"Access-Control-Request-Method": strings.Repeat("P", 10000)},
	} {
		resp = req(srv.URL, "OPTIONS", "https://app.example.com", h)
		if resp.StatusCode >= 500 {
			t.Errorf("hostile preflight %.60v: %d", h, resp.StatusCode)
		}
		if m := resp.Header.Get("Access-Control-Allow-Methods"); strings.Contains(m, "TRACE") || len(m) > 100 {
			t.Errorf("hostile preflight allowed methods %.60q", m)
		}
	}
	if len(f.data) != 0 {
		t.Fatalf("hostile preflights wrote %v", f.data)
	}

	// None named (the default): none allowed.
	resp = req(plain.URL, "GET", "https://app.example.com", nil)
	if h := resp.Header.Get("Access-Control-Allow-Origin"); h != "" {
		t.Errorf("with no origin named, GET from app.example.com allowed (%q)", h)
	}
}
