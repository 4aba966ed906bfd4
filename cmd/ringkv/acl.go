package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/ringkv/ringkv/client"
)

const aclUsage = `usage:
  ringkv acl bootstrap [--save FILE]        the first management token (once); --save writes
                                            its secret to FILE (0600), or, if FILE exists, keeps it
  ringkv acl policy create NAME --rule PREFIX=deny|read|write ... [--operator none|read|write] [--description D]
  ringkv acl policy update NAME ...         the same flags; replaces the policy's rules
  ringkv acl policy create|update NAME --file POLICY.json
  ringkv acl policy list | get NAME | delete NAME
  ringkv acl token create --policy NAME ... [--management] [--description D]
  ringkv acl token list | get ACCESSOR | self | delete ACCESSOR`

// aclPolicy and aclToken are the API's JSON forms.
type aclPolicy struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Rules       []aclRule `json:"rules"`
	Operator    string    `json:"operator"`
}

type aclRule struct {
	Prefix string `json:"prefix"`
	Access string `json:"access"`
}

type aclToken struct {
	AccessorID  string   `json:"accessor_id"`
	SecretID    string   `json:"secret_id,omitempty"`
	Description string   `json:"description"`
	Policies    []string `json:"policies"`
	Management  bool     `json:"management"`
}

func cmdACL(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(aclUsage)
	}
	switch args[0] {
	case "bootstrap":
		return cmdACLBootstrap(ctx, c, args[1:], out)
	case "policy":
		return cmdACLPolicy(ctx, c, args[1:], out)
	case "token":
		return cmdACLToken(ctx, c, args[1:], out)
	}
	return fmt.Errorf("unknown acl command %q\n%s", args[0], aclUsage)
}

// cmdACLBootstrap takes the first management token: printed, or with
// --save FILE written to FILE, which a script running at every start (the
// compose file's secure profile) keeps once it exists.
func cmdACLBootstrap(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	var save string
	pos, err := subFlags("acl bootstrap", args, func(fs *flag.FlagSet) {
		fs.StringVar(&save, "save", "", "write the secret to this file (mode 0600) instead of printing it; if it exists, keep it and do nothing")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errors.New(aclUsage)
	}
	if save != "" {
		if _, err := os.Stat(save); err == nil {
			fmt.Fprintf(out, "kept %s (access control was bootstrapped before)\n", save)
			return nil
		}
	}
	var t aclToken
	wait := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 2 * time.Second}
	wait.Reset()
	for {
		err := c.DoJSON(ctx, http.MethodPost, "/v1/acl/bootstrap", nil, &t)
		if err == nil {
			break
		}
		// With --save (a script's first start), wait within --timeout
		// for a node that is not up yet: a refused connection or 503
		// made no token, so asking again loses none.
		if save == "" || !notUpYet(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait.NextBackOff()):
		}
	}
	if save == "" {
		fmt.Fprintf(out, "AccessorID: %s\nSecretID:   %s\n(management token: keep the secret; it is shown only now)\n", t.AccessorID, t.SecretID)
		return nil
	}
	if err := saveSecret(save, t.SecretID); err != nil {
		// There is no second bootstrap: the secret must not be lost.
		fmt.Fprintf(out, "AccessorID: %s\nSecretID:   %s\n(management token: keep the secret; it is shown only now)\n", t.AccessorID, t.SecretID)
		return fmt.Errorf("saving the management token's secret to %s (printed above instead): %w", save, err)
	}
	fmt.Fprintf(out, "AccessorID: %s\nSecretID:   in %s\n", t.AccessorID, save)
	return nil
}

// notUpYet reports an error of a node that is not serving yet: a refused
// connection, or 503 unavailable.
func notUpYet(err error) bool {
	var op *net.OpError
	return client.IsCode(err, "unavailable") || (errors.As(err, &op) && op.Op == "dial")
}

// saveSecret writes secret to a new file readable by its owner only.
func saveSecret(path, secret string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, secret)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func cmdACLPolicy(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(aclUsage)
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list":
		var ps []aclPolicy
		if err := c.DoJSON(ctx, http.MethodGet, "/v1/acl/policies", nil, &ps); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tOPERATOR\tRULES\tDESCRIPTION")
		for _, p := range ps {
			var rules []string
			for _, r := range p.Rules {
				rules = append(rules, fmt.Sprintf("%q=%s", r.Prefix, r.Access))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.Operator, strings.Join(rules, " "), p.Description)
		}
		return tw.Flush()
	case "get", "delete":
		if len(args) != 1 {
			return fmt.Errorf("usage: ringkv acl policy %s NAME", sub)
		}
		path := "/v1/acl/policy/" + url.PathEscape(args[0])
		if sub == "delete" {
			if err := c.DoJSON(ctx, http.MethodDelete, path, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(out, "policy %s deleted\n", args[0])
			return nil
		}
		return getJSON(ctx, c, path, out)
	case "create", "update":
		var p aclPolicy
		var file string
		pos, err := subFlags("acl policy "+sub, args, func(fs *flag.FlagSet) {
			fs.StringVar(&p.Operator, "operator", "none", "")
			fs.StringVar(&p.Description, "description", "", "")
			fs.StringVar(&file, "file", "", "")
			fs.Func("rule", "PREFIX=ACCESS", func(s string) error {
				i := strings.LastIndexByte(s, '=')
				if i < 0 {
					return fmt.Errorf("--rule %q: want PREFIX=deny|read|write (an empty PREFIX is every key)", s)
				}
				p.Rules = append(p.Rules, aclRule{Prefix: s[:i], Access: s[i+1:]})
				return nil
			})
		})
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("usage: ringkv acl policy %s NAME --rule PREFIX=ACCESS ...", sub)
		}
		if file != "" {
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(b, &p); err != nil {
				return fmt.Errorf("%s: %v", file, err)
			}
		}
		p.Name = pos[0]
		if p.Rules == nil {
			p.Rules = []aclRule{}
		}
		method, path := http.MethodPost, "/v1/acl/policy"
		if sub == "update" {
			method, path = http.MethodPut, "/v1/acl/policy/"+url.PathEscape(p.Name)
		}
		if err := c.DoJSON(ctx, method, path, p, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "policy %s %sd: %d rules, operator %s\n", p.Name, sub, len(p.Rules), p.Operator)
		return nil
	}
	return fmt.Errorf("unknown acl policy command %q\n%s", sub, aclUsage)
}

func cmdACLToken(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(aclUsage)
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list":
		var ts []aclToken
		if err := c.DoJSON(ctx, http.MethodGet, "/v1/acl/tokens", nil, &ts); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACCESSOR\tPOLICIES\tMANAGEMENT\tDESCRIPTION")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", t.AccessorID, strings.Join(t.Policies, ","), t.Management, t.Description)
		}
		return tw.Flush()
	case "self":
		return getJSON(ctx, c, "/v1/acl/token/self", out)
	case "get", "delete":
		if len(args) != 1 {
			return fmt.Errorf("usage: ringkv acl token %s ACCESSOR", sub)
		}
		path := "/v1/acl/token/" + url.PathEscape(args[0])
		if sub == "delete" {
			if err := c.DoJSON(ctx, http.MethodDelete, path, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(out, "token %s deleted\n", args[0])
			return nil
		}
		return getJSON(ctx, c, path, out)
	case "create":
		var t aclToken
		pos, err := subFlags("acl token create", args, func(fs *flag.FlagSet) {
			fs.StringVar(&t.Description, "description", "", "")
			fs.BoolVar(&t.Management, "management", false, "")
			fs.Func("policy", "NAME", func(s string) error { t.Policies = append(t.Policies, s); return nil })
		})
		if err != nil {
			return err
		}
		if len(pos) != 0 {
			return errors.New("usage: ringkv acl token create --policy NAME ... [--management] [--description D]")
		}
		req := map[string]any{"description": t.Description, "policies": t.Policies, "management": t.Management}
		var got aclToken
		if err := c.DoJSON(ctx, http.MethodPost, "/v1/acl/token", req, &got); err != nil {
			return err
		}
		fmt.Fprintf(out, "AccessorID: %s\nSecretID:   %s\nPolicies:   %s\n", got.AccessorID, got.SecretID, strings.Join(got.Policies, ","))
		return nil
	}
	return fmt.Errorf("unknown acl token command %q\n%s", sub, aclUsage)
}

// getJSON prints the JSON answer at path, indented.
func getJSON(ctx context.Context, c *client.Client, path string, out io.Writer) error {
	var v json.RawMessage
	if err := c.DoJSON(ctx, http.MethodGet, path, nil, &v); err != nil {
		return err
	}
	return printJSON(out, v)
}
