package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ringkv/ringkv/certs"
	"github.com/ringkv/ringkv/client"
)

// app holds what every command shares: the global flags and the client
// they make.
type app struct {
	addr, cacert, cert, key, token string
	endpoints                      []string
	timeout                        time.Duration
	getenv                         func(string) string

	copts   []client.Option
	tls     *tls.Config
	c       *client.Client
	cluster *client.Cluster // when --endpoints names the nodes
}

// newRoot builds the command tree (spf13/cobra: help for every command and
// flag, shell completion, flags before or after the arguments). Every flag
// not given on the command line is read from RINGKV_<NAME> (--value-size:
// RINGKV_VALUE_SIZE), as ringkvd's are.
func newRoot(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	a := &app{getenv: getenv}
	root := &cobra.Command{
		Use:   "ringkv",
		Short: "Client and operator tool of ringkv, a strongly consistent, partitioned key-value store",
		Long: `ringkv talks to a ringkv cluster through any of its nodes (--addr), which
forwards each request to the right group leader, or through several
(--endpoints): it then learns the members and the ring, sends each key's
request straight to its group's leader, and goes on through the other
nodes when one is down.

Every flag not given on the command line is read from the environment as
RINGKV_<NAME>: --addr from RINGKV_ADDR, --value-size from RINGKV_VALUE_SIZE.
--cacert [--cert --key] speak HTTPS to nodes serving TLS (an address without
a scheme then means https://); --token is sent with every request to a
cluster with access control.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		DisableAutoGenTag: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags(), a.getenv)
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w\nusage: %s (see %s --help)", err, cmd.UseLine(), cmd.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", "http://127.0.0.1:7070", "URL of the node to talk to (any node; it forwards)")
	pf.StringSliceVar(&a.endpoints, "endpoints", nil, "nodes to talk to, comma-separated (host:port or URLs); replaces --addr: requests go to the key's group leader, others are balanced, a dead node is skipped")
	pf.DurationVar(&a.timeout, "timeout", 15*time.Second, "bound on each request")
	pf.StringVar(&a.cacert, "cacert", "", "PEM CA bundle that verifies the node's certificate (HTTPS)")
	pf.StringVar(&a.cert, "cert", "", "PEM client certificate, for a node that requires one")
	pf.StringVar(&a.key, "key", "", "PEM key of --cert")
	pf.StringVar(&a.token, "token", "", "token (secret id) sent with every request, for a cluster with access control")

	root.AddGroup(&cobra.Group{ID: "kv", Title: "Keys and values:"},
		&cobra.Group{ID: "ops", Title: "Operating a cluster:"},
		&cobra.Group{ID: "test", Title: "Measuring and testing:"})
	for _, c := range kvCommands(a) {
		c.GroupID = "kv"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{statusCmd(a), healthCmd(a), ringCmd(a), leaderCmd(a), nodeCmd(a), verifyCmd(a),
		snapshotCmd(a), backupCmd(a), restoreCmd(a), aclCmd(a), certsCmd()} {
		c.GroupID = "ops"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{benchCmd(a), chaosCmd(), hostileCmd(), linkProxyCmd()} {
		c.GroupID = "test"
		root.AddCommand(c)
	}
	return root
}

// applyEnv sets each flag of fs not given on the command line from
// RINGKV_<NAME>, when that is set.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q (for --%s): %v", name, v, f.Name, serr)
			}
		}
	})
	return err
}

// envName is the environment variable of flag name.
func envName(name string) string {
	return "RINGKV_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// setup reads the TLS and token flags into client options, once.
func (a *app) setup() error {
	if a.copts != nil {
		return nil
	}
	a.copts = []client.Option{}
	if a.cacert != "" || a.cert != "" || a.key != "" {
		r, err := certs.NewReloader(a.cert, a.key, a.cacert)
		if err != nil {
			return err
		}
		a.tls = r.ClientConfig()
		a.copts = append(a.copts, client.WithTLS(a.tls))
	}
	if a.token != "" {
		a.copts = append(a.copts, client.WithToken(a.token))
	}
	return nil
}

// client is the client of --addr, or of --endpoints, with the TLS and
// token flags, made once.
func (a *app) client() (*client.Client, error) {
	if a.c != nil {
		return a.c, nil
	}
	if err := a.setup(); err != nil {
		return nil, err
	}
	if len(a.endpoints) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
		defer cancel()
		cl, err := client.NewCluster(ctx, a.endpoints, a.clusterOptions(client.ClusterOptions{}))
		if err != nil {
			return nil, err
		}
		a.cluster, a.c = cl, cl.Client()
		return a.c, nil
	}
	a.c = client.New(a.addr, a.copts...)
	return a.c, nil
}

// clusterOptions fills o's TLS, token and timeout from the global flags.
func (a *app) clusterOptions(o client.ClusterOptions) client.ClusterOptions {
	o.TLS, o.Token, o.Timeout = a.tls, a.token, a.timeout
	return o
}

// close releases the client.
func (a *app) close() {
	if a.cluster != nil {
		a.cluster.Close()
	} else if a.c != nil {
		a.c.Close()
	}
}

// options are the client options of the global flags (TLS, token), for
// commands that make clients of their own.
func (a *app) options() ([]client.Option, error) {
	return a.copts, a.setup()
}

// request runs fn with the client and a context bounded by --timeout: for
// commands that make one request or a few.
func (a *app) request(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client, out io.Writer) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	defer a.close()
	ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
	defer cancel()
	return fn(ctx, c, cmd.OutOrStdout())
}

// long runs fn with the client and the command's context, unbounded but
// for Ctrl-C: for commands that follow work to its end (each of their
// requests bounded by --timeout) or bound themselves.
func (a *app) long(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client, out io.Writer) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	defer a.close()
	return fn(cmd.Context(), c, cmd.OutOrStdout())
}

// args checks the number of positional arguments, in [min, max], and
// says the usage when it is wrong.
func args(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, got []string) error {
		if len(got) < min || len(got) > max {
			want := fmt.Sprintf("%d to %d arguments", min, max)
			if min == max {
				want = fmt.Sprintf("%d argument(s)", min)
			}
			return fmt.Errorf("%s takes %s, got %d\nusage: %s (see %s --help)", cmd.CommandPath(), want, len(got), cmd.UseLine(), cmd.CommandPath())
		}
		return nil
	}
}
