package httpapi

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// kvPrefix is the path prefix of the key-value API.
const kvPrefix = "/v1/kv/"

// parseKey returns the key of a /v1/kv/ request: the rest of the path,
// percent-decoded, with '/', '%2F' and dot segments kept literally.
func parseKey(path string, maxKey int) ([]byte, error) {
	if !strings.HasPrefix(path, kvPrefix) {
		return nil, badRequest("path does not start with " + kvPrefix)
	}
	key, err := url.PathUnescape(path[len(kvPrefix):])
	if err != nil {
		return nil, badRequest("key is not valid percent-encoding: " + err.Error())
	}
	if len(key) > maxKey {
		return []byte(key), &errTooLarge{what: "key", size: int64(len(key)), limit: int64(maxKey)}
	}
	return []byte(key), nil
}

// kvQuery is the parsed query string of a /v1/kv/ request.
type kvQuery struct {
	recurse     bool
	keysOnly    bool
	limit       int
	after       []byte
	hasAfter    bool
	hasCAS      bool
	cas         uint64
	consistency protocol.Consistency
	// replication is "sync", "async", or "" (the server's default).
	replication string
	minIndex    uint64
	// keysBase64 answers every key base64 (key_encoding=base64).
	keysBase64 bool
}

// parseKVQuery parses and validates the query string. Unknown parameters
// are ignored, as Consul does; known ones with bad values are refused.
func parseKVQuery(raw string) (kvQuery, error) {
	var q kvQuery
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, badRequest("query string is not valid: " + err.Error())
	}
	_, q.recurse = vals["recurse"]
	_, q.keysOnly = vals["keys"]
	if v, ok := vals["limit"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 {
			return q, badRequest(fmt.Sprintf("limit %q: want a positive integer", v[0]))
		}
		q.limit = n
	}
	if v, ok := vals["after"]; ok {
		q.after, q.hasAfter = []byte(v[0]), true
	}
	if v, ok := vals["after_base64"]; ok {
		if q.hasAfter {
			return q, badRequest("give after or after_base64, not both")
		}
		b, err := decodeBase64(v[0])
		if err != nil {
			return q, badRequest(fmt.Sprintf("after_base64 %q: not base64: %v", v[0], err))
		}
		q.after, q.hasAfter = b, true
	}
	switch e := vals.Get("key_encoding"); e {
	case "", "text":
	case "base64":
		q.keysBase64 = true
	default:
		return q, badRequest(fmt.Sprintf("key_encoding %q: want text or base64", e))
	}
	if v, ok := vals["cas"]; ok {
		n, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return q, badRequest(fmt.Sprintf("cas %q: want a modify index (a non-negative integer)", v[0]))
		}
		q.hasCAS, q.cas = true, n
	}
	c, err := protocol.ParseConsistency(vals.Get("consistency"))
	if err != nil {
		return q, badRequest(fmt.Sprintf("consistency %q: want linearizable, lease or stale", vals.Get("consistency")))
	}
	q.consistency = c
	switch r := vals.Get("replication"); r {
	case "", "sync", "async":
		q.replication = r
	default:
		return q, badRequest(fmt.Sprintf("replication %q: want sync or async", r))
	}
	if v, ok := vals["min_index"]; ok {
		n, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return q, badRequest(fmt.Sprintf("min_index %q: want a Raft index (a non-negative integer)", v[0]))
		}
		q.minIndex = n
	}
	if q.replication == "async" && q.hasCAS {
		return q, badRequest("replication=async cannot carry cas: a compare-and-swap needs its outcome, use sync")
	}
	return q, nil
}

// decodeBase64 reads base64 as a query string brings it: standard or
// URL-safe, padded or not, and with '+' that an unescaped query turned
// into a space (never a base64 character) taken back.
func decodeBase64(s string) ([]byte, error) {
	s = strings.ReplaceAll(s, " ", "+")
	var first error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// parseRingChange reads one ring change from a query: add=G[:W] (weight 1
// by default), remove=G or weight=G:W.
func parseRingChange(vals url.Values) (layout.RingChange, error) {
	var c layout.RingChange
	given := 0
	for _, name := range []string{"add", "remove", "weight"} {
		v, ok := vals[name]
		if !ok {
			continue
		}
		given++
		if len(v) != 1 {
			return c, badRequest(name + " given more than once")
		}
		id, w, hasW := strings.Cut(v[0], ":")
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil || g == 0 {
			return c, badRequest(fmt.Sprintf("%s=%q: want a group id from 1 to %d", name, v[0], uint32(1<<32-1)))
		}
		weight := 1
		if hasW {
			if weight, err = strconv.Atoi(w); err != nil || weight < 1 {
				return c, badRequest(fmt.Sprintf("%s=%q: weight %q is not a positive integer", name, v[0], w))
			}
		}
		switch name {
		case "add":
			c.Add = &layout.GroupWeight{Group: base.GroupID(g), Weight: weight}
		case "remove":
			if hasW {
				return c, badRequest(fmt.Sprintf("remove=%q: a group id, without a weight", v[0]))
			}
			c.Remove = base.GroupID(g)
		case "weight":
			if !hasW {
				return c, badRequest(fmt.Sprintf("weight=%q: want GROUP:WEIGHT", v[0]))
			}
			c.Weight = &layout.GroupWeight{Group: base.GroupID(g), Weight: weight}
		}
	}
	if given != 1 {
		return c, badRequest("give exactly one change: add=GROUP[:WEIGHT], remove=GROUP or weight=GROUP:WEIGHT")
	}
	return c, nil
}
