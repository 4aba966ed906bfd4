package client

import (
	"fmt"
	"strings"
	"testing"
)

func TestReadEvents(t *testing.T) {
	in := ": heartbeat\n\nid: 1:1\ndata: {\"a\":1}\n\nevent: error\ndata: one\ndata: two\n\nid: 1:2\n\ndata:x\n\n"
	var got []string
	err := ReadEvents(strings.NewReader(in), func(id, event, data string) error {
		got = append(got, fmt.Sprintf("%s|%s|%s", id, event, data))
		return nil
	})
	want := []string{`1:1||{"a":1}`, "1:1|error|one\ntwo", "1:2||x"}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ReadEvents: %q, %v; want %q", got, err, want)
	}
}

func FuzzReadEvents(f *testing.F) {
	f.Add("id: 1:1\ndata: {}\n\n")
	f.Add(": c\n\nevent: error\ndata: {\"code\":\"compacted\"}\n\n")
	f.Add("data\n\ndata:\n\nid\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		n := 0
		ReadEvents(strings.NewReader(in), func(id, event, data string) error {
			n++
			if strings.Contains(id, "\n") || strings.Contains(event, "\n") {
				t.Fatalf("a field with a newline: %q %q", id, event)
			}
			return nil
		})
		if n > strings.Count(in, "\n") {
			t.Fatalf("%d events from %d lines", n, strings.Count(in, "\n"))
		}
	})
}
