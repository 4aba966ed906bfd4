package httpapi

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// kvPrefix is the path prefix of the key-value API.
const kvPrefix = "/v1/kv/"

// parseKey returns the key of a /v1/kv/ request: the rest of the path,
// percent-decoded, with '/', '%2F' and dot segments kept literally.
func parseKey(path string, maxKey int) ([]byte, error) {
	return parsePrefixPath(path, kvPrefix, maxKey)
}

// parsePrefixPath returns what follows prefix in path, percent-decoded, as
// parseKey does.
func parsePrefixPath(path, prefix string, maxKey int) ([]byte, error) {
	if !strings.HasPrefix(path, prefix) {
		return nil, badRequest("path does not start with " + prefix)
	}
	key, err := url.PathUnescape(path[len(prefix):])
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
	// blocking: index=N (a key's modify index) or, with recurse,
	// index=CURSOR, answered once what is read differs from it or wait
	// (default defaultBlockingWait) has passed.
	blocking bool
	index    uint64
	cursor   api.Cursor
	wait     time.Duration
}

// Bounds of a blocking query's wait, as Consul's.
const (
	defaultBlockingWait = 5 * time.Minute
	maxBlockingWait     = 10 * time.Minute
)

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
	if v, ok := vals["index"]; ok {
		q.blocking = true
		if q.recurse {
			if q.cursor, err = api.ParseCursor(v[0]); err != nil {
				return q, badRequest(fmt.Sprintf("index %q: with recurse, want the X-KV-Cursor of a list", v[0]))
			}
		} else if q.index, err = strconv.ParseUint(v[0], 10, 64); err != nil {
			return q, badRequest(fmt.Sprintf("index %q: want the key's modify index (X-KV-Index)", v[0]))
		}
	}
	if v, ok := vals["wait"]; ok {
		d, err := parseWait(v[0])
		if err != nil {
			return q, err
		}
		q.wait = d
	}
	if q.replication == "async" && q.hasCAS {
		return q, badRequest("replication=async cannot carry cas: a compare-and-swap needs its outcome, use sync")
	}
	return q, nil
}

// parseWait reads a blocking query's wait: a duration ("30s", "5m") or a
// number of seconds, up to maxBlockingWait (a longer one is cut to it).
func parseWait(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseUint(s, 10, 32)
		if nerr != nil {
			return 0, badRequest(fmt.Sprintf("wait %q: want a duration such as 30s or 5m", s))
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 {
		return 0, badRequest(fmt.Sprintf("wait %q: want a positive duration", s))
	}
	return min(d, maxBlockingWait), nil
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
