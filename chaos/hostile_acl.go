package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ringkv/ringkv/client"
)

// aclCases try a cluster's access control with what a careless or hostile
// client sends: tokens of no, one and 100,000 bytes or in the wrong
// scheme, policies of 10,000 rules, unknown words, no name or a name taken,
// and the deletion of the last management token. Each must be refused with
// its status and code on every node and change nothing.
func aclCases() []hostileCase {
	rules := make([]map[string]string, 10000)
	for i := range rules {
		rules[i] = map[string]string{"prefix": fmt.Sprintf("k%05d/", i), "access": "read"}
	}
	return []hostileCase{
		tokenCase("an empty token", "X-Ringkv-Token", ""),
		tokenCase("a token of 1 byte", "X-Ringkv-Token", "x"),
		tokenCase("a token of 100,000 bytes", "X-Ringkv-Token", strings.Repeat("t", 100000)),
		tokenCase("a token of 129 bytes, one past the longest", "X-Ringkv-Token", strings.Repeat("~", 129)),
		tokenCase("a password in Basic form", "Authorization", "Basic YWRtaW46YWRtaW4="),
		tokenCase("a Bearer of nothing", "Authorization", "Bearer "),
		restCase("a policy of 10,000 rules", "POST", "/v1/acl/policy", map[string]any{"name": "huge", "rules": rules}, 400, "bad_request"),
		restCase("a policy with an unknown access word", "POST", "/v1/acl/policy",
			map[string]any{"name": "bad", "rules": []map[string]string{{"prefix": "a/", "access": "admin"}}}, 400, "bad_request"),
		restCase("a policy with an unknown operator word", "POST", "/v1/acl/policy",
			map[string]any{"name": "bad", "rules": []any{}, "operator": "root"}, 400, "bad_request"),
		restCase("a policy without a name", "POST", "/v1/acl/policy", map[string]any{"rules": []any{}}, 400, "bad_request"),
		restCase("a policy named with a path", "POST", "/v1/acl/policy", map[string]any{"name": "../x", "rules": []any{}}, 400, "bad_request"),
		restCase("a policy with unknown fields", "POST", "/v1/acl/policy", map[string]any{"name": "x", "rules": []any{}, "admin": true}, 400, "bad_request"),
		restCase("the anonymous policy created again", "POST", "/v1/acl/policy", map[string]any{"name": "anonymous", "rules": []any{}}, 409, "conflict"),
		restCase("the anonymous policy deleted", "DELETE", "/v1/acl/policy/anonymous", nil, 409, "conflict"),
		restCase("a token naming no policy that exists", "POST", "/v1/acl/token", map[string]any{"policies": []string{"no-such"}}, 400, "bad_request"),
		restCase("a token with no policy", "POST", "/v1/acl/token", map[string]any{"description": "nothing"}, 400, "bad_request"),
		restCase("a token deleted by a path", "DELETE", "/v1/acl/token/..%2F..%2Fetc", nil, 400, "bad_request"),
		restCase("a second bootstrap", "POST", "/v1/acl/bootstrap", nil, 409, "conflict"),
		{name: "the last management token deleted", run: deleteLastManagementToken},
		{name: "a write forwarded by a client on the Raft port, past access control", run: forwardPastACL},
	}
}

// tokenCase sends a write with header h = v to every node: 401 and the
// key unwritten.
func tokenCase(name, h, v string) hostileCase {
	return hostileCase{name: name, run: func(ctx context.Context, hs *hostile) (string, string, error) {
		key := fmt.Sprintf("hostile/token/%d", time.Now().UnixNano())
		sent := fmt.Sprintf("PUT /v1/kv/%s with %s of %d bytes", key, h, len(v))
		var got string
		for _, e := range hs.endpoints {
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, strings.TrimRight(e, "/")+"/v1/kv/"+key, strings.NewReader("x"))
			if err != nil {
				return sent, "", err
			}
			req.Header[h] = []string{v}
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				return sent, "", fmt.Errorf("%s: %v", e, err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			var we struct{ Code, Error string }
			got = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
			if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(body, &we) != nil || we.Code != "unauthorized" {
				return sent, got, fmt.Errorf("%s: want 401 unauthorized as JSON", e)
			}
		}
		for _, c := range hs.nodes {
			if _, err := c.Get(ctx, key, "linearizable"); !client.IsCode(err, "not_found") {
				return sent, got, fmt.Errorf("%s: the refused write is there (%v)", c.Addr(), err)
			}
		}
		return sent, got, nil
	}}
}

// deleteLastManagementToken deletes every management token but one, then
// that one: refused with 409, and it still works.
func deleteLastManagementToken(ctx context.Context, h *hostile) (string, string, error) {
	tokens, err := h.nodes[0].ACLTokens(ctx)
	if err != nil {
		return "GET /v1/acl/tokens", "", err
	}
	self, err := h.nodes[0].ACLToken(ctx, "self")
	if err != nil {
		return "GET /v1/acl/token/self", "", err
	}
	for _, t := range tokens {
		if t.Management && t.AccessorID != self.AccessorID {
			if err := h.nodes[0].ACLDeleteToken(ctx, t.AccessorID); err != nil {
				return "DELETE another management token", "", err
			}
		}
	}
	sent := "DELETE /v1/acl/token/" + self.AccessorID + " (the last management token)"
	err = h.nodes[1%len(h.nodes)].ACLDeleteToken(ctx, self.AccessorID)
	got, ferr := refused(err, 409, "conflict")
	if ferr != nil {
		return sent, got, ferr
	}
	if _, err := h.nodes[0].ACLToken(ctx, "self"); err != nil {
		return sent, got, fmt.Errorf("the management token stopped working: %v", err)
	}
	return sent, got, nil
}

// forwardPastACL sends a write, as a node forwards one, to each node's
// Raft port without the peer TLS or peer secret a node has: it must be
// refused there, and the key stay unwritten.
func forwardPastACL(ctx context.Context, h *hostile) (string, string, error) {
	key := fmt.Sprintf("hostile/forwarded/%d", time.Now().UnixNano())
	at, err := h.nodes[0].Lookup(ctx, key)
	if err != nil {
		return "", "", err
	}
	sent := fmt.Sprintf("POST /v1/internal/forward on the Raft port: put %s in group %d", key, at.Group)
	body := mustJSON(map[string]any{"requests": []map[string]any{{"op": "put", "group": at.Group,
		"key": []byte(key), "value": []byte("past"), "deadline_ms": 2000}}})
	_, got, err := h.eachRaftPort(ctx, sent, func(raftAddr string) (string, error) {
		answer, err := peerPost(ctx, raftAddr, "/v1/internal/forward", body)
		if err != nil {
			return "closed: " + err.Error(), nil
		}
		if !strings.HasPrefix(answer, "403 ") {
			return answer, errors.New("the forwarded write was not refused at the Raft port")
		}
		return answer, nil
	})
	if err != nil {
		return sent, got, err
	}
	for _, c := range h.nodes {
		if _, err := c.Get(ctx, key, "linearizable"); !client.IsCode(err, "not_found") {
			return sent, got, fmt.Errorf("%s: the forwarded write is there (%v)", c.Addr(), err)
		}
	}
	return sent, got, nil
}
