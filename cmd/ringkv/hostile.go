package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/chaos"
)

func hostileCmd() *cobra.Command {
	var (
		tf      targetFlags
		groups  int
		asJSON  bool
		recover time.Duration
	)
	cmd := &cobra.Command{
		Use:   "hostile",
		Short: "Send reserved values, internal calls and forged Raft RPCs; check each is refused safely",
		Long: `hostile sends what a hostile or careless client would: reserved ids and
values, internal routes on the client port, forged Raft RPCs and forwarded
requests on the Raft port, bodies that are too large. Each case must be
refused with the right status and code, and leave the cluster healthy
within --recover. Exit status 1 otherwise.`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runHostile(cmd.Context(), tf, groups, asJSON, recover, cmd.OutOrStdout())
		},
	}
	tf.define(cmd.Flags())
	fs := cmd.Flags()
	fs.IntVar(&groups, "groups", 1, "local: data groups (1 tries the single-group layout, where weights once panicked)")
	fs.BoolVar(&asJSON, "json", false, "print the results as JSON")
	fs.DurationVar(&recover, "recover", 30*time.Second, "how long the cluster may take to be healthy after each case")
	return cmd
}

// runHostile runs the hostile-input suite (chaos.Hostile) against a
// cluster and fails unless every case was refused as expected and left
// the cluster healthy.
func runHostile(ctx context.Context, tf targetFlags, groups int, asJSON bool, recover time.Duration, out io.Writer) error {
	if err := tf.check(); err != nil {
		return fmt.Errorf("hostile: %w", err)
	}
	dir, err := os.MkdirTemp("", "ringkv-hostile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cluster, desc, err := tf.open(sctx, dir, groups)
	if err != nil {
		return fmt.Errorf("hostile: starting the cluster: %w", err)
	}
	defer cluster.Stop()
	var endpoints []string
	for _, p := range cluster.Procs {
		endpoints = append(endpoints, p.URL())
	}
	if !asJSON {
		fmt.Fprintf(out, "hostile: %s\n", desc)
	}
	log := func(r chaos.HostileResult) {
		if asJSON {
			return
		}
		mark := "ok  "
		if !r.OK() {
			mark = "FAIL"
		}
		fmt.Fprintf(out, "%s %s\n     sent %s\n     got  %s\n", mark, r.Name, r.Sent, r.Got)
		if !r.OK() {
			fmt.Fprintf(out, "     %s\n", r.Error)
		}
	}
	results, err := chaos.Hostile(ctx, endpoints, chaos.HostileOptions{Recover: recover, Log: log, Token: cluster.Token})
	if err != nil {
		return fmt.Errorf("hostile: %w", err)
	}
	failed := 0
	for _, r := range results {
		if !r.OK() {
			failed++
		}
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "hostile: %d cases, %d failed\n", len(results), failed)
	}
	if failed > 0 {
		return errors.New("hostile: some cases were not refused safely")
	}
	return nil
}
