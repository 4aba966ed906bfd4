package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/layout"
)

// BenchmarkPutHandler measures what the HTTP layer adds to a write on top
// of the backend: routing, metrics, query and key parsing, the body and
// the answer. The backend is the in-memory fake.
func BenchmarkPutHandler(b *testing.B) {
	benchPut(b, newFake(), "")
}

// BenchmarkPutHandlerACL is BenchmarkPutHandler with access control on and
// a token allowed to write under app/: what deciding costs a write.
func BenchmarkPutHandlerACL(b *testing.B) {
	s := layout.NewACLState()
	p := acl.Policy{Name: "app", Operator: "none", Rules: []acl.Rule{{Prefix: "k", Access: "write"}, {Prefix: "", Access: "read"}}}
	s, _ = s.With(&layout.ACLChange{Op: "policy_create", Policy: &p})
	tok, secret, _ := acl.NewToken("", []string{"app"}, false)
	s, err := s.With(&layout.ACLChange{Op: "token_create", Token: &tok})
	if err != nil {
		b.Fatal(err)
	}
	f := newFake()
	f.acl = s
	benchPut(b, f, secret)
}

func benchPut(b *testing.B, f *fakeBackend, token string) {
	api, err := New(f, DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	val := bytes.Repeat([]byte("x"), 128)
	paths := make([]string, 1024)
	for i := range paths {
		paths[i] = "/v1/kv/k" + strconv.Itoa(100000+i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPut, paths[i%len(paths)], bytes.NewReader(val))
		if token != "" {
			req.Header.Set(hdrToken, token)
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
