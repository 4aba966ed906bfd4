package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ringkv/ringkv/chaos"
)

// cmdHostile runs the hostile-input suite (chaos.Hostile) against a
// cluster and exits non-zero unless every case was refused as expected and
// left the cluster healthy.
func cmdHostile(ctx context.Context, args []string, out io.Writer) error {
	var (
		tf      targetFlags
		groups  int
		asJSON  bool
		recover time.Duration
	)
	_, err := subFlags("hostile", args, func(fs *flag.FlagSet) {
		tf.define(fs)
		fs.IntVar(&groups, "groups", 1, "local: data groups (1 tries the single-group layout, where weights once panicked)")
		fs.BoolVar(&asJSON, "json", false, "print the results as JSON")
		fs.DurationVar(&recover, "recover", 30*time.Second, "how long the cluster may take to be healthy after each case")
	})
	if err != nil {
		return err
	}
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
