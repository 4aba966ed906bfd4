package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Nodes controlled by commands: for clusters this harness neither started
// nor runs in known containers (systemd units, Kubernetes pods, remote
// hosts), the user gives a command that kills a node with SIGKILL and one
// that starts it again. {node} in a command is replaced by the node's id
// and {url} by its HTTP URL.

// AttachControlled attaches to running nodes like Attach, and kills and
// starts them with the given shell commands.
func AttachControlled(ctx context.Context, urls []string, killCmd, startCmd string) (*Cluster, error) {
	if killCmd == "" || startCmd == "" {
		return nil, fmt.Errorf("chaos: a kill command needs a start command too, and the other way round")
	}
	c, err := Attach(ctx, urls)
	if err != nil {
		return nil, err
	}
	for _, p := range c.Procs {
		p.killCmd, p.startCmd = killCmd, startCmd
	}
	return c, nil
}

// runControl runs one of the node's control commands.
func (p *Proc) runControl(tmpl string) error {
	cmdline := strings.NewReplacer("{node}", p.ID, "{url}", p.URL()).Replace(tmpl)
	out, err := exec.Command("sh", "-c", cmdline).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %q: %v: %s", p.ID, cmdline, err, strings.TrimSpace(string(out)))
	}
	return nil
}
