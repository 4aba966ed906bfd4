package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ringkv/ringkv/certs"
	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/links"
)

// targetFlags choose the cluster a fault-injecting command runs against:
// local processes it starts itself, the docker-compose containers, or
// running nodes it attaches to (controlled by commands, if given).
type targetFlags struct {
	target, endpoints, containers string
	killCmd, startCmd, bin        string
	peerTLS, acl                  bool
	// link, when set, puts local nodes behind emulated links; pairs
	// links each pair of them (--regions), described by geometry.
	link     *links.Shape
	pairs    func(from, to int) links.Shape
	geometry string
}

func (t *targetFlags) define(fs *pflag.FlagSet) {
	fs.StringVar(&t.target, "target", "local", "local: start 3 ringkvd processes on 127.0.0.1; compose: the docker-compose cluster; endpoints: attach to --endpoints")
	fs.StringVar(&t.containers, "containers", "ringkv1,ringkv2,ringkv3", "compose: the containers, in the order of --endpoints")
	fs.StringVar(&t.endpoints, "endpoints", "", "compose or endpoints: comma-separated URLs of the running nodes")
	fs.StringVar(&t.killCmd, "kill-cmd", "", "endpoints: shell command that kills node {node} (id) at {url} with SIGKILL")
	fs.StringVar(&t.startCmd, "start-cmd", "", "endpoints: shell command that starts node {node} again")
	fs.StringVar(&t.bin, "ringkvd", "", "local: path to the ringkvd binary (default: next to ringkv, then $PATH)")
	fs.BoolVar(&t.peerTLS, "peer-tls", false, "local: the nodes speak mutual TLS between them (a CA and node certificates are made in the run's directory)")
	fs.BoolVar(&t.acl, "acl", false, "local: the nodes run with access control (--acl); the harness bootstraps it and acts with the management token")
}

// controls reports whether the target can kill and restart nodes.
func (t *targetFlags) controls() bool { return t.target != "endpoints" || t.killCmd != "" }

// check validates the flags and fills in defaults.
func (t *targetFlags) check() error {
	switch t.target {
	case "local":
		if t.bin == "" {
			bin, err := findRingkvd()
			if err != nil {
				return err
			}
			t.bin = bin
		}
	case "compose":
		if t.endpoints == "" {
			t.endpoints = "http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003"
		}
	case "endpoints":
		if t.endpoints == "" {
			return errors.New("--target endpoints needs --endpoints URL,URL,...")
		}
		if (t.killCmd == "") != (t.startCmd == "") {
			return errors.New("--kill-cmd and --start-cmd go together")
		}
	default:
		return fmt.Errorf("target %q is not available; use local, compose or endpoints", t.target)
	}
	return nil
}

// open starts or attaches to the cluster and says what it is.
func (t *targetFlags) open(ctx context.Context, dir string, groups int) (*chaos.Cluster, string, error) {
	eps := splitList(t.endpoints)
	switch {
	case t.target == "compose":
		c, err := chaos.AttachContainers(ctx, eps, splitList(t.containers))
		return c, "containers " + t.containers + " at " + t.endpoints, err
	case t.target == "endpoints" && t.killCmd != "":
		c, err := chaos.AttachControlled(ctx, eps, t.killCmd, t.startCmd)
		return c, "attached to " + t.endpoints + " (killed with: " + t.killCmd + ")", err
	case t.target == "endpoints":
		c, err := chaos.Attach(ctx, eps)
		return c, "attached to " + t.endpoints, err
	}
	args, desc := chaos.NodeArgs(groups), fmt.Sprintf("3 local nodes, %d groups", groups)
	if t.peerTLS {
		peerArgs, err := localPeerTLS(filepath.Join(dir, "certs"))
		if err != nil {
			return nil, "", err
		}
		args, desc = append(args, peerArgs...), desc+", peer TLS"
	}
	if t.acl {
		desc += ", access control"
	}
	if t.link != nil {
		desc += ", links " + t.link.String()
	}
	if t.pairs != nil {
		desc += ", " + t.geometry
	}
	c, err := chaos.StartLocal(ctx, chaos.LocalOptions{Bin: t.bin, Dir: dir, Nodes: 3, Args: args, ACL: t.acl, Link: t.link, PairLink: t.pairs})
	return c, desc, err
}

// localPeerTLS makes a CA and certificates for node1 to node5 (the scale
// nemesis adds two) on 127.0.0.1 in dir, and returns the ringkvd flags
// that use them.
func localPeerTLS(dir string) ([]string, error) {
	if err := certs.CreateCA(dir); err != nil {
		return nil, err
	}
	for i := 1; i <= 5; i++ {
		if err := certs.CreateNode(dir, fmt.Sprintf("node%d", i), []string{"127.0.0.1", "localhost"}); err != nil {
			return nil, err
		}
	}
	crt, key := certs.Files(dir, "{id}")
	ca, _ := certs.Files(dir, "ca")
	return []string{"--peer-cert", crt, "--peer-key", key, "--peer-ca", ca}, nil
}

func chaosCmd() *cobra.Command {
	var (
		tf targetFlags
		o  chaosFlags
	)
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Inject faults (or ring changes) under load and check the history is linearizable",
		Long: `chaos runs --clients clients of reads, writes and compare-and-sets against
a cluster while cycling through faults (kill, pause, partition) or ring
changes (reshard, scale), then checks the history with porcupine and that
no acknowledged write was lost. Exit status 1 unless every check passed;
the report and logs stay in --dir then.`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runChaos(cmd.Context(), tf, o, cmd.OutOrStdout())
		},
	}
	tf.define(cmd.Flags())
	fs := cmd.Flags()
	fs.DurationVar(&o.duration, "duration", time.Minute, "how long to run the workload")
	fs.StringVar(&o.nemesis, "nemesis", "kill,pause,partition", "fault kinds to cycle through (reshard: add groups up to twice as many, then retire them; scale: add two nodes, double the groups, then shrink back)")
	fs.StringVar(&o.composeDir, "compose-dir", ".", "with --target compose and the scale nemesis: the directory of docker-compose.yml and docker-compose.scale.yml (spare nodes ringkv4, ringkv5)")
	fs.DurationVar(&o.faultFor, "fault-for", 2*time.Second, "how long each fault lasts (pauses must outlast the election timeout)")
	fs.IntVar(&o.workers, "clients", 8, "concurrent clients")
	fs.IntVar(&o.groups, "groups", 3, "data groups")
	fs.IntVar(&o.watchers, "watchers", 0, "watch streams kept open on the workload's keys through the faults, each checked after the run: every acknowledged write once, in order for its key, nothing never written")
	fs.StringVar(&o.replication, "replication", "", "sync or async plain puts (async: lost writes are reported, not failed)")
	fs.StringVar(&o.dir, "dir", "", "directory for data, logs and the violation report (default: a new temporary one)")
	fs.BoolVar(&o.keep, "keep", false, "keep the directory after a passing run")
	o.links.define(fs)
	return cmd
}

// chaosFlags are chaos's own flags.
type chaosFlags struct {
	nemesis, dir, replication, composeDir string
	duration, faultFor                    time.Duration
	workers, groups, watchers             int
	keep                                  bool
	links                                 linkFlags
}

// runChaos runs the fault-injection harness and fails unless every check
// passed.
func runChaos(ctx context.Context, tf targetFlags, o chaosFlags, out io.Writer) error {
	nemesis, dir, replication, composeDir := o.nemesis, o.dir, o.replication, o.composeDir
	duration, faultFor, workers, groups, keep := o.duration, o.faultFor, o.workers, o.groups, o.keep
	var err error
	if replication != "" && replication != "sync" && replication != "async" {
		return fmt.Errorf("chaos: replication %q: want sync or async", replication)
	}
	kinds := strings.Split(nemesis, ",")
	for _, k := range kinds {
		if k != chaos.FaultKill && k != chaos.FaultPause && k != chaos.FaultPartition && k != chaos.FaultReshard && k != chaos.FaultScale {
			return fmt.Errorf("chaos: unknown fault %q (want kill, pause, partition, reshard, scale)", k)
		}
		if k == chaos.FaultScale && tf.target == "endpoints" {
			return errors.New("chaos: the scale nemesis starts nodes: use --target local or compose")
		}
		if tf.target == "endpoints" && (k == chaos.FaultPause || k == chaos.FaultKill && !tf.controls()) {
			return fmt.Errorf("chaos: fault %q needs process control; attached nodes take partition, and kill with --kill-cmd and --start-cmd", k)
		}
	}
	if err := tf.check(); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if o.watchers < 0 || o.watchers > 10000 {
		return fmt.Errorf("chaos: --watchers %d: want 0 to 10000", o.watchers)
	}
	if err := checkLinkTarget(tf.target, o.links); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if o.links.on() {
		shapes, err := o.links.shapes()
		if err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		if len(shapes) != 1 || o.links.regions != "" {
			return errors.New("chaos: --link-latency takes one latency here (and no --regions)")
		}
		tf.link = &shapes[0]
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ringkv-chaos-"); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cluster, desc, err := tf.open(sctx, dir, groups)
	if err != nil {
		return fmt.Errorf("chaos: starting the cluster: %w", err)
	}
	defer cluster.Stop()
	if tf.target == "compose" {
		cluster.SetSpares(chaos.ComposeSpares(composeDir))
	}
	fmt.Fprintf(out, "chaos: %s, %d clients, %v, faults %s; files in %s\n", desc, workers, duration, nemesis, dir)
	rep, err := chaos.Run(ctx, chaos.Config{Cluster: cluster, Groups: groups, Duration: duration, Nemesis: kinds,
		FaultFor: faultFor, Recover: time.Second, Workers: workers, OutDir: dir, Progress: out, Replication: replication, Watchers: o.watchers})
	if err != nil {
		return fmt.Errorf("chaos: %w (logs in %s)", err, dir)
	}
	rep.Print(out)
	if !rep.OK() {
		return errors.New("chaos: checks failed (logs and report in " + dir + ")")
	}
	if !keep {
		cluster.Stop()
		os.RemoveAll(dir)
	}
	return nil
}

func findRingkvd() (string, error) {
	if self, err := os.Executable(); err == nil {
		cand := filepath.Join(filepath.Dir(self), "ringkvd")
		if _, err := os.Stat(cand); err == nil {
			return cand, nil
		}
	}
	if p, err := exec.LookPath("ringkvd"); err == nil {
		return p, nil
	}
	return "", errors.New("chaos: no ringkvd binary next to ringkv or on $PATH; build it (go build -o ringkvd ./cmd/ringkvd) or pass --ringkvd")
}
