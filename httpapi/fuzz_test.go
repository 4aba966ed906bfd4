package httpapi

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/ring"
)

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"/v1/kv/a", "/v1/kv/a%2Fb", "/v1/kv/../x", "/v1/kv/%zz", "/v1/kv/", "/nope"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		key, err := parseKey(path, 1024)
		if err != nil {
			return
		}
		if len(key) > 1024 {
			t.Fatalf("accepted a %d-byte key", len(key))
		}
		// The key round-trips through the client's escaping.
		back, err := parseKey(kvPrefix+url.PathEscape(string(key)), 1024)
		if err != nil || string(back) != string(key) {
			t.Fatalf("key %q does not round-trip: %q %v", key, back, err)
		}
	})
}

func FuzzParseKVQuery(f *testing.F) {
	for _, s := range []string{"recurse&keys&limit=3&after=b", "cas=5", "consistency=stale", "replication=async", "replication=async&cas=1", "min_index=7", "limit=-1", "%zz",
		"recurse&after_base64=%2F%2F4%3D", "after=a&after_base64=YQ==", "after_base64=!!", "key_encoding=base64", "key_encoding=hex",
		"index=5&wait=30s", "recurse&index=1:3,2:0&wait=1m", "index=1&wait=20m", "wait=0", "index=x", "recurse&index=0:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseKVQuery(raw)
		if err != nil {
			return
		}
		if q.limit < 0 {
			t.Fatal("negative limit accepted")
		}
		if _, err := protocol.ParseConsistency(string(q.consistency)); err != nil {
			t.Fatalf("accepted consistency %q", q.consistency)
		}
		if q.replication != "" && q.replication != "sync" && q.replication != "async" {
			t.Fatalf("accepted replication %q", q.replication)
		}
		if q.replication == "async" && q.hasCAS {
			t.Fatal("accepted an asynchronous compare-and-swap")
		}
		if q.wait < 0 || q.wait > maxBlockingWait {
			t.Fatalf("accepted a wait of %v", q.wait)
		}
		if q.recurse && q.blocking && q.cursor == nil {
			t.Fatal("a blocking list without its cursor")
		}
		vals, _ := url.ParseQuery(raw)
		if b64, ok := vals["after_base64"]; ok {
			if _, both := vals["after"]; both {
				t.Fatal("accepted after and after_base64 together")
			}
			if want, err := decodeBase64(b64[0]); err != nil || string(want) != string(q.after) {
				t.Fatalf("after_base64 %q gave after %q (%v)", b64[0], q.after, err)
			}
		}
		if e := vals.Get("key_encoding"); q.keysBase64 != (e == "base64") {
			t.Fatalf("key_encoding %q: base64 %v", e, q.keysBase64)
		}
	})
}

func FuzzDecodeJoin(f *testing.F) {
	f.Add(`{"id":"n2","http_addr":"h:1","raft_addr":"h:2"}`)
	f.Add(`{"id":""}`)
	f.Fuzz(func(t *testing.T, body string) {
		info, err := decodeJoin([]byte(body))
		if err != nil {
			return
		}
		if info.ID == "" || info.HTTPAddr == "" || info.RaftAddr == "" || len(info.RaftAddr) > 255 {
			t.Fatalf("accepted incomplete join %+v", info)
		}
	})
}

func FuzzDecodeFault(f *testing.F) {
	f.Add(`{"block":["127.0.0.1:7071"]}`)
	f.Add(`{"block":[],"via":{"127.0.0.1:7071":"127.0.0.1:9001"}}`)
	f.Add(`{"via":{"":"x"}}`)
	f.Add(`{"via":null}`)
	f.Fuzz(func(t *testing.T, body string) {
		fb, err := decodeFault([]byte(body))
		if err != nil {
			if !strings.Contains(err.Error(), "fault body") {
				t.Fatalf("decode error does not say what it read: %v", err)
			}
			return
		}
		if fb.Via != nil {
			for k, v := range *fb.Via {
				if k == "" || v == "" {
					t.Fatalf("accepted an empty route %q -> %q", k, v)
				}
			}
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(`{"requests":[{"op":"put","group":1,"key":"YQ==","value":"Yg==","deadline_ms":100}]}`)
	f.Add(`{"requests":[{"op":"scan","group":2,"consistency":"stale","limit":3}]}`)
	f.Add(`{"requests":[{"op":"scan","group":2,"limit":3,"max_bytes":-1,"routing":7}]}`)
	f.Add(`{"requests":[{"op":"scan","group":1,"max_bytes":1099511627776,"routing":18446744073709551615}]}`)
	f.Add(`{"requests":[{"op":"join","node":{"id":"x"}}]}`)
	f.Add(`{"requests":[]}`)
	f.Fuzz(func(t *testing.T, body string) {
		b, err := protocol.DecodeBatch([]byte(body))
		if err != nil {
			if !strings.Contains(err.Error(), "bad request") {
				t.Fatalf("decode error not marked bad request: %v", err)
			}
			return
		}
		if len(b.Requests) == 0 {
			t.Fatal("accepted an empty batch")
		}
		for _, it := range b.Requests {
			if err := it.Validate(); err != nil || it.DeadlineMS < 0 {
				t.Fatalf("accepted an invalid request: %v", err)
			}
		}
	})
}

func FuzzParseRingChange(f *testing.F) {
	for _, s := range []string{"add=4", "add=5:3", "remove=2", "weight=1:2", "add=4&remove=2", "weight=2", "add=0", "add=4:-1", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		vals, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		c, err := parseRingChange(vals)
		if err != nil {
			return
		}
		set := 0
		for _, gw := range []*layout.GroupWeight{c.Add, c.Weight} {
			if gw != nil {
				set++
				if gw.Group == 0 || gw.Weight < 1 {
					t.Fatalf("accepted group %d weight %d from %q", gw.Group, gw.Weight, raw)
				}
			}
		}
		if c.Remove != 0 {
			set++
		}
		if set != 1 {
			t.Fatalf("accepted %d changes from %q", set, raw)
		}
	})
}

func FuzzDecodeGroupBody(f *testing.F) {
	for _, s := range []string{"", "{}", `{"id":5,"weight":2}`, `{"weight":0}`, `{"id":0}`, `{"x":1}`, `[1]`, `{} {}`} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, needWeight bool) {
		g, err := decodeGroupBody(b, needWeight)
		if err != nil {
			return
		}
		if g.Weight < 1 || g.Weight > ring.MaxWeight {
			t.Fatalf("accepted weight %d from %q", g.Weight, b)
		}
	})
}

func FuzzDecodeLeaderBody(f *testing.F) {
	for _, s := range []string{`{"node":"n1"}`, `{}`, `{"node":""}`, `{"node":"n1","x":1}`, `[1]`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := decodeLeaderBody(b)
		if err == nil && (id == "" || len(id) > 128) {
			t.Fatalf("accepted node id %q from %q", id, b)
		}
	})
}

// FuzzWriteBodyJSON holds the hand-written answer of a write to what
// encoding/json writes for the same struct, for any key.
func FuzzWriteBodyJSON(f *testing.F) {
	for _, k := range []string{"a", "k00001234", "a/b", `q"uote`, `back\slash`, "<tag>&", "tab\there", "nl\n", "é", "\xff\xfe", "\u2028", "\x7f"} {
		f.Add(k, uint64(7), uint32(2), uint64(9), false, uint64(0))
	}
	f.Add("k", uint64(1<<63), uint32(1<<31), uint64(1), true, uint64(3))
	f.Fuzz(func(t *testing.T, key string, index uint64, group uint32, raftIndex uint64, deleted bool, term uint64) {
		for i, repl := range []string{"sync", "async"} {
			k, k64 := jsonKey([]byte(key), i == 1)
			b := writeBody{Key: k, KeyBase64: k64, Index: index, Group: group, RaftIndex: raftIndex, Deleted: deleted, Replication: repl, RaftTerm: term}
			var want bytes.Buffer
			if err := json.NewEncoder(&want).Encode(b); err != nil {
				t.Fatal(err)
			}
			if got := b.appendJSON(nil); string(got) != want.String() {
				t.Fatalf("appendJSON\n got %s\nwant %s", got, want.Bytes())
			}
		}
	})
}
