package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/client"
)

// cmdRingChange starts a ring change (add [GROUP] [--weight W], remove
// GROUP, weight GROUP W) and, unless --no-wait, follows it to the end with
// a progress line, however long the move takes (each request is bounded by
// timeout; ctx ends the wait).
func cmdRingChange(ctx context.Context, timeout time.Duration, c *client.Client, args []string, out io.Writer) error {
	op := args[0]
	var weight int
	var noWait bool
	pos, err := subFlags("ring "+op, args[1:], func(fs *flag.FlagSet) {
		fs.IntVar(&weight, "weight", 1, "")
		fs.BoolVar(&noWait, "no-wait", false, "")
	})
	usage := errors.New("usage: ringkv ring add [GROUP] [--weight W] | ring remove GROUP | ring weight GROUP W  [--no-wait] | ring abort")
	if err != nil {
		return usage
	}
	var method, path string
	var body interface{}
	switch {
	case op == "add" && len(pos) <= 1:
		b := map[string]interface{}{"weight": weight}
		if len(pos) == 1 {
			id, err := strconv.ParseUint(pos[0], 10, 32)
			if err != nil {
				return usage
			}
			b["id"] = id
		}
		method, path, body = http.MethodPost, "/v1/ring/groups", b
	case op == "remove" && len(pos) == 1:
		method, path = http.MethodDelete, "/v1/ring/groups/"+url.PathEscape(pos[0])
	case op == "abort" && len(pos) == 0:
		method, path = http.MethodDelete, "/v1/ring/migration"
	case op == "weight" && len(pos) == 2:
		w, err := strconv.Atoi(pos[1])
		if err != nil {
			return usage
		}
		method, path, body = http.MethodPut, "/v1/ring/groups/"+url.PathEscape(pos[0])+"/weight", map[string]int{"weight": w}
	default:
		return usage
	}
	var started struct {
		Started string `json:"started"`
		api.RingInfo
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	err = c.DoJSON(rctx, method, path, body, &started)
	cancel()
	if err != nil {
		return err
	}
	next := started.Epoch + 1
	if started.Migration != nil {
		next = started.Migration.NextEpoch
	}
	if op == "abort" {
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
			return cmdRing(rctx, c, nil, out)
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
	p, err := c.Plan(ctx, q, false)
	if err != nil {
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

// cmdLeader pins a group's leader to a node (ringkv leader GROUP NODE), or
// lifts the pin (ringkv leader GROUP --unpin).
func cmdLeader(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	if len(args) != 2 {
		return errors.New("usage: ringkv leader GROUP NODE | ringkv leader GROUP --unpin")
	}
	g, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return fmt.Errorf("ringkv leader: group %q is not a group id", args[0])
	}
	if args[1] == "--unpin" {
		if err := c.PinLeader(ctx, uint32(g), ""); err != nil {
			return err
		}
		fmt.Fprintf(out, "group %s: leader unpinned; the balancer places it\n", args[0])
		return nil
	}
	if err := c.PinLeader(ctx, uint32(g), args[1]); err != nil {
		return err
	}
	fmt.Fprintf(out, "group %s: leader pinned to %s; it moves there once that replica has caught up\n", args[0], args[1])
	return nil
}
