package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/client"
)

func ringCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ring",
		Short: "The ring: groups, weights, shares, leaders; where a key lives; ring changes",
		Long: `With no subcommand, ring prints the ring: its epoch, and every group's
weight, virtual nodes, share of the key space, leader and replicas.

A ring change (add, remove, weight) moves keys online, range by range; the
command follows it to its end with a progress line unless --no-wait.
ring plan shows what a change would move before anything moves.`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.request(cmd, printRing)
		},
	}
	lookup := &cobra.Command{
		Use:   "lookup KEY",
		Short: "The group, leader and replicas owning KEY",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				l, err := c.Lookup(ctx, pos[0])
				if err != nil {
					return err
				}
				return printJSON(out, l)
			})
		},
	}
	cmd.AddCommand(lookup, ringPlanCmd(a))
	cmd.AddCommand(ringChangeCmds(a)...)
	return cmd
}

func printRing(ctx context.Context, c *client.Client, out io.Writer) error {
	r, err := c.Ring(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "ring epoch %d, %d vnodes per unit of weight\n", r.Epoch, r.VNodesPerWeight)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tWEIGHT\tVNODES\tSHARE\tLEADER\tREPLICAS")
	for _, g := range r.Groups {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.2f%%\t%s\t%s\n", g.ID, g.Weight, g.VNodes, 100*g.Share, g.Leader, joinIDs(g.Replicas))
	}
	return tw.Flush()
}

// joinIDs lists node ids with commas.
func joinIDs(ids []base.NodeID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = string(id)
	}
	return strings.Join(s, ",")
}

func ringPlanCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:       "plan add GROUP[:WEIGHT] | plan remove GROUP | plan weight GROUP:WEIGHT",
		Short:     "What a ring change would move (ranges, keys, bytes), before anything moves",
		Args:      args(2, 2),
		ValidArgs: []string{"add", "remove", "weight"},
		RunE: func(cmd *cobra.Command, pos []string) error {
			if pos[0] != "add" && pos[0] != "remove" && pos[0] != "weight" {
				return fmt.Errorf("ring plan: want add GROUP[:WEIGHT], remove GROUP or weight GROUP:WEIGHT, not %q", pos[0])
			}
			q := url.Values{pos[0]: {pos[1]}}
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				p, err := c.Plan(ctx, q, false)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(out, p)
				}
				return printPlan(p, out)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as the API's JSON")
	return cmd
}

func printPlan(p api.Plan, out io.Writer) error {
	fmt.Fprintf(out, "plan: %s (ring epoch %d -> %d)\n", p.Change, p.Epoch, p.NextEpoch)
	fmt.Fprintf(out, "moves %.2f%% of the key space (ideal %.2f%%): %d of %d keys, %s\n",
		100*p.MovedShare, 100*p.IdealShare, p.MovedKeys, p.TotalKeys, human(int64(p.MovedBytes)))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tRANGES\tSHARE\tKEYS\tBYTES")
	for _, t := range p.Transfers {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.2f%%\t%d\t%s\n", t.From, t.To, t.Ranges, 100*t.Share, t.Keys, human(int64(t.Bytes)))
	}
	tw.Flush()
	before := map[base.GroupID]float64{}
	for _, g := range p.Before {
		before[g.ID] = g.Share
	}
	fmt.Fprintln(tw, "GROUP\tWEIGHT\tSHARE NOW\tSHARE AFTER")
	for _, g := range p.After {
		fmt.Fprintf(tw, "%d\t%d\t%.2f%%\t%.2f%%\n", g.ID, g.Weight, 100*before[g.ID], 100*g.Share)
	}
	for _, g := range p.Before {
		if !hasGroup(p.After, g.ID) {
			fmt.Fprintf(tw, "%d\t-\t%.2f%%\tretired\n", g.ID, 100*g.Share)
		}
	}
	return tw.Flush()
}

func hasGroup(gs []api.PlanGroup, id base.GroupID) bool {
	for _, g := range gs {
		if g.ID == id {
			return true
		}
	}
	return false
}

// ringChangeCmds are ring add, remove, weight and abort.
func ringChangeCmds(a *app) []*cobra.Command {
	var noWait bool
	var weight int
	change := func(use, short string, min, max int, start func(ctx context.Context, c *client.Client, pos []string) (api.RingChangeStarted, error)) *cobra.Command {
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  args(min, max),
			RunE: func(cmd *cobra.Command, pos []string) error {
				return a.long(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
					rctx, cancel := context.WithTimeout(ctx, a.timeout)
					started, err := start(rctx, c, pos)
					cancel()
					if err != nil {
						return err
					}
					return followRingChange(ctx, a.timeout, c, cmd.Name() == "abort", noWait, started, out)
				})
			},
		}
		cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the change has started, without following it")
		return cmd
	}
	add := change("add [GROUP]", "Add a data group (GROUP, or the next free id) and move its share of the keys to it", 0, 1,
		func(ctx context.Context, c *client.Client, pos []string) (api.RingChangeStarted, error) {
			var id uint64
			if len(pos) == 1 {
				var err error
				if id, err = strconv.ParseUint(pos[0], 10, 32); err != nil {
					return api.RingChangeStarted{}, fmt.Errorf("ring add: group %q is not a group id", pos[0])
				}
			}
			return c.AddGroup(ctx, uint32(id), weight)
		})
	add.Flags().IntVar(&weight, "weight", 1, "the new group's weight (its share of the key space is proportional)")
	remove := change("remove GROUP", "Retire a data group: its keys move to the others first", 1, 1,
		func(ctx context.Context, c *client.Client, pos []string) (api.RingChangeStarted, error) {
			return c.RemoveGroup(ctx, pos[0])
		})
	setWeight := change("weight GROUP WEIGHT", "Change a group's weight; keys move to follow its new share", 2, 2,
		func(ctx context.Context, c *client.Client, pos []string) (api.RingChangeStarted, error) {
			w, err := strconv.Atoi(pos[1])
			if err != nil {
				return api.RingChangeStarted{}, fmt.Errorf("ring weight: %q is not a weight", pos[1])
			}
			return c.SetGroupWeight(ctx, pos[0], w)
		})
	abort := change("abort", "Undo the ring change in motion (before any range has flipped)", 0, 0,
		func(ctx context.Context, c *client.Client, _ []string) (api.RingChangeStarted, error) {
			return c.AbortRingChange(ctx)
		})
	return []*cobra.Command{add, remove, setWeight, abort}
}

// followRingChange says the change started and, unless noWait, follows it
// to its end with a progress line, however long the move takes (each
// request is bounded by timeout; ctx ends the wait), then prints the ring.
func followRingChange(ctx context.Context, timeout time.Duration, c *client.Client, abort, noWait bool, started api.RingChangeStarted, out io.Writer) error {
	next := started.Epoch + 1
	if started.Migration != nil {
		next = started.Migration.NextEpoch
	}
	if abort {
		next = started.Epoch // the ring stays
		fmt.Fprintf(out, "aborting the ring change in motion (ring epoch stays %d)\n", started.Epoch)
	} else {
		fmt.Fprintf(out, "started: %s (ring epoch %d -> %d)\n", started.Started, started.Epoch, next)
	}
	if noWait {
		return nil
	}
	begin := time.Now()
	tty := isTerminal(os.Stderr)
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		st, err := c.Ring(rctx)
		cancel()
		if err != nil {
			return err
		}
		if st.Epoch >= next && st.Migration == nil {
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			fmt.Fprintf(out, "done in %s: ring epoch %d\n", time.Since(begin).Round(time.Millisecond), st.Epoch)
			rctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return printRing(rctx, c, out)
		}
		if m := st.Migration; m != nil && tty {
			var copied uint64
			phases := map[string]int{}
			for _, t := range m.Transfers {
				copied += t.Keys
				phases[t.Phase]++
			}
			fmt.Fprintf(os.Stderr, "\r%s: %d of %d transfers done, %d keys copied, phases %v   ", m.Change, m.Done, len(m.Transfers), copied, phases)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func leaderCmd(a *app) *cobra.Command {
	var unpin bool
	cmd := &cobra.Command{
		Use:   "leader GROUP NODE | leader GROUP --unpin",
		Short: "Pin a group's leader to a node, or lift the pin",
		Long: `leader GROUP NODE pins GROUP's leader to NODE: leadership moves there once
that replica has caught up, and stays. leader GROUP --unpin lets the
balancer place it again.`,
		Args: args(1, 2),
		RunE: func(cmd *cobra.Command, pos []string) error {
			g, err := strconv.ParseUint(pos[0], 10, 32)
			if err != nil {
				return fmt.Errorf("leader: group %q is not a group id", pos[0])
			}
			if unpin != (len(pos) == 1) {
				return errors.New("leader: name a NODE, or give --unpin")
			}
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				if unpin {
					if err := c.PinLeader(ctx, uint32(g), ""); err != nil {
						return err
					}
					fmt.Fprintf(out, "group %s: leader unpinned; the balancer places it\n", pos[0])
					return nil
				}
				if err := c.PinLeader(ctx, uint32(g), pos[1]); err != nil {
					return err
				}
				fmt.Fprintf(out, "group %s: leader pinned to %s; it moves there once that replica has caught up\n", pos[0], pos[1])
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&unpin, "unpin", false, "lift the pin")
	return cmd
}
