package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ringkv/ringkv/client"
)

// consistencyHelp documents --consistency of reads.
const consistencyHelp = "linearizable (default: never older than a write acknowledged before the read began), lease (the leader's lease, no quorum round) or stale (any replica)"

// kvCommands are get, put, del and ls.
func kvCommands(a *app) []*cobra.Command {
	var consistency string
	get := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				v, err := c.Get(ctx, pos[0], consistency)
				if err != nil {
					return err
				}
				_, err = out.Write(v.Data)
				if len(v.Data) > 0 && v.Data[len(v.Data)-1] != '\n' {
					fmt.Fprintln(out)
				}
				return err
			})
		},
	}
	get.Flags().StringVar(&consistency, "consistency", "", consistencyHelp)

	var putCAS casFlag
	put := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: `Write a value (VALUE "-" reads it from stdin)`,
		Args:  args(2, 2),
		RunE: func(cmd *cobra.Command, pos []string) error {
			value := []byte(pos[1])
			if pos[1] == "-" {
				var err error
				if value, err = io.ReadAll(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				res, err := c.Put(ctx, pos[0], value, client.PutOptions{CAS: putCAS.v})
				if err != nil {
					return err
				}
				return printJSON(out, res)
			})
		},
	}
	put.Flags().Var(&putCAS, "cas", "write only if the key's modify index is N (0: only if the key is absent)")

	var delCAS casFlag
	del := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete"},
		Short:   "Delete a key",
		Args:    args(1, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				res, err := c.Delete(ctx, pos[0], client.PutOptions{CAS: delCAS.v})
				if err != nil {
					return err
				}
				return printJSON(out, res)
			})
		},
	}
	del.Flags().Var(&delCAS, "cas", "delete only if the key's modify index is N")
	return []*cobra.Command{get, put, del, listCmd(a), watchCmd(a)}
}

// casFlag is --cas N: unset, or a modify index.
type casFlag struct{ v *uint64 }

var _ pflag.Value = (*casFlag)(nil)

func (f *casFlag) String() string {
	if f.v == nil {
		return ""
	}
	return strconv.FormatUint(*f.v, 10)
}

func (f *casFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want a non-negative integer")
	}
	f.v = &n
	return nil
}

func (f *casFlag) Type() string { return "N" }

func listCmd(a *app) *cobra.Command {
	var keysOnly bool
	var o client.ListOptions
	cmd := &cobra.Command{
		Use:     "ls [PREFIX]",
		Aliases: []string{"list"},
		Short:   "List keys in order, with their values, across every group",
		Args:    args(0, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			prefix := ""
			if len(pos) == 1 {
				prefix = pos[0]
			}
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				if keysOnly {
					keys, err := c.Keys(ctx, prefix, o)
					for _, k := range keys {
						fmt.Fprintln(out, k)
					}
					return err
				}
				es, err := c.List(ctx, prefix, o)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY\tINDEX\tGROUP\tVALUE")
				for _, e := range es {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", e.Key, e.ModifyIndex, e.Group, printable(e.Value))
				}
				return tw.Flush()
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&keysOnly, "keys", false, "print the keys only, one per line")
	f.IntVar(&o.Limit, "limit", 0, "at most N entries (0: the server's limit)")
	f.StringVar(&o.After, "after", "", "start after this key (to page through a listing)")
	f.StringVar(&o.Consistency, "consistency", "", consistencyHelp)
	return cmd
}

func printable(b []byte) string {
	const max = 60
	s := strconv.Quote(string(b))
	s = s[1 : len(s)-1]
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

func printJSON(out io.Writer, v interface{}) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func statusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "This node's groups: state, leader, term, commit and applied index, keys, voters",
		Args:  args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				s, err := c.Status(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "node %s  replication %s  ring epoch %d\n", s.Node, s.Replication, s.RingEpoch)
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "GROUP\tSTATE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tKEYS\tVOTERS")
				for _, g := range append([]client.GroupStatus{s.Meta}, s.Groups...) {
					name := strconv.Itoa(int(g.ID))
					if g.ID == 0 {
						name = "meta"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", name, g.State, g.Leader, g.Term, g.CommitIndex, g.AppliedIndex, g.Keys, strings.Join(g.Voters, ","))
				}
				return tw.Flush()
			})
		},
	}
}

func healthCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Liveness and readiness of the node (exit status 1 unless both)",
		Args:  args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				alive, ready, reason := c.Healthy(ctx)
				fmt.Fprintf(out, "alive %v, ready %v", alive, ready)
				if reason != "" {
					fmt.Fprintf(out, " (%s)", reason)
				}
				fmt.Fprintln(out)
				if !alive || !ready {
					return fmt.Errorf("node is not ready")
				}
				return nil
			})
		},
	}
}

func snapshotCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "snapshot",
		Short: "Snapshot every group of this node now, so their logs can be compacted",
		Args:  args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				res, err := c.Snapshot(ctx)
				if err != nil {
					return err
				}
				for _, g := range res {
					if g.Taken {
						fmt.Fprintf(out, "group %d: snapshot at index %d\n", g.Group, g.Index)
					} else {
						fmt.Fprintf(out, "group %d: %s\n", g.Group, g.Note)
					}
				}
				return nil
			})
		},
	}
}
