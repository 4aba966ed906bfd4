package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/certs"
	"github.com/ringkv/ringkv/client"
)

const usage = `usage: ringkv [--addr URL] <command> [args]

commands:
  get KEY [--consistency linearizable|lease|stale]   print a value
  put KEY VALUE [--cas N]        write a value (VALUE "-" reads stdin)
  del KEY [--cas N]              delete a key
  ls [PREFIX] [--keys] [--limit N] [--after KEY]   list keys in order
  status                         this node's groups, leaders and indexes
  ring [lookup KEY]              the ring, or where KEY lives
  ring plan add G[:W] | remove G | weight G:W
                                 what a ring change would move, before anything moves
  ring add [G] [--weight W] | ring remove G | ring weight G W  [--no-wait]
                                 change the ring and follow the keys moving online
  ring abort                     undo the ring change in motion (before any range flips)
  leader GROUP NODE|--unpin      pin a group's leader to a node, or lift the pin
  node ls                        members, their replicas and leaderships, the replica moving
  node drain ID | node undrain ID | node remove ID  [--no-wait] [--force]
                                 move a node's replicas off it (remove: then it leaves);
                                 follows the moves to the end; a removal that would leave
                                 a group short of a majority of its replicas needs --force
  health                         liveness and readiness
  verify [GROUP] [--shallow] [--no-repair]
                                 compare every replica's data at one log index by Merkle
                                 root; locate and repair a divergent replica (--shallow:
                                 compare the kept trees only, without reading the data)
  snapshot                       snapshot every group of this node now
  backup -o FILE                 write a backup of every group to FILE
  backup verify FILE [--against URL]
                                 check a backup without restoring it; compare it with a cluster
  restore FILE [--force]         load a backup into a fresh cluster
  bench [--endpoints URLS] [--concurrency N] [--duration D | --ops N] [--value-size B]
        [--keys N] [--reads F] [--dist uniform|zipfian|sequential] [--replication sync|async]
        [--consistency C] [--json]
                                 closed-loop load: throughput, errors, latency percentiles
  bench compare [bench flags] [--rounds N] [--plot FILE.svg] [--async-endpoints URLS]
                                 the same load with sync and async writes, alternating rounds
  bench loss [--kills N] [--rate W] [--target local|compose|endpoints --kill-cmd C --start-cmd C]
                                 kill -9 a group leader under sync and async writes; count
                                 acknowledged writes lost
  chaos [--duration D] [--nemesis kill,pause,partition,reshard,scale] [--replication async]
        [--target local|compose|endpoints]
                                 inject faults (or ring changes), check the history
  hostile [--target local|compose|endpoints] [--groups N] [--json]
                                 send reserved values, internal calls and forged Raft RPCs;
                                 check each is refused and the cluster stays healthy
  acl bootstrap | acl policy create|update|list|get|delete | acl token create|list|get|self|delete
                                 access control (ringkvd --acl): the first management token,
                                 policies of key-prefix rules, and the tokens that carry them
  certs create-ca --dir DIR | certs create-node NAME --hosts H,H --dir DIR |
  certs create-client NAME --dir DIR
                                 make a CA (DIR/ca.crt, DIR/ca.key) and the node and
                                 client certificates it signs (DIR/NAME.crt, DIR/NAME.key)

--addr defaults to $RINGKV_ADDR, then http://127.0.0.1:7070.
--cacert FILE [--cert FILE --key FILE] (or $RINGKV_CACERT, $RINGKV_CERT, $RINGKV_KEY)
speak HTTPS to a node serving TLS; an address without a scheme then means https://.
--token SECRET (or $RINGKV_TOKEN) is sent with every request, for a cluster with access control.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("ringkv", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def := getenv("RINGKV_ADDR")
	if def == "" {
		def = "http://127.0.0.1:7070"
	}
	addr := fs.String("addr", def, "node URL")
	timeout := fs.Duration("timeout", 15*time.Second, "request timeout")
	cacert := fs.String("cacert", getenv("RINGKV_CACERT"), "PEM CA bundle to verify the node's certificate (HTTPS)")
	cert := fs.String("cert", getenv("RINGKV_CERT"), "PEM client certificate, for a node that requires one")
	key := fs.String("key", getenv("RINGKV_KEY"), "PEM key of --cert")
	token := fs.String("token", getenv("RINGKV_TOKEN"), "token (secret id) for a cluster with access control")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v\n%s", err, usage)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return errors.New(usage)
	}
	var copts []client.Option
	if *cacert != "" || *cert != "" || *key != "" {
		r, err := certs.NewReloader(*cert, *key, *cacert)
		if err != nil {
			return err
		}
		copts = append(copts, client.WithTLS(r.ClientConfig()))
	}
	if *token != "" {
		copts = append(copts, client.WithToken(*token))
	}
	c := client.New(*addr, copts...)
	defer c.Close()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cmd, rest := rest[0], rest[1:]
	switch cmd {
	case "get":
		return cmdGet(ctx, c, rest, stdout)
	case "put":
		return cmdPut(ctx, c, rest, stdin, stdout)
	case "del", "delete":
		return cmdDel(ctx, c, rest, stdout)
	case "ls", "list":
		return cmdList(ctx, c, rest, stdout)
	case "status":
		return cmdStatus(ctx, c, stdout)
	case "ring":
		if len(rest) > 0 && (rest[0] == "add" || rest[0] == "remove" || rest[0] == "weight" || rest[0] == "abort") {
			return cmdRingChange(parent, *timeout, c, rest, stdout) // follows the move to its end
		}
		return cmdRing(ctx, c, rest, stdout)
	case "health":
		return cmdHealth(ctx, c, stdout)
	case "leader":
		return cmdLeader(ctx, c, rest, stdout)
	case "node":
		return cmdNode(parent, *timeout, c, rest, stdout) // follows the moves to the end
	case "verify":
		return cmdVerify(parent, c, rest, stdout) // --deep reads all the data
	case "snapshot":
		return cmdSnapshot(ctx, c, stdout)
	case "backup":
		return cmdBackup(parent, c, rest, stdout) // transfers take their time
	case "restore":
		return cmdRestore(parent, c, rest, stdout)
	case "chaos":
		return cmdChaos(parent, rest, stdout) // bounded by its own --duration
	case "bench":
		return cmdBench(parent, *addr, copts, rest, stdout) // bounded by its own --duration or --ops
	case "hostile":
		return cmdHostile(parent, rest, stdout) // each case bounded by --recover
	case "certs":
		return cmdCerts(rest, stdout)
	case "acl":
		return cmdACL(ctx, c, rest, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

// subFlags parses a subcommand's flags, which may come before or after its
// positional arguments.
func subFlags(name string, args []string, define func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	define(fs)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func casFlag(fs *flag.FlagSet, dst **uint64) {
	fs.Func("cas", "only if the key's modify index is N (0: only if absent)", func(s string) error {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("--cas wants a non-negative integer")
		}
		*dst = &n
		return nil
	})
}

func cmdGet(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	var consistency string
	pos, err := subFlags("get", args, func(fs *flag.FlagSet) { fs.StringVar(&consistency, "consistency", "", "") })
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: ringkv get KEY")
	}
	v, err := c.Get(ctx, pos[0], consistency)
	if err != nil {
		return err
	}
	_, err = out.Write(v.Data)
	if len(v.Data) > 0 && v.Data[len(v.Data)-1] != '\n' {
		fmt.Fprintln(out)
	}
	return err
}

func cmdPut(ctx context.Context, c *client.Client, args []string, stdin io.Reader, out io.Writer) error {
	var cas *uint64
	pos, err := subFlags("put", args, func(fs *flag.FlagSet) { casFlag(fs, &cas) })
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errors.New("usage: ringkv put KEY VALUE   (VALUE - reads stdin)")
	}
	value := []byte(pos[1])
	if pos[1] == "-" {
		if value, err = io.ReadAll(stdin); err != nil {
			return err
		}
	}
	res, err := c.Put(ctx, pos[0], value, client.PutOptions{CAS: cas})
	if err != nil {
		return err
	}
	return printJSON(out, res)
}

func cmdDel(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	var cas *uint64
	pos, err := subFlags("del", args, func(fs *flag.FlagSet) { casFlag(fs, &cas) })
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: ringkv del KEY")
	}
	res, err := c.Delete(ctx, pos[0], client.PutOptions{CAS: cas})
	if err != nil {
		return err
	}
	return printJSON(out, res)
}

func cmdList(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	var keysOnly bool
	var o client.ListOptions
	pos, err := subFlags("ls", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&keysOnly, "keys", false, "")
		fs.IntVar(&o.Limit, "limit", 0, "")
		fs.StringVar(&o.After, "after", "", "")
		fs.StringVar(&o.Consistency, "consistency", "", "")
	})
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return errors.New("usage: ringkv ls [PREFIX]")
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	if keysOnly {
		keys, err := c.Keys(ctx, prefix, o)
		for _, k := range keys {
			fmt.Fprintln(out, k)
		}
		return err
	}
	es, err := c.List(ctx, prefix, o)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tINDEX\tGROUP\tVALUE")
	for _, e := range es {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", e.Key, e.ModifyIndex, e.Group, printable(e.Value))
	}
	return tw.Flush()
}

func printable(b []byte) string {
	const max = 60
	s := strconv.Quote(string(b))
	s = s[1 : len(s)-1]
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

func cmdStatus(ctx context.Context, c *client.Client, out io.Writer) error {
	s, err := c.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "node %s  replication %s  ring epoch %d\n", s.Node, s.Replication, s.RingEpoch)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTATE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tKEYS\tVOTERS")
	for _, g := range append([]client.GroupStatus{s.Meta}, s.Groups...) {
		name := strconv.Itoa(int(g.ID))
		if g.ID == 0 {
			name = "meta"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", name, g.State, g.Leader, g.Term, g.CommitIndex, g.AppliedIndex, g.Keys, strings.Join(g.Voters, ","))
	}
	return tw.Flush()
}

func cmdRing(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "plan" {
		return cmdRingPlan(ctx, c, args[1:], out)
	}
	if len(args) == 2 && args[0] == "lookup" {
		l, err := c.Lookup(ctx, args[1])
		if err != nil {
			return err
		}
		return printJSON(out, l)
	}
	if len(args) != 0 {
		return errors.New("usage: ringkv ring [lookup KEY | plan add GROUP[:WEIGHT] | plan remove GROUP | plan weight GROUP:WEIGHT | add [GROUP] [--weight W] | remove GROUP | weight GROUP W]")
	}
	r, err := c.Ring(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "ring epoch %d, %d vnodes per unit of weight\n", r.Epoch, r.VNodesPerWeight)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tWEIGHT\tVNODES\tSHARE\tLEADER\tREPLICAS")
	for _, g := range r.Groups {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.2f%%\t%s\t%s\n", g.ID, g.Weight, g.VNodes, 100*g.Share, g.Leader, joinIDs(g.Replicas))
	}
	return tw.Flush()
}

// joinIDs lists node ids with commas.
func joinIDs(ids []base.NodeID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = string(id)
	}
	return strings.Join(s, ",")
}

func cmdHealth(ctx context.Context, c *client.Client, out io.Writer) error {
	alive, ready, reason := c.Healthy(ctx)
	fmt.Fprintf(out, "alive %v, ready %v", alive, ready)
	if reason != "" {
		fmt.Fprintf(out, " (%s)", reason)
	}
	fmt.Fprintln(out)
	if !alive || !ready {
		return errors.New("node is not ready")
	}
	return nil
}

func printJSON(out io.Writer, v interface{}) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdVerify(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	var noRepair, shallow bool
	pos, err := subFlags("verify", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&noRepair, "no-repair", false, "")
		fs.BoolVar(&shallow, "shallow", false, "")
	})
	deep := !shallow
	if err != nil {
		return err
	}
	timeout := time.Minute
	if deep {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	o := client.VerifyOptions{Shallow: shallow, NoRepair: noRepair}
	switch len(pos) {
	case 0:
	case 1:
		g, err := strconv.ParseUint(pos[0], 10, 32)
		if err != nil || g == 0 {
			return errors.New("usage: ringkv verify [GROUP] [--shallow] [--no-repair]")
		}
		o.Group = uint32(g)
	default:
		return errors.New("usage: ringkv verify [GROUP] [--shallow] [--no-repair]")
	}
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

func cmdSnapshot(ctx context.Context, c *client.Client, out io.Writer) error {
	var res struct {
		Groups []struct {
			Group uint32 `json:"group"`
			Index uint64 `json:"index"`
			Taken bool   `json:"taken"`
			Note  string `json:"note"`
		} `json:"groups"`
	}
	if err := c.PostJSON(ctx, "/v1/snapshot", &res); err != nil {
		return err
	}
	for _, g := range res.Groups {
		if g.Taken {
			fmt.Fprintf(out, "group %d: snapshot at index %d\n", g.Group, g.Index)
		} else {
			fmt.Fprintf(out, "group %d: %s\n", g.Group, g.Note)
		}
	}
	return nil
}
