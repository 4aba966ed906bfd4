package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/ringkv/ringkv/links"
)

// Emulated links between local nodes (LocalOptions.Link, ClientLink and
// PairLink): the links themselves live in package links; here they are
// put in front of the nodes and kept across restarts.

// linkPairs links new node p (index i) with every node started before it,
// a link each way, and routes the earlier nodes' dials to p through
// theirs (the fault hook) before p starts.
func (c *Cluster) linkPairs(ctx context.Context, o LocalOptions, p *Proc, i int) error {
	if c.net == nil {
		c.net = links.New()
	}
	p.via = map[string]string{}
	for j, q := range c.Procs {
		to, err := c.net.Front(q.ID+"->"+p.ID, p.RaftAddr, o.PairLink(j, i))
		if err != nil {
			return err
		}
		from, err := c.net.Front(p.ID+"->"+q.ID, q.RaftAddr, o.PairLink(i, j))
		if err != nil {
			return err
		}
		p.via[q.RaftAddr] = from.Addr()
		if q.via == nil {
			q.via = map[string]string{}
		}
		q.via[p.RaftAddr] = to.Addr()
		if q.Running() {
			if err := q.Client.DoJSON(ctx, http.MethodPost, "/v1/debug/fault", map[string]any{"via": q.via}, nil); err != nil {
				return fmt.Errorf("routing %s through its links: %w", q.ID, err)
			}
		}
	}
	return nil
}

// ClientURL is the URL clients of a benchmark use: through the node's
// client link when it has one, else URL.
func (p *Proc) ClientURL() string {
	if p.ClientLink == nil {
		return p.URL()
	}
	scheme := "http://"
	if p.https {
		scheme = "https://"
	}
	return scheme + p.ClientLink.Addr()
}

// SetLinks gives every node's link a new shape, at once; open connections
// take it too. It fails on a cluster without emulated links.
func (c *Cluster) SetLinks(s links.Shape) error {
	if c.net == nil || c.local == nil || c.local.Link == nil {
		return errors.New("chaos: this cluster has no emulated links between its nodes")
	}
	for _, p := range c.Procs {
		if p.Link != nil {
			if err := p.Link.Set(s); err != nil {
				return err
			}
		}
	}
	return nil
}
