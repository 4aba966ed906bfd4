package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/certs"
)

func certsCmd() *cobra.Command {
	var dir, hosts string
	var keep bool
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make a CA and the node and client certificates it signs (for --tls-*, --peer-*, --cacert)",
		Long: `certs makes a CA (DIR/ca.crt, DIR/ca.key) and the node and client
certificates it signs (DIR/NAME.crt, DIR/NAME.key). A file that exists is
never overwritten: the command fails, or with --keep-existing keeps both
files and succeeds (for scripts run at every start).`,
	}
	mk := func(use, short string, n int, create func(name string) error) *cobra.Command {
		sub := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  args(n, n),
			RunE: func(cmd *cobra.Command, pos []string) error {
				if dir == "" {
					return fmt.Errorf("certs %s: --dir is required", cmd.Name())
				}
				name := certs.CAName
				if n == 1 {
					name = pos[0]
				}
				return writeCert(dir, name, keep, create(name), cmd.OutOrStdout())
			},
		}
		sub.Flags().StringVar(&dir, "dir", "", "directory of the CA and certificates (required)")
		sub.Flags().BoolVar(&keep, "keep-existing", false, "when the certificate and key exist, keep them and succeed")
		return sub
	}
	node := mk("create-node NAME", "Make a node's certificate, for the hosts it is reached at", 1, func(name string) error {
		var list []string
		if hosts != "" {
			list = strings.Split(hosts, ",")
		}
		return certs.CreateNode(dir, name, list)
	})
	node.Flags().StringVar(&hosts, "hosts", "", "IP addresses and DNS names of the node, comma-separated")
	cmd.AddCommand(mk("create-ca", "Make a CA", 0, func(string) error { return certs.CreateCA(dir) }), node,
		mk("create-client NAME", "Make a client certificate (for ringkv --cert, or a node's --tls-client-ca)", 1,
			func(name string) error { return certs.CreateClient(dir, name) }))
	return cmd
}

// writeCert says what making name's certificate did (err: its error).
func writeCert(dir, name string, keep bool, err error, out io.Writer) error {
	crt, key := certs.Files(dir, name)
	if keep && errors.Is(err, certs.ErrExists) && exists(crt) && exists(key) {
		fmt.Fprintf(out, "kept %s and %s\n", crt, key)
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s and %s\n", crt, key)
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
