package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/raftnode"
)

// maxACLBody bounds a policy or token body: a policy of MaxRules rules of
// long prefixes fits.
const maxACLBody = 1 << 20

func showToken(t acl.Token, secret string) api.ACLToken {
	ps := t.Policies
	if ps == nil {
		ps = []string{}
	}
	return api.ACLToken{AccessorID: t.AccessorID, SecretID: secret, Description: t.Description, Policies: ps, Management: t.Management}
}

// aclState is the cluster's access control state, or an error saying it is
// off, or not known yet (503: a node with --acl before its layout is).
func (a *API) aclState() (*layout.ACLState, error) {
	s := a.b.ACL()
	if s == nil && a.b.ACLEnabled() {
		return nil, fmt.Errorf("%w: access control is on and its state not known here yet (cluster layout not initialised)", base.ErrUnavailable)
	}
	if s == nil || !s.Enabled {
		return nil, fmt.Errorf("%w: access control is off in this cluster (start every node with --acl to have it)", base.ErrBadRequest)
	}
	return s, nil
}

func (a *API) aclBootstrap(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.aclState(); err != nil {
		return err
	}
	t, secret, err := a.b.ACLBootstrap(r.Context())
	if err != nil {
		a.audit.decision(r, "acl_bootstrap", raftnode.Identity{}, err)
		return err
	}
	a.log.Info("acl", "who", "bootstrap", "route", "acl_bootstrap", "allowed", true, "token", t.AccessorID)
	writeJSON(w, http.StatusOK, showToken(t, secret))
	return nil
}

// decodeStrict decodes a JSON body of at most maxACLBody bytes, refusing
// unknown fields and trailing data.
func decodeStrict(w http.ResponseWriter, r *http.Request, what string, v any) error {
	body, err := readBody(w, r, what, maxACLBody)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest(fmt.Sprintf("%s body: %v", what, err))
	}
	if dec.More() {
		return badRequest(what + " body: data after the JSON object")
	}
	return nil
}

// decodePolicy reads a policy body; its operator defaults to none.
func decodePolicy(w http.ResponseWriter, r *http.Request) (acl.Policy, error) {
	var p acl.Policy
	if err := decodeStrict(w, r, "policy", &p); err != nil {
		return p, err
	}
	if p.Operator == "" {
		p.Operator = "none"
	}
	if p.Rules == nil {
		p.Rules = []acl.Rule{}
	}
	if err := p.Validate(); err != nil {
		return p, badRequest(err.Error())
	}
	return p, nil
}

func (a *API) aclPolicyCreate(w http.ResponseWriter, r *http.Request) error {
	p, err := decodePolicy(w, r)
	if err == nil {
		err = a.b.ACLSetPolicy(r.Context(), p, true)
	}
	return a.respondACL(w, r, "acl_policy", "create policy "+p.Name, p, err)
}

func (a *API) aclPolicyUpdate(w http.ResponseWriter, r *http.Request) error {
	name := mux.Vars(r)["name"]
	p, err := decodePolicy(w, r)
	if err == nil && p.Name != name {
		err = badRequest(fmt.Sprintf("the body names policy %q, the path %q; a policy is not renamed", p.Name, name))
	}
	if err == nil {
		err = a.b.ACLSetPolicy(r.Context(), p, false)
	}
	return a.respondACL(w, r, "acl_policy_name", "update policy "+name, p, err)
}

func (a *API) aclPolicyDelete(w http.ResponseWriter, r *http.Request) error {
	name := mux.Vars(r)["name"]
	err := a.b.ACLDeletePolicy(r.Context(), name)
	return a.respondACL(w, r, "acl_policy_name", "delete policy "+name, map[string]string{"deleted": name}, err)
}

func (a *API) aclPolicyGet(w http.ResponseWriter, r *http.Request) error {
	s, err := a.aclState()
	if err != nil {
		return err
	}
	name := mux.Vars(r)["name"]
	p, ok := s.Policy(name)
	if !ok {
		return fmt.Errorf("%w: no policy %q", base.ErrNotFound, name)
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (a *API) aclPolicies(w http.ResponseWriter, r *http.Request) error {
	s, err := a.aclState()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.Policies)
	return nil
}

func (a *API) aclTokenCreate(w http.ResponseWriter, r *http.Request) error {
	var req api.ACLTokenRequest
	if err := decodeStrict(w, r, "token", &req); err != nil {
		return err
	}
	if len(req.Policies) == 0 && !req.Management {
		return badRequest(`a token needs at least one policy ("policies": ["name"]) or "management": true`)
	}
	t, secret, err := a.b.ACLCreateToken(r.Context(), req.Description, req.Policies, req.Management)
	return a.respondACL(w, r, "acl_token", "create token "+t.AccessorID, showToken(t, secret), err)
}

func (a *API) aclTokenDelete(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["accessor"]
	err := acl.CheckAccessor(id)
	if err != nil {
		err = badRequest(err.Error())
	} else {
		err = a.b.ACLDeleteToken(r.Context(), id)
	}
	return a.respondACL(w, r, "acl_token_id", "delete token "+id, map[string]string{"deleted": id}, err)
}

func (a *API) aclTokenGet(w http.ResponseWriter, r *http.Request) error {
	return a.showTokenOf(w, mux.Vars(r)["accessor"])
}

// aclTokenSelf shows the request's own token.
func (a *API) aclTokenSelf(w http.ResponseWriter, r *http.Request) error {
	id, _ := identityOf(r.Context())
	return a.showTokenOf(w, id.Accessor)
}

func (a *API) showTokenOf(w http.ResponseWriter, accessor string) error {
	s, err := a.aclState()
	if err != nil {
		return err
	}
	t, ok := s.Token(accessor)
	if !ok {
		return fmt.Errorf("%w: no token %.40q", base.ErrNotFound, accessor)
	}
	writeJSON(w, http.StatusOK, showToken(t, ""))
	return nil
}

func (a *API) aclTokens(w http.ResponseWriter, r *http.Request) error {
	s, err := a.aclState()
	if err != nil {
		return err
	}
	out := make([]api.ACLToken, len(s.Tokens))
	for i, t := range s.Tokens {
		out[i] = showToken(t, "")
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// respondACL answers a change of policies or tokens and logs it.
func (a *API) respondACL(w http.ResponseWriter, r *http.Request, route, what string, body any, err error) error {
	id, _ := identityOf(r.Context())
	if err != nil {
		a.log.Info("acl", "who", id.Who(), "route", route, "action", what, "done", false, "err", err.Error())
		return err
	}
	a.log.Info("acl", "who", id.Who(), "route", route, "action", what, "done", true)
	writeJSON(w, http.StatusOK, body)
	return nil
}
