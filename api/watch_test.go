package api

import (
	"errors"
	"testing"

	"github.com/ringkv/ringkv/base"
)

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"", "1:0", "1:5,2:7,3:0", "3:1,1:2", "0:1", "1:1,1:2", "1:", ":3", "1:-1", "4294967296:1", "1:18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, base.ErrBadRequest) {
				t.Fatalf("ParseCursor(%q): %v, not a bad request", s, err)
			}
			return
		}
		for g := range c {
			if g == 0 {
				t.Fatalf("ParseCursor(%q) took group 0", s)
			}
		}
		again, err := ParseCursor(c.String())
		if err != nil || len(again) != len(c) {
			t.Fatalf("%q -> %q -> %v, %v", s, c.String(), again, err)
		}
		for g, n := range c {
			if again[g] != n {
				t.Fatalf("%q: group %d at %d, then %d", s, g, n, again[g])
			}
		}
	})
}

func TestCursorText(t *testing.T) {
	c := Cursor{3: 9, 1: 0, 12: 4}
	if s := c.String(); s != "1:0,3:9,12:4" {
		t.Fatalf("cursor text %q, want groups in order", s)
	}
	if s := string(c.AppendText([]byte("id: "))); s != "id: 1:0,3:9,12:4" {
		t.Fatalf("appended %q", s)
	}
}
