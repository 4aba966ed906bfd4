package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The GC target: --gc-percent (or RINGKV_GC_PERCENT) when given, nothing
// when GOGC is set (Go applies it), else the default; below 1 refused.
func TestGCTarget(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want int
		set  bool
	}{
		{"default", nil, nil, defaultGCPercent, true},
		{"flag", []string{"--gc-percent", "150"}, nil, 150, true},
		{"RINGKV_GC_PERCENT", nil, map[string]string{"RINGKV_GC_PERCENT": "250"}, 250, true},
		{"GOGC left to Go", nil, map[string]string{"GOGC": "50"}, 0, false},
		{"flag over GOGC", []string{"--gc-percent", "300"}, map[string]string{"GOGC": "50"}, 300, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			o, err := parseFlags(tc.args, getenv)
			if err != nil {
				t.Fatal(err)
			}
			got, set := o.gcTarget(getenv)
			if got != tc.want || set != tc.set {
				t.Fatalf("gcTarget = %d, %v; want %d, %v", got, set, tc.want, tc.set)
			}
		})
	}
	for _, bad := range []string{"0", "-1"} {
		_, err := parseFlags([]string{"--gc-percent", bad}, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "--gc-percent") {
			t.Fatalf("--gc-percent %s: err %v, want a refusal naming the flag", bad, err)
		}
	}
}

// The soft memory limit: --memory-limit (or RINGKV_MEMORY_LIMIT) when
// given, nothing when GOMEMLIMIT is set, else a quarter of the memory
// available within 256 MiB and 2 GiB; a bad size is refused at parse time.
func TestMemoryLimit(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		total int64
		want  int64
		set   bool
	}{
		{"default, 24 GiB machine", nil, nil, 24 * gib, 2 * gib, true},
		{"default, 4 GiB cgroup", nil, nil, 4 * gib, gib, true},
		{"default, 512 MiB cgroup", nil, nil, gib / 2, 256 << 20, true},
		{"default, unknown", nil, nil, 0, 2 * gib, true},
		{"flag", []string{"--memory-limit", "512MiB"}, nil, 24 * gib, 512 << 20, true},
		{"flag in bytes", []string{"--memory-limit", "1000000"}, nil, 24 * gib, 1000000, true},
		{"off", []string{"--memory-limit", "off"}, nil, 24 * gib, math.MaxInt64, true},
		{"RINGKV_MEMORY_LIMIT", nil, map[string]string{"RINGKV_MEMORY_LIMIT": "3GiB"}, 24 * gib, 3 * gib, true},
		{"GOMEMLIMIT left to Go", nil, map[string]string{"GOMEMLIMIT": "1GiB"}, 24 * gib, 0, false},
		{"flag over GOMEMLIMIT", []string{"--memory-limit", "1GB"}, map[string]string{"GOMEMLIMIT": "5GiB"}, 24 * gib, gib, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			o, err := parseFlags(tc.args, getenv)
			if err != nil {
				t.Fatal(err)
			}
			got, set, err := o.memoryLimit(getenv, tc.total)
			if err != nil || got != tc.want || set != tc.set {
				t.Fatalf("memoryLimit = %d, %v (%v); want %d, %v", got, set, err, tc.want, tc.set)
			}
		})
	}
	for _, bad := range []string{"2 giga", "-1GiB", "GiB", "99999999999TiB"} {
		_, err := parseFlags([]string{"--memory-limit", bad}, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "--memory-limit") {
			t.Fatalf("--memory-limit %q: err %v, want a refusal naming the flag", bad, err)
		}
	}
	if availableMemory() <= 0 {
		t.Fatal("neither the cgroup's limit nor /proc/meminfo gave the memory available")
	}
}

// --token-file gives the join token from a file, trimmed; with --token
// too, or empty, or missing, it is refused at parse time.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte("3f1c-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	none := func(string) string { return "" }
	o, err := parseFlags([]string{"--token-file", path}, none)
	if err != nil || o.node.JoinToken != "3f1c-secret" {
		t.Fatalf("--token-file: token %q, %v", o.node.JoinToken, err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	for _, args := range [][]string{
		{"--token-file", path, "--token", "x"},
		{"--token-file", empty},
		{"--token-file", filepath.Join(dir, "missing")},
	} {
		if _, err := parseFlags(args, none); err == nil || !strings.Contains(err.Error(), "--token") {
			t.Fatalf("%v: err %v, want a refusal naming the flag", args, err)
		}
	}
}
