package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/client"
)

func verifyCmd(a *app) *cobra.Command {
	var noRepair, shallow bool
	cmd := &cobra.Command{
		Use:   "verify [GROUP]",
		Short: "Prove every replica holds the same data; locate and repair one that does not",
		Long: `verify compares every replica of every group (or of GROUP) at one Raft
index by Merkle root, reading all of each replica's data. A replica that
differs is located to its key ranges and keys, and repaired from a
checkpoint of the others unless --no-repair. --shallow compares the kept
trees only, without reading the data.`,
		Args: args(0, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			o := client.VerifyOptions{Shallow: shallow, NoRepair: noRepair}
			if len(pos) == 1 {
				g, err := strconv.ParseUint(pos[0], 10, 32)
				if err != nil || g == 0 {
					return fmt.Errorf("verify: group %q is not a group id", pos[0])
				}
				o.Group = uint32(g)
			}
			return a.long(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				return verify(ctx, c, o, out)
			})
		},
	}
	cmd.Flags().BoolVar(&shallow, "shallow", false, "compare the trees the replicas keep, without reading their data")
	cmd.Flags().BoolVar(&noRepair, "no-repair", false, "report a divergent replica without repairing it")
	return cmd
}

// verify runs a verification and prints every replica's root and what
// differs; it fails unless every replica agrees.
func verify(ctx context.Context, c *client.Client, o client.VerifyOptions, out io.Writer) error {
	deep := !o.Shallow
	timeout := time.Minute
	if deep {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := c.Verify(ctx, o)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tINDEX\tREPLICA\tROOT\tAGREES")
	var details []string
	for _, g := range res.Groups {
		for _, r := range g.Replicas {
			agrees := "yes"
			root := short(r.Root)
			switch {
			case r.Error != "" && r.Root == "":
				agrees, root = "NO: "+r.Error, "-"
			case r.Root != g.Root || r.Index != g.Index:
				agrees = "NO"
			case deep && r.DataRoot != g.Root:
				agrees = "NO: its data gives root " + short(r.DataRoot)
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", g.Group, g.Index, r.Node, root, agrees)
			if d := r.Diff; d != nil {
				details = append(details, fmt.Sprintf("group %d, replica %s differs from %s in %d key range(s) (%d hashes compared):", g.Group, r.Node, d.Against, len(d.Ranges), d.Hashes))
				for _, rg := range d.Ranges {
					details = append(details, fmt.Sprintf("  leaf %d: key hashes %s-%s", rg.Leaf, rg.From, rg.To))
				}
				for _, k := range d.Keys {
					details = append(details, fmt.Sprintf("  key %q", k))
				}
				if d.MoreKeys {
					details = append(details, "  (more keys differ than listed)")
				}
			}
			if r.Error != "" && r.Root != "" {
				details = append(details, fmt.Sprintf("group %d, replica %s: %s", g.Group, r.Node, r.Error))
			}
			if rp := r.Repair; rp != nil {
				if rp.Done {
					details = append(details, fmt.Sprintf("group %d, replica %s: repaired from %s with a checkpoint at index %d", g.Group, r.Node, rp.From, rp.Index))
				} else {
					details = append(details, fmt.Sprintf("group %d, replica %s: NOT repaired: %s", g.Group, r.Node, rp.Error))
				}
			}
		}
	}
	tw.Flush()
	for _, d := range details {
		fmt.Fprintln(out, d)
	}
	if !res.Agree {
		return errors.New("replicas disagree")
	}
	fmt.Fprintln(out, "every replica of every group verified holds the same data")
	return nil
}

func short(root string) string {
	if len(root) > 16 {
		return root[:16]
	}
	return root
}
