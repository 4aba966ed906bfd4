package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringkv/ringkv/chaos"
)

// cmdChaos runs the fault-injection harness and exits non-zero unless every
// check passed.
func cmdChaos(ctx context.Context, args []string, out io.Writer) error {
	var (
		target, nemesis, bin, dir string
		endpoints                 string
		duration, faultFor        time.Duration
		workers, groups           int
		replication, containers   string
		keep                      bool
	)
	_, err := subFlags("chaos", args, func(fs *flag.FlagSet) {
		fs.StringVar(&target, "target", "local", "local: start 3 ringkvd processes on 127.0.0.1; endpoints: attach to --endpoints; compose: the docker-compose cluster")
		fs.StringVar(&containers, "containers", "ringkv1,ringkv2,ringkv3", "compose: the containers, in the order of --endpoints")
		fs.StringVar(&endpoints, "endpoints", "", "with --target endpoints: comma-separated URLs of running nodes started with --fault-hook")
		fs.DurationVar(&duration, "duration", time.Minute, "how long to run the workload")
		fs.StringVar(&nemesis, "nemesis", "kill,pause,partition", "fault kinds to cycle through")
		fs.DurationVar(&faultFor, "fault-for", 2*time.Second, "how long each fault lasts (pauses must outlast the election timeout)")
		fs.IntVar(&workers, "clients", 8, "concurrent clients")
		fs.IntVar(&groups, "groups", 3, "data groups")
		fs.StringVar(&replication, "replication", "", "sync or async plain puts (async: lost writes are reported, not failed)")
		fs.StringVar(&bin, "ringkvd", "", "path to the ringkvd binary (default: next to ringkv, then $PATH)")
		fs.StringVar(&dir, "dir", "", "directory for data, logs and the violation report (default: a new temporary one)")
		fs.BoolVar(&keep, "keep", false, "keep the directory after a passing run")
	})
	if err != nil {
		return err
	}
	if replication != "" && replication != "sync" && replication != "async" {
		return fmt.Errorf("chaos: replication %q: want sync or async", replication)
	}
	kinds := strings.Split(nemesis, ",")
	for _, k := range kinds {
		if k != chaos.FaultKill && k != chaos.FaultPause && k != chaos.FaultPartition {
			return fmt.Errorf("chaos: unknown fault %q (want kill, pause, partition)", k)
		}
		if target == "endpoints" && k != chaos.FaultPartition {
			return fmt.Errorf("chaos: fault %q needs process control; attached nodes take only partition", k)
		}
	}
	switch target {
	case "local":
	case "compose":
		if endpoints == "" {
			endpoints = "http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003"
		}
	case "endpoints":
		if endpoints == "" {
			return errors.New("chaos: --target endpoints needs --endpoints URL,URL,...")
		}
	default:
		return fmt.Errorf("chaos: target %q is not available; use local, endpoints or compose", target)
	}
	if bin == "" && target == "local" {
		if bin, err = findRingkvd(); err != nil {
			return err
		}
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
	var cluster *chaos.Cluster
	if target == "compose" {
		fmt.Fprintf(out, "chaos: containers %s at %s, %d clients, %v, faults %s; files in %s\n", containers, endpoints, workers, duration, nemesis, dir)
		cluster, err = chaos.AttachContainers(sctx, strings.Split(endpoints, ","), strings.Split(containers, ","))
	} else if target == "endpoints" {
		fmt.Fprintf(out, "chaos: attached to %s, %d clients, %v, faults %s; files in %s\n", endpoints, workers, duration, nemesis, dir)
		cluster, err = chaos.Attach(sctx, strings.Split(endpoints, ","))
	} else {
		fmt.Fprintf(out, "chaos: 3 local nodes, %d groups, %d clients, %v, faults %s; files in %s\n", groups, workers, duration, nemesis, dir)
		cluster, err = chaos.StartLocal(sctx, chaos.LocalOptions{Bin: bin, Dir: dir, Nodes: 3, Args: chaos.NodeArgs(groups)})
	}
	if err != nil {
		return fmt.Errorf("chaos: starting the cluster: %w", err)
	}
	defer cluster.Stop()
	rep, err := chaos.Run(ctx, chaos.Config{Cluster: cluster, Groups: groups, Duration: duration, Nemesis: kinds,
		FaultFor: faultFor, Recover: time.Second, Workers: workers, OutDir: dir, Progress: out, Replication: replication})
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
