package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// run runs ringkv with args and the environment env, and returns what it
// printed and its error.
func run(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot(strings.NewReader(""), &out, &out, func(k string) string { return env[k] })
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// walk calls fn on every command of the tree but cobra's own (help,
// completion).
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	if c.Name() == "help" || c.Name() == "completion" {
		return
	}
	fn(c)
	for _, s := range c.Commands() {
		walk(s, fn)
	}
}

// Every command and every flag says what it is for, and --help prints it:
// the command's line, each flag with its help, the global flags.
func TestEveryCommandAndFlagHasHelp(t *testing.T) {
	root := newRoot(nil, nil, nil, func(string) string { return "" })
	n, flags := 0, 0
	walk(root, func(c *cobra.Command) {
		n++
		if strings.TrimSpace(c.Short) == "" {
			t.Errorf("%s: no help text", c.CommandPath())
		}
		path := strings.Fields(c.CommandPath())[1:]
		out, err := run(t, nil, append(path, "--help")...)
		if err != nil {
			t.Errorf("%s --help: %v", c.CommandPath(), err)
		}
		want := c.Short
		if c.Long != "" {
			want = c.Long
		}
		if !strings.Contains(out, "Usage:") || !strings.Contains(out, want) {
			t.Errorf("%s --help printed no usage or help:\n%s", c.CommandPath(), out)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			flags++
			if strings.TrimSpace(f.Usage) == "" {
				t.Errorf("%s --%s: no help text", c.CommandPath(), f.Name)
			}
			if f.Name != "help" && !strings.Contains(out, "--"+f.Name+" ") {
				t.Errorf("%s --help does not show --%s:\n%s", c.CommandPath(), f.Name, out)
			}
		})
	})
	if n < 40 || flags < 60 {
		t.Fatalf("walked %d commands and %d flags: the tree is not what it should be", n, flags)
	}
}

// sample is a value of a flag's type, unlike its default.
func sample(f *pflag.Flag) (string, bool) {
	switch f.Value.Type() {
	case "string":
		return "from-env", true
	case "int", "int64", "N":
		return "42", true
	case "float64":
		return "0.25", true
	case "duration":
		return "7m0s", true
	case "bool":
		return "true", true
	case "stringSlice":
		return "host1:7070,host2:7070", true
	}
	return "", false
}

// shown is how a flag prints the sample value v it was set to.
func shown(f *pflag.Flag, v string) string {
	if f.Value.Type() == "stringSlice" {
		return "[" + v + "]"
	}
	return v
}

// Every flag of every command is read from RINGKV_<NAME> when not given on
// the command line.
func TestEveryFlagReadsTheEnvironment(t *testing.T) {
	root := newRoot(nil, nil, nil, func(string) string { return "" })
	walk(root, func(c *cobra.Command) {
		fs := c.Flags()
		fs.AddFlagSet(c.InheritedFlags())
		env := map[string]string{}
		fs.VisitAll(func(f *pflag.Flag) {
			if v, ok := sample(f); ok && f.Name != "help" {
				env[envName(f.Name)] = v
			}
		})
		if err := applyEnv(fs, func(k string) string { return env[k] }); err != nil {
			t.Fatalf("%s: %v", c.CommandPath(), err)
		}
		fs.VisitAll(func(f *pflag.Flag) {
			want, ok := sample(f)
			if !ok || f.Name == "help" {
				if f.Name != "help" && f.Name != "rule" && f.Name != "policy" {
					t.Errorf("%s --%s: type %s has no sample here", c.CommandPath(), f.Name, f.Value.Type())
				}
				return
			}
			if got := f.Value.String(); got != shown(f, want) {
				t.Errorf("%s --%s: %s=%s gave %q", c.CommandPath(), f.Name, envName(f.Name), want, got)
			}
		})
	})
}

// recorder is a node that records the requests it gets and answers an
// empty listing.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("[]"))
}

func (r *recorder) last(t *testing.T) *http.Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("no request reached the node")
	}
	return r.reqs[len(r.reqs)-1]
}

// The environment reaches the request; the command line beats it; a bad
// value names its variable and sends nothing.
func TestEnvironmentAndCommandLine(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	env := map[string]string{"RINGKV_ADDR": srv.URL, "RINGKV_LIMIT": "7", "RINGKV_CONSISTENCY": "stale", "RINGKV_TOKEN": "s3cret"}
	if _, err := run(t, env, "ls", "pre"); err != nil {
		t.Fatal(err)
	}
	r := rec.last(t)
	q := r.URL.Query()
	if r.URL.Path != "/v1/kv/pre" || q.Get("limit") != "7" || q.Get("consistency") != "stale" || r.Header.Get("X-Ringkv-Token") != "s3cret" {
		t.Fatalf("request %s %v token %q: the environment did not reach it", r.URL.Path, q, r.Header.Get("X-Ringkv-Token"))
	}
	if _, err := run(t, env, "ls", "--limit", "3", "pre", "--consistency=lease"); err != nil {
		t.Fatal(err)
	}
	if q := rec.last(t).URL.Query(); q.Get("limit") != "3" || q.Get("consistency") != "lease" {
		t.Fatalf("query %v: the command line should beat the environment", q)
	}
	before := len(rec.reqs)
	env["RINGKV_LIMIT"] = "many"
	_, err := run(t, env, "ls", "pre")
	if err == nil || !strings.Contains(err.Error(), "RINGKV_LIMIT") {
		t.Fatalf("bad RINGKV_LIMIT: err %v, want one naming the variable", err)
	}
	if len(rec.reqs) != before {
		t.Fatal("a request was sent despite a bad flag value")
	}
}

// Wrong arguments and unknown flags fail with the command's usage, and send
// nothing.
func TestUsageErrors(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	env := map[string]string{"RINGKV_ADDR": srv.URL}
	for _, args := range [][]string{{"put", "k"}, {"get"}, {"get", "k", "--bogus"}, {"put", "k", "v", "--cas", "-1"},
		{"leader", "1"}, {"ring", "plan", "grow", "4"}, {"backup"}, {"nosuch"}} {
		_, err := run(t, env, args...)
		if err == nil {
			t.Errorf("ringkv %s: no error", strings.Join(args, " "))
			continue
		}
		if args[0] != "nosuch" && args[0] != "ring" && args[0] != "backup" && args[0] != "leader" && !strings.Contains(err.Error(), "usage: ringkv "+args[0]) {
			t.Errorf("ringkv %s: %v: no usage line", strings.Join(args, " "), err)
		}
	}
	if len(rec.reqs) != 0 {
		t.Fatalf("%d requests sent by commands given wrong arguments", len(rec.reqs))
	}
}

// Shell completion: the scripts, and the candidates they ask ringkv for.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		out, err := run(t, nil, "completion", sh)
		if err != nil || !strings.Contains(out, "ringkv") || len(out) < 1000 {
			t.Fatalf("completion %s: err %v, %d bytes", sh, err, len(out))
		}
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "ring", ""}, []string{"lookup", "plan", "add", "remove", "weight", "abort"}},
		{[]string{"__complete", "node", ""}, []string{"ls", "drain", "undrain", "remove"}},
		{[]string{"__complete", "ring", "plan", ""}, []string{"add", "remove", "weight"}},
		{[]string{"__complete", "bench", "--con"}, []string{"--concurrency", "--consistency"}},
	} {
		out, err := run(t, nil, c.args...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("completing %v: no %q in\n%s", c.args[1:], w, out)
			}
		}
	}
}

// A value of "-" is read from stdin.
func TestPutReadsStdin(t *testing.T) {
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := new(bytes.Buffer)
		buf.ReadFrom(r.Body)
		got = buf.Bytes()
		w.Write([]byte(`{"key":"k","index":3}`))
	}))
	defer srv.Close()
	var out bytes.Buffer
	root := newRoot(strings.NewReader("from\nstdin"), &out, &out, func(string) string { return "" })
	root.SetArgs([]string{"--addr", srv.URL, "put", "k", "-"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if string(got) != "from\nstdin" {
		t.Fatalf("the node got %q", got)
	}
}
