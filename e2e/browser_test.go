package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/client"
)

// browserPath is the headless browser the browser tests drive:
// RINGKV_BROWSER names it (and then it must run: .ci/run sets it), else
// chromium from PATH; with neither, the tests are skipped, so that `go
// test ./...` works on a machine without a browser.
func browserPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RINGKV_BROWSER"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("RINGKV_BROWSER=%s: %v", p, err)
		}
		return path
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no chromium on PATH (RINGKV_BROWSER names one; .ci/run installs it and runs this test)")
	return ""
}

// report is what the test page tells the test.
type report struct {
	Kind  string `json:"kind"` // open, event, error, header
	ID    string `json:"id"`
	Data  string `json:"data"`
	State int    `json:"state"`
}

// watchPage is a page that opens an EventSource on node's change stream
// of prefix and reads a key's X-KV-Index with fetch; it reports all it
// sees to /report on its own origin.
func watchPage(node, prefix string) string {
	return fmt.Sprintf(`<!doctype html><html><body><script>
const report = (r) => fetch("/report", {method: "POST", body: JSON.stringify(r)});
const es = new EventSource(%q);
es.onopen = () => report({kind: "open"});
es.onmessage = (e) => report({kind: "event", id: e.lastEventId, data: e.data});
es.onerror = () => report({kind: "error", state: es.readyState});
fetch(%q).then((r) => report({kind: "header", data: String(r.headers.get("X-KV-Index"))}))
  .catch((e) => report({kind: "header", data: "refused: " + e}));
</script></body></html>`, "http://"+node+"/v1/watch/"+prefix, "http://"+node+"/v1/kv/"+prefix+"seen")
}

// browserPage serves page and collects its reports.
type browserPage struct {
	srv     *httptest.Server
	reports chan report
	backlog []report // received, not yet returned by next
}

func servePage(t *testing.T, page func() string) *browserPage {
	t.Helper()
	p := &browserPage{reports: make(chan report, 1000)}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, page())
		case "/report":
			var rep report
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&rep); err == nil {
				p.reports <- rep
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// next returns the page's first report of kind not returned yet, waiting
// for it; all it saw is kept in seen, for a failure's message.
func (p *browserPage) next(t *testing.T, kind string, timeout time.Duration, seen *[]report) report {
	t.Helper()
	for i, r := range p.backlog {
		if r.Kind == kind {
			p.backlog = append(p.backlog[:i:i], p.backlog[i+1:]...)
			return r
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case r := <-p.reports:
			*seen = append(*seen, r)
			if r.Kind == kind {
				return r
			}
			p.backlog = append(p.backlog, r)
		case <-deadline:
			t.Fatalf("the page reported no %q within %v; it reported %+v", kind, timeout, *seen)
		}
	}
}

// openBrowser runs a headless browser on url until the test ends.
func openBrowser(t *testing.T, path, url string) {
	t.Helper()
	cmd := exec.Command(path, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--user-data-dir="+t.TempDir(), url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the browser and its helpers
		cmd.Wait()
		if t.Failed() {
			t.Logf("browser output:\n%.3000s", out.String())
		}
	})
}

// TestBrowserWatch opens a change stream from a real browser, as a
// dashboard would: a page of another origin, named in --cors-origins,
// runs an EventSource on a node. It gets every write under its prefix,
// with cursors as event ids, and reads X-KV-Index. When the node serving
// it is killed and started again, the browser reconnects by itself and
// sends Last-Event-ID: it gets the writes made meanwhile, once each. A
// page of an origin not named gets nothing.
func TestBrowserWatch(t *testing.T) {
	path := browserPath(t)
	var nodeAddr string
	var mu sync.Mutex
	allowed := servePage(t, func() string { mu.Lock(); defer mu.Unlock(); return watchPage(nodeAddr, "browser/") })
	other := servePage(t, func() string { mu.Lock(); defer mu.Unlock(); return watchPage(nodeAddr, "browser/") })
	c := startCluster(t, 3, "--cors-origins", allowed.srv.URL)
	c.waitReady(3)
	serving := c.procs[0]
	mu.Lock()
	nodeAddr = serving.HTTPAddr
	mu.Unlock()
	cl := client.New(c.procs[1].HTTPAddr)
	cx := ctx(t, 3*time.Minute)
	if _, err := cl.Put(cx, "browser/seen", []byte("x"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	openBrowser(t, path, allowed.srv.URL+"/")
	var seen []report
	allowed.next(t, "open", time.Minute, &seen)
	if h := allowed.next(t, "header", time.Minute, &seen); h.Data == "null" || strings.HasPrefix(h.Data, "refused") {
		t.Fatalf("the page could not read X-KV-Index: %q", h.Data)
	}

	// Writes through another node reach the browser, in order.
	put := func(i int) {
		t.Helper()
		if _, err := cl.Put(cx, fmt.Sprintf("browser/k%d", i), []byte(fmt.Sprintf("v%d", i)), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	var lastID string
	// expect takes the events of writes from..to. Keys of different
	// groups come in no set order between them.
	expect := func(from, to int) {
		t.Helper()
		for range to - from + 1 {
			ev := allowed.next(t, "event", time.Minute, &seen)
			var e api.WatchEvent
			if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
				t.Fatalf("event data %q: %v", ev.Data, err)
			}
			if _, err := api.ParseCursor(ev.ID); err != nil {
				t.Fatalf("event id %q is no cursor: %v", ev.ID, err)
			}
			var i int
			if _, err := fmt.Sscanf(e.Key, "browser/k%d", &i); err != nil || i < from || i > to ||
				e.Type != api.EventPut || string(e.Value) != fmt.Sprintf("v%d", i) {
				t.Fatalf("event %+v (value %q); want a put of one of browser/k%d..k%d", e, e.Value, from, to)
			}
			if got[e.Key]++; got[e.Key] > 1 {
				t.Fatalf("%s came twice", e.Key)
			}
			lastID = ev.ID
		}
	}
	for i := 1; i <= 3; i++ {
		put(i)
	}
	expect(1, 3)

	// kill -9 the node serving the stream; write meanwhile; start it
	// again. The browser retries on its own, with Last-Event-ID.
	if err := serving.Kill(); err != nil {
		t.Fatal(err)
	}
	allowed.next(t, "error", time.Minute, &seen)
	for i := 4; i <= 6; i++ {
		put(i)
	}
	if err := serving.Start(); err != nil {
		t.Fatal(err)
	}
	allowed.next(t, "open", 2*time.Minute, &seen)
	expect(4, 6)
	put(7)
	expect(7, 7)
	if len(got) != 7 {
		t.Errorf("the browser got %v; want browser/k1..k7 once each", got)
	}
	t.Logf("the browser's last event id: %s", lastID)

	// A page of an origin not named: the browser refuses it the stream
	// and the header.
	openBrowser(t, path, other.srv.URL+"/")
	var otherSeen []report
	if e := other.next(t, "error", time.Minute, &otherSeen); e.State != 2 {
		t.Errorf("the EventSource of an origin not named ended in state %d; want 2 (closed: refused)", e.State)
	}
	if h := other.next(t, "header", time.Minute, &otherSeen); !strings.HasPrefix(h.Data, "refused") {
		t.Errorf("a page of an origin not named read X-KV-Index %q", h.Data)
	}
}
