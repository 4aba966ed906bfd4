package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"

	"github.com/ringkv/ringkv/client"
)

// ringPlan is the answer of GET /v1/ring/plan.
type ringPlan struct {
	Change     string      `json:"change"`
	Epoch      uint64      `json:"epoch"`
	NextEpoch  uint64      `json:"next_epoch"`
	MovedShare float64     `json:"moved_share"`
	IdealShare float64     `json:"ideal_share"`
	MovedKeys  uint64      `json:"moved_keys"`
	MovedBytes uint64      `json:"moved_bytes"`
	TotalKeys  uint64      `json:"total_keys"`
	Before     []planGroup `json:"before"`
	After      []planGroup `json:"after"`
	Transfers  []struct {
		From   uint32  `json:"from"`
		To     uint32  `json:"to"`
		Ranges int     `json:"ranges"`
		Share  float64 `json:"share"`
		Keys   uint64  `json:"keys"`
		Bytes  uint64  `json:"bytes"`
	} `json:"transfers"`
}

type planGroup struct {
	ID     uint32  `json:"id"`
	Weight int     `json:"weight"`
	Share  float64 `json:"share"`
}

// ringChangeQuery turns "add G[:W]", "remove G" or "weight G:W" into the
// query of the ring endpoints.
func ringChangeQuery(args []string) (url.Values, error) {
	if len(args) != 2 || (args[0] != "add" && args[0] != "remove" && args[0] != "weight") {
		return nil, errors.New("want add GROUP[:WEIGHT], remove GROUP or weight GROUP:WEIGHT")
	}
	return url.Values{args[0]: {args[1]}}, nil
}

// cmdRingPlan previews a ring change.
func cmdRingPlan(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	asJSON := len(args) > 0 && args[len(args)-1] == "--json"
	if asJSON {
		args = args[:len(args)-1]
	}
	q, err := ringChangeQuery(args)
	if err != nil {
		return errors.New("usage: ringkv ring plan add GROUP[:WEIGHT] | remove GROUP | weight GROUP:WEIGHT [--json]: " + err.Error())
	}
	if asJSON {
		var raw json.RawMessage
		if err := c.GetJSON(ctx, "/v1/ring/plan", q, &raw); err != nil {
			return err
		}
		return printJSON(out, raw)
	}
	var p ringPlan
	if err := c.GetJSON(ctx, "/v1/ring/plan", q, &p); err != nil {
		return err
	}
	fmt.Fprintf(out, "plan: %s (ring epoch %d -> %d)\n", p.Change, p.Epoch, p.NextEpoch)
	fmt.Fprintf(out, "moves %.2f%% of the key space (ideal %.2f%%): %d of %d keys, %s\n",
		100*p.MovedShare, 100*p.IdealShare, p.MovedKeys, p.TotalKeys, human(int64(p.MovedBytes)))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tRANGES\tSHARE\tKEYS\tBYTES")
	for _, t := range p.Transfers {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.2f%%\t%d\t%s\n", t.From, t.To, t.Ranges, 100*t.Share, t.Keys, human(int64(t.Bytes)))
	}
	tw.Flush()
	before := map[uint32]float64{}
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

func hasGroup(gs []planGroup, id uint32) bool {
	for _, g := range gs {
		if g.ID == id {
			return true
		}
	}
	return false
}
