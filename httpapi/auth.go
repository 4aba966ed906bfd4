package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/raftnode"
)

// need is what a route asks of a request's token when access control is
// on. Each method of each route names one in the route table.
type need uint8

const (
	// needNothing: open to anyone (probes; bootstrap, which works once).
	needNothing need = iota
	// needIdentity: any request the cluster admits, anonymous included;
	// the route reveals nothing about keys (wait).
	needIdentity
	// needToken: a token, whatever it may do (the token's own details).
	needToken
	// needKeys: decided per key by the handler (reads, writes, lists).
	needKeys
	needOperatorRead
	needOperatorWrite
	// needVerify: operator read, or write when the verification may repair.
	needVerify
	needManagement
	// needFaultHook: operator write, decided even by a node cut off from
	// the metadata leader (the hook is what heals it).
	needFaultHook
)

var needNames = [...]string{"nothing", "identity", "token", "keys", "operator read", "operator write", "verify", "management", "operator write"}

func (n need) String() string { return needNames[n] }

// Token headers. X-Ringkv-Token wins when both are sent.
const (
	hdrToken = "X-Ringkv-Token"
	bearer   = "Bearer "
)

// tokenOf is the secret a request carries ("" for none) and whether it
// carries one at all (an empty header is a token of 0 bytes, refused).
func tokenOf(r *http.Request) (string, bool, error) {
	if v, ok := r.Header[hdrToken]; ok && len(v) > 0 {
		return v[0], true, nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false, nil
	}
	if len(h) < len(bearer) || !strings.EqualFold(h[:len(bearer)], bearer) {
		return "", true, fmt.Errorf("%w: the Authorization header takes \"Bearer TOKEN\"", base.ErrUnauthorized)
	}
	return strings.TrimSpace(h[len(bearer):]), true, nil
}

type identityKey struct{}

// identityOf is the identity the guard admitted the request as; ok is
// false when access control is off.
func identityOf(ctx context.Context) (raftnode.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(raftnode.Identity)
	return id, ok
}

// guard checks, when access control is on, that the request's token
// allows what the route needs before h runs; a denied request is answered
// 401 or 403 and reaches no handler, so it changes nothing.
func (a *API) guard(route string, n need, h http.HandlerFunc) http.HandlerFunc {
	if n == needNothing {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := a.authenticate(r, raftnode.AuthOptions{AcceptStale: n == needFaultHook})
		if err == nil && id.Authorizer == nil {
			h(w, r) // access control is off
			return
		}
		if err == nil {
			err = permit(id, n, r)
		}
		if err != nil {
			a.audit.decision(r, route, id, err)
			writeError(w, err)
			return
		}
		if n == needManagement || n == needOperatorWrite || n == needVerify || n == needFaultHook {
			a.audit.decision(r, route, id, nil)
		}
		h(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	}
}

// authenticate resolves the request's token; an Identity without an
// Authorizer means access control is off. A malformed token header is an
// error only when it is on.
func (a *API) authenticate(r *http.Request, o raftnode.AuthOptions) (raftnode.Identity, error) {
	secret, sent, err := tokenOf(r)
	if err == nil && sent && secret == "" {
		err = fmt.Errorf("%w: an empty token; send a token of 1 to %d bytes, or none", base.ErrUnauthorized, acl.MaxSecretBytes)
	}
	if err != nil {
		if !a.b.ACLEnabled() {
			return raftnode.Identity{}, nil
		}
		return raftnode.Identity{}, err
	}
	return a.b.Authenticate(r.Context(), secret, o)
}

// permit says whether id may do what n needs. Refused without a token it
// is 401 (a token is needed); with one, 403.
func permit(id raftnode.Identity, n need, r *http.Request) error {
	var ok bool
	switch n {
	case needIdentity, needKeys:
		return nil
	case needToken:
		ok = !id.Anonymous()
	case needOperatorRead:
		ok = id.Operator() >= acl.Read
	case needOperatorWrite, needFaultHook:
		ok = id.Operator() >= acl.Write
	case needVerify:
		want := acl.Write
		if o, err := verifyOptions(r); err == nil && o.NoRepair {
			want = acl.Read
		}
		ok = id.Operator() >= want
	case needManagement:
		ok = id.IsManagement()
	}
	if ok {
		return nil
	}
	return refusal(id, "this request needs "+n.String())
}

func refusal(id raftnode.Identity, what string) error {
	if id.Anonymous() {
		return fmt.Errorf("%w: %s, and requests without a token may not; send one in %s or Authorization: Bearer", base.ErrUnauthorized, what, hdrToken)
	}
	return fmt.Errorf("%w: %s, which token %s does not allow", base.ErrForbidden, what, id.Accessor)
}

// allowKey checks that the request may read or write key (nil when access
// control is off).
func (a *API) allowKey(r *http.Request, route string, key []byte, want acl.Access) error {
	id, ok := identityOf(r.Context())
	if !ok || id.Allows(key, want) {
		return nil
	}
	err := refusal(id, fmt.Sprintf("%s of key %q", want, key))
	a.audit.decision(r, route, id, err)
	return err
}

// audit logs access control decisions: every change of policies and
// tokens and every operator write, allowed or denied, and every denial,
// at most auditPerSecond a second (denials past it are counted, and the
// count logged with the next one).
type audit struct {
	log       func(msg string, args ...any)
	decisions *prometheus.CounterVec
	second    atomic.Int64
	inSecond  atomic.Int64
	dropped   atomic.Int64
}

const auditPerSecond = 50

func newAudit(reg *prometheus.Registry, log func(string, ...any)) *audit {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ringkv_acl_denied_total",
		Help: "Requests refused by access control, by route and code (unauthorized or forbidden).",
	}, []string{"route", "code"})
	reg.MustRegister(c)
	return &audit{log: log, decisions: c}
}

func (au *audit) decision(r *http.Request, route string, id raftnode.Identity, err error) {
	who := id.Who()
	if err != nil && id.Authorizer == nil {
		who = "unknown token"
	}
	if err == nil {
		au.log("acl", "who", who, "route", route, "method", r.Method, "path", r.URL.EscapedPath(), "allowed", true)
		return
	}
	au.decisions.WithLabelValues(route, base.Code(err)).Inc()
	now := time.Now().Unix()
	if au.second.Swap(now) != now {
		au.inSecond.Store(0)
	}
	if au.inSecond.Add(1) > auditPerSecond {
		au.dropped.Add(1)
		return
	}
	au.log("acl", "who", who, "route", route, "method", r.Method, "path", r.URL.EscapedPath(), "allowed", false,
		"remote", r.RemoteAddr, "err", err.Error(), "denials_not_logged", au.dropped.Swap(0))
}
