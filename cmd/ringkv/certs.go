package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ringkv/ringkv/certs"
)

const certsUsage = `usage:
  ringkv certs create-ca --dir DIR
  ringkv certs create-node NAME --hosts 127.0.0.1,localhost,ringkv1 --dir DIR
  ringkv certs create-client NAME --dir DIR
A file that exists is never overwritten: the command fails, or with
--keep-existing keeps both files and succeeds (for scripts run at every start).`

// cmdCerts makes a CA and the node and client certificates it signs.
func cmdCerts(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(certsUsage)
	}
	var dir, hosts string
	var keep bool
	pos, err := subFlags("certs "+args[0], args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&dir, "dir", "", "directory of the CA and certificates")
		fs.StringVar(&hosts, "hosts", "", "IP addresses and DNS names of a node, comma-separated")
		fs.BoolVar(&keep, "keep-existing", false, "when the certificate and key exist, keep them and succeed")
	})
	if err != nil {
		return err
	}
	if dir == "" {
		return fmt.Errorf("certs %s: --dir is required\n%s", args[0], certsUsage)
	}
	name := ""
	switch {
	case args[0] == "create-ca" && len(pos) == 0:
		name = certs.CAName
		err = certs.CreateCA(dir)
	case args[0] == "create-node" && len(pos) == 1:
		name = pos[0]
		var list []string
		if hosts != "" {
			list = strings.Split(hosts, ",")
		}
		err = certs.CreateNode(dir, name, list)
	case args[0] == "create-client" && len(pos) == 1:
		name = pos[0]
		err = certs.CreateClient(dir, name)
	default:
		return errors.New(certsUsage)
	}
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
