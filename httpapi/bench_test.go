package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// BenchmarkPutHandler measures what the HTTP layer adds to a write on top
// of the backend: routing, metrics, query and key parsing, the body and
// the answer. The backend is the in-memory fake.
func BenchmarkPutHandler(b *testing.B) {
	api, err := New(newFake(), DefaultConfig())
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
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
