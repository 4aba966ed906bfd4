package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/api"
)

// ACLBootstrap takes the cluster's first management token (POST
// /v1/acl/bootstrap), once: its SecretID is shown only now. A second call
// gets ErrConflict's code "conflict".
func (c *Client) ACLBootstrap(ctx context.Context) (api.ACLToken, error) {
	var t api.ACLToken
	return t, c.DoJSON(ctx, http.MethodPost, "/v1/acl/bootstrap", nil, &t)
}

// ACLPolicies lists the policies (GET /v1/acl/policies).
func (c *Client) ACLPolicies(ctx context.Context) ([]acl.Policy, error) {
	var ps []acl.Policy
	return ps, c.GetJSON(ctx, "/v1/acl/policies", nil, &ps)
}

// ACLPolicy reads one policy (GET /v1/acl/policy/{name}).
func (c *Client) ACLPolicy(ctx context.Context, name string) (acl.Policy, error) {
	var p acl.Policy
	return p, c.GetJSON(ctx, "/v1/acl/policy/"+url.PathEscape(name), nil, &p)
}

// ACLSetPolicy creates policy p (create: POST /v1/acl/policy; a policy of
// that name must not exist) or replaces it (PUT /v1/acl/policy/{name}).
func (c *Client) ACLSetPolicy(ctx context.Context, p acl.Policy, create bool) error {
	if create {
		return c.DoJSON(ctx, http.MethodPost, "/v1/acl/policy", p, nil)
	}
	return c.DoJSON(ctx, http.MethodPut, "/v1/acl/policy/"+url.PathEscape(p.Name), p, nil)
}

// ACLDeletePolicy deletes a policy (DELETE /v1/acl/policy/{name}).
func (c *Client) ACLDeletePolicy(ctx context.Context, name string) error {
	return c.DoJSON(ctx, http.MethodDelete, "/v1/acl/policy/"+url.PathEscape(name), nil, nil)
}

// ACLTokens lists the tokens, without their secrets (GET /v1/acl/tokens).
func (c *Client) ACLTokens(ctx context.Context) ([]api.ACLToken, error) {
	var ts []api.ACLToken
	return ts, c.GetJSON(ctx, "/v1/acl/tokens", nil, &ts)
}

// ACLToken reads one token by its accessor id (GET
// /v1/acl/token/{accessor}); "self" is the caller's own.
func (c *Client) ACLToken(ctx context.Context, accessor string) (api.ACLToken, error) {
	var t api.ACLToken
	return t, c.GetJSON(ctx, "/v1/acl/token/"+url.PathEscape(accessor), nil, &t)
}

// ACLCreateToken makes a token (POST /v1/acl/token); the answer's SecretID
// is shown only now.
func (c *Client) ACLCreateToken(ctx context.Context, req api.ACLTokenRequest) (api.ACLToken, error) {
	var t api.ACLToken
	return t, c.DoJSON(ctx, http.MethodPost, "/v1/acl/token", req, &t)
}

// ACLDeleteToken deletes a token (DELETE /v1/acl/token/{accessor}).
func (c *Client) ACLDeleteToken(ctx context.Context, accessor string) error {
	return c.DoJSON(ctx, http.MethodDelete, "/v1/acl/token/"+url.PathEscape(accessor), nil, nil)
}
