package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/client"
)

// moveLine says the replica move in motion, and its last step.
func moveLine(s api.ClusterInfo) string {
	if s.Move == nil {
		return "no replica moving"
	}
	line := s.Move.String()
	if s.Progress != "" {
		line += ": " + s.Progress
	}
	return line
}

func nodeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Members: list them, drain one, remove one",
		Long: `node ls lists the members, their replicas and leaderships, and the replica
move in motion. node drain moves a node's replicas to other nodes; node
remove then takes it out of the cluster. Both follow the moves to their end
with a progress line unless --no-wait.`,
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "Members, their replicas and leaderships, the replica moving",
		Args:  args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.request(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				st, err := c.Cluster(ctx)
				if err != nil {
					return err
				}
				printCluster(out, st)
				return nil
			})
		},
	}
	var noWait, force bool
	verb := func(use, short string) *cobra.Command {
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  args(1, 1),
			RunE: func(cmd *cobra.Command, pos []string) error {
				return a.long(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
					return changeNode(ctx, a.timeout, c, cmd.Name(), pos[0], noWait, force, out)
				})
			},
		}
		cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the change is recorded, without following the moves")
		return cmd
	}
	remove := verb("remove ID", "Move a node's replicas off it, then remove it from the cluster")
	remove.Flags().BoolVar(&force, "force", false, "remove it even when that leaves a group short of a majority of its replicas")
	cmd.AddCommand(ls, verb("drain ID", "Move a node's replicas to other nodes; it takes none until undrained"),
		verb("undrain ID", "Let a drained node take replicas again"), remove)
	return cmd
}

// changeNode drains, undrains or removes node id and, unless noWait,
// follows the moves to their end.
func changeNode(ctx context.Context, timeout time.Duration, c *client.Client, verb, id string, noWait, force bool, out io.Writer) error {
	get := func() (api.ClusterInfo, error) {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return c.Cluster(rctx)
	}
	var resp api.NodeRemoval
	var err error
	rctx, cancel := context.WithTimeout(ctx, timeout)
	if verb == "remove" {
		resp, err = c.RemoveNode(rctx, id, force)
	} else {
		err = c.DrainNode(rctx, id, verb == "drain")
	}
	cancel()
	if err != nil {
		return err
	}
	switch {
	case verb == "remove" && resp.Removed != "":
		fmt.Fprintf(out, "node %s removed\n", id)
		return nil
	case verb == "remove":
		fmt.Fprintf(out, "node %s leaving: its %d replicas move to other nodes first\n", id, resp.Replicas)
	case verb == "drain":
		fmt.Fprintf(out, "node %s draining: its replicas move to other nodes\n", id)
	default:
		fmt.Fprintf(out, "node %s takes replicas again\n", id)
	}
	if noWait {
		return nil
	}
	return followNode(ctx, verb, id, get, out)
}

// followNode follows the replica moves after a node command (verb) until
// the node is gone (remove) or the placement has settled, showing progress
// on a terminal, then prints the cluster.
func followNode(ctx context.Context, verb, id string, get func() (api.ClusterInfo, error), out io.Writer) error {
	begin := time.Now()
	tty := isTerminal(os.Stderr)
	for {
		st, err := get()
		if err != nil {
			return err
		}
		nd, present := st.Node(base.NodeID(id))
		held := len(nd.Replicas)
		// The answering node may not have applied the change yet: wait
		// until its view shows the node's new state.
		var done bool
		switch verb {
		case "remove":
			done = !present
		case "drain":
			done = present && nd.Draining && (st.Balanced || held == 0 && st.Move == nil)
		default:
			done = present && !nd.Draining && st.Balanced
		}
		if done {
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			fmt.Fprintf(out, "done in %s\n", time.Since(begin).Round(time.Millisecond))
			printCluster(out, st)
			return nil
		}
		if tty {
			fmt.Fprintf(os.Stderr, "\r%s holds %d replicas; %s   ", id, held, moveLine(st))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func printCluster(out io.Writer, st api.ClusterInfo) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tWEIGHT\tSTATE\tREPLICAS\tLEADS")
	for _, n := range st.Nodes {
		state := "active"
		switch {
		case n.Leaving:
			state = "leaving"
		case n.Draining:
			state = "draining"
		}
		if !n.Voter {
			state += " (meta non-voter)"
		}
		w := n.Weight
		if w == 0 {
			w = 1
		}
		fmt.Fprintf(tw, "%s\t%s\t%g\t%s\t%s\t%s\n", n.ID, n.HTTPAddr, w, state, groupList(n.Replicas), groupList(n.Leads))
	}
	tw.Flush()
	fmt.Fprintf(out, "replication %d; %s", st.Replication, moveLine(st))
	if st.Balanced {
		fmt.Fprint(out, "; placement balanced")
	}
	fmt.Fprintln(out)
}

func groupList(gs []base.GroupID) string {
	if len(gs) == 0 {
		return "-"
	}
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = fmt.Sprint(g)
	}
	return strings.Join(s, ",")
}
