package main

import (
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
