package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/links"
)

// linkProxyCmd serves emulated links (package links) between nodes that
// cannot host them in-process: the compose wan profile runs it in a
// container of its own, in front of every node's Raft port.
func linkProxyCmd() *cobra.Command {
	var (
		routes    []string
		latency   time.Duration
		jitter    time.Duration
		bandwidth string
	)
	cmd := &cobra.Command{
		Use:   "link-proxy --route LISTEN=UPSTREAM... [--latency 10ms]",
		Short: "Serve links with latency, jitter and a bandwidth cap in front of nodes' Raft ports",
		Long: `link-proxy listens on each --route's address and passes what it receives
to the route's upstream, delayed by --latency in each direction (so a
request and its answer pay it twice, as on a real link), with optional
--jitter and --bandwidth. Nodes advertise the listening addresses as their
Raft addresses (ringkvd --advertise-raft), so all traffic between them
crosses the links. It runs until interrupted (SIGINT or SIGTERM).`,
		Example: `  ringkv link-proxy --latency 10ms --route 0.0.0.0:7101=ringkv-wan1:7071 --route 0.0.0.0:7102=ringkv-wan2:7071`,
		Args:    args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			bw, err := links.ParseBandwidth(bandwidth)
			if err != nil {
				return err
			}
			shape := links.Shape{Latency: latency, Jitter: jitter, Bandwidth: bw}
			if err := shape.Check(); err != nil {
				return err
			}
			if len(routes) == 0 {
				return errors.New("link-proxy: give at least one --route LISTEN=UPSTREAM")
			}
			n := links.New()
			defer n.Close()
			for _, r := range routes {
				listen, upstream, ok := strings.Cut(r, "=")
				if !ok || listen == "" || upstream == "" {
					return fmt.Errorf("link-proxy: route %q: want LISTEN=UPSTREAM (0.0.0.0:7101=ringkv-wan1:7071)", r)
				}
				l, err := n.FrontOn(upstream, listen, upstream, shape)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "link %s -> %s: %s each way\n", l.Addr(), upstream, shape)
			}
			<-cmd.Context().Done()
			fmt.Fprintln(cmd.OutOrStdout(), "link-proxy: stopping")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&routes, "route", nil, "LISTEN=UPSTREAM: a link listening on LISTEN in front of UPSTREAM (repeat, or separate by commas, for each node)")
	f.DurationVar(&latency, "latency", 0, "one-way latency of every link, in whole ms")
	f.DurationVar(&jitter, "jitter", 0, "each delay varies by up to this much either way")
	f.StringVar(&bandwidth, "bandwidth", "", "a cap on each direction of each link (100mbit, 1gbit, 10MB)")
	return cmd
}
