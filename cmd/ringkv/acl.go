package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/client"
)

func aclCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Access control (ringkvd --acl): the first management token, policies, tokens",
		Long: `Access control, for a cluster whose nodes run with --acl: acl bootstrap
takes the first management token (once); policies are key-prefix rules
(deny, read, write) and an operator level (none, read, write); tokens carry
policies, and clients send their secret with --token (RINGKV_TOKEN).`,
	}
	cmd.AddCommand(aclBootstrapCmd(a), aclPolicyCmd(a), aclTokenCmd(a))
	return cmd
}

// aclBootstrapCmd takes the first management token: printed, or with
// --save FILE written to FILE, which a script running at every start (the
// compose file's secure profile) keeps once it exists.
func aclBootstrapCmd(a *app) *cobra.Command {
	var save string
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Take the first management token (once); its secret is shown only now",
		Args:  args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if save != "" {
				if _, err := os.Stat(save); err == nil {
					fmt.Fprintf(out, "kept %s (access control was bootstrapped before)\n", save)
					return nil
				}
			}
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				return bootstrap(ctx, c, save, out)
			})
		},
	}
	cmd.Flags().StringVar(&save, "save", "", "write the secret to this file (mode 0600) instead of printing it; if it exists, keep it and do nothing")
	return cmd
}

func bootstrap(ctx context.Context, c *client.Client, save string, out io.Writer) error {
	var t api.ACLToken
	wait := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 2 * time.Second}
	wait.Reset()
	for {
		var err error
		if t, err = c.ACLBootstrap(ctx); err == nil {
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

// ruleFlag is --rule PREFIX=ACCESS, repeated.
type ruleFlag struct{ rules *[]acl.Rule }

func (f ruleFlag) String() string { return "" }

func (f ruleFlag) Set(s string) error {
	i := strings.LastIndexByte(s, '=')
	if i < 0 {
		return fmt.Errorf("%q: want PREFIX=deny|read|write (an empty PREFIX is every key)", s)
	}
	*f.rules = append(*f.rules, acl.Rule{Prefix: s[:i], Access: s[i+1:]})
	return nil
}

func (f ruleFlag) Type() string { return "PREFIX=ACCESS" }

func aclPolicyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Policies: key-prefix rules and an operator level",
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the policies",
		Args:  args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				ps, err := c.ACLPolicies(ctx)
				if err != nil {
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
			})
		},
	}
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a policy as JSON",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				p, err := c.ACLPolicy(ctx, pos[0])
				if err != nil {
					return err
				}
				return printJSON(out, p)
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a policy",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				if err := c.ACLDeletePolicy(ctx, pos[0]); err != nil {
					return err
				}
				fmt.Fprintf(out, "policy %s deleted\n", pos[0])
				return nil
			})
		},
	}
	cmd.AddCommand(list, get, del, aclPolicySetCmd(a, "create"), aclPolicySetCmd(a, "update"))
	return cmd
}

// aclPolicySetCmd is acl policy create or update.
func aclPolicySetCmd(a *app, verb string) *cobra.Command {
	var p acl.Policy
	var file string
	short := "Create a policy"
	if verb == "update" {
		short = "Replace a policy's rules, operator level and description"
	}
	cmd := &cobra.Command{
		Use:   verb + " NAME --rule PREFIX=ACCESS ... | " + verb + " NAME --file POLICY.json",
		Short: short,
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
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
				p.Rules = []acl.Rule{}
			}
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				if err := c.ACLSetPolicy(ctx, p, verb == "create"); err != nil {
					return err
				}
				fmt.Fprintf(out, "policy %s %sd: %d rules, operator %s\n", p.Name, verb, len(p.Rules), p.Operator)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.Var(ruleFlag{&p.Rules}, "rule", "a rule, repeated: PREFIX=deny|read|write (the longest matching prefix decides; an empty PREFIX is every key)")
	f.StringVar(&p.Operator, "operator", "none", "operator level: none, read (status, ring, cluster, metrics, verify without repair, backup) or write (every operator action)")
	f.StringVar(&p.Description, "description", "", "what the policy is for")
	f.StringVar(&file, "file", "", "read the policy from this JSON file ({\"rules\": [{\"prefix\", \"access\"}], \"operator\", \"description\"})")
	return cmd
}

func aclTokenCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Tokens: credentials that carry policies",
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens (never their secrets)",
		Args:  args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				ts, err := c.ACLTokens(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ACCESSOR\tPOLICIES\tMANAGEMENT\tDESCRIPTION")
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", t.AccessorID, strings.Join(t.Policies, ","), t.Management, t.Description)
				}
				return tw.Flush()
			})
		},
	}
	show := func(use, short string, n int) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  args(n, n),
			RunE: func(cmd *cobra.Command, pos []string) error {
				accessor := "self"
				if n == 1 {
					accessor = pos[0]
				}
				return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
					t, err := c.ACLToken(ctx, accessor)
					if err != nil {
						return err
					}
					return printJSON(out, t)
				})
			},
		}
	}
	del := &cobra.Command{
		Use:   "delete ACCESSOR",
		Short: "Delete a token: its secret stops working at once",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				if err := c.ACLDeleteToken(ctx, pos[0]); err != nil {
					return err
				}
				fmt.Fprintf(out, "token %s deleted\n", pos[0])
				return nil
			})
		},
	}
	cmd.AddCommand(list, show("get ACCESSOR", "Print a token as JSON (without its secret)", 1),
		show("self", "Print the token of --token as JSON (without its secret)", 0), del, aclTokenCreateCmd(a))
	return cmd
}

func aclTokenCreateCmd(a *app) *cobra.Command {
	var req api.ACLTokenRequest
	cmd := &cobra.Command{
		Use:   "create --policy NAME ... [--management] [--description D]",
		Short: "Make a token; its secret is shown only now",
		Args:  args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				got, err := c.ACLCreateToken(ctx, req)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "AccessorID: %s\nSecretID:   %s\nPolicies:   %s\n", got.AccessorID, got.SecretID, strings.Join(got.Policies, ","))
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&req.Policies, "policy", nil, "a policy the token carries, repeated")
	f.BoolVar(&req.Management, "management", false, "a management token: may do everything")
	f.StringVar(&req.Description, "description", "", "what the token is for")
	return cmd
}
