package layout

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/ringkv/ringkv/base"
)

// The values a client, an operator or a peer may give for ids and
// addresses. Each check names its rule, so that a refusal says what would
// have been accepted. They run at the edge (HTTP), on every request that
// arrives from another node, and again when a metadata command applies, so
// that no replica stores what the edge would have refused.

// MaxGroupID is the largest data group id. Ids above it are reserved: the
// Raft port's multiplexer uses some for its own streams (streamGroup,
// transport.PeerHTTPGroup), and a group there would never receive its traffic.
const MaxGroupID base.GroupID = 1<<20 - 1

// MaxNodeIDLen bounds a node id's length in bytes.
const MaxNodeIDLen = 64

// maxAddrLen bounds an advertised address (the Raft port's header carries
// its length in one byte).
const maxAddrLen = 255

// CheckGroupID refuses a data group id outside [1, MaxGroupID].
func CheckGroupID(what string, g base.GroupID) error {
	if g < 1 || g > MaxGroupID {
		return fmt.Errorf("%w: %s %d: data group ids are 1 to %d (0 is the metadata group, larger ids are reserved)",
			base.ErrBadRequest, what, g, MaxGroupID)
	}
	return nil
}

// CheckAnyGroup refuses a group id that is neither the metadata group nor
// a data group id.
func CheckAnyGroup(g base.GroupID) error {
	if g == base.MetaGroup {
		return nil
	}
	return CheckGroupID("group", g)
}

// CheckNodeID refuses a node id that is not 1 to MaxNodeIDLen characters
// of letters, digits, '.', '_' and '-', beginning with a letter or digit:
// ids name directories, URL path segments and log lines.
func CheckNodeID(id base.NodeID) error {
	const rule = "node ids are 1 to 64 letters, digits, '.', '_' or '-', beginning with a letter or digit"
	if len(id) == 0 || len(id) > MaxNodeIDLen {
		return fmt.Errorf("%w: node id of %d bytes: %s", base.ErrBadRequest, len(id), rule)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("%w: node id %q: %s", base.ErrBadRequest, string(id), rule)
		}
	}
	return nil
}

// checkHostPort refuses an address that is not host:port with a port from
// 1 to 65535 and a host that is an IP address or a DNS name.
func checkHostPort(what, addr string) error {
	const rule = "want host:port, with an IP address or host name and a port from 1 to 65535"
	if len(addr) == 0 || len(addr) > maxAddrLen {
		return fmt.Errorf("%w: %s of %d bytes: %s", base.ErrBadRequest, what, len(addr), rule)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %s %q: %s", base.ErrBadRequest, what, addr, rule)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return fmt.Errorf("%w: %s %q: port %q: %s", base.ErrBadRequest, what, addr, port, rule)
	}
	if net.ParseIP(host) == nil && !hostName(host) {
		return fmt.Errorf("%w: %s %q: host %q: %s", base.ErrBadRequest, what, addr, host, rule)
	}
	return nil
}

// hostName reports whether s is a DNS name: dot-separated labels of
// letters, digits and inner hyphens (underscores too, as compose names
// services with them).
func hostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// checkHTTPAddr refuses an HTTP address that is not host:port, optionally
// after http:// or https://.
func checkHTTPAddr(addr string) error {
	rest := strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
	return checkHostPort("http_addr", rest)
}

// CheckMember refuses a member description with an invalid id, address or
// weight.
func CheckMember(info NodeInfo) error {
	if err := CheckNodeID(info.ID); err != nil {
		return err
	}
	if err := checkHTTPAddr(info.HTTPAddr); err != nil {
		return err
	}
	if err := checkHostPort("raft_addr", info.RaftAddr); err != nil {
		return err
	}
	if !(info.Weight >= 0 && info.Weight <= MaxNodeWeight) {
		return fmt.Errorf("%w: weight %v: want a number above 0 and at most %d (0 means 1)", base.ErrBadRequest, info.Weight, MaxNodeWeight)
	}
	return nil
}

// check refuses a ring change that names a reserved group id or does not
// name exactly one change.
func (c RingChange) Check() error {
	set := 0
	if c.Add != nil {
		set++
		// 0 asks the metadata leader to choose the id.
		if c.Add.Group != 0 {
			if err := CheckGroupID("add: group", c.Add.Group); err != nil {
				return err
			}
		}
	}
	if c.Remove != 0 {
		set++
		if err := CheckGroupID("remove: group", c.Remove); err != nil {
			return err
		}
	}
	if c.Weight != nil {
		set++
		if err := CheckGroupID("weight: group", c.Weight.Group); err != nil {
			return err
		}
	}
	if set != 1 {
		return fmt.Errorf("%w: give exactly one change: add, remove or weight", base.ErrBadRequest)
	}
	return nil
}

// CheckRestoreID checks a restore lock's id: what newRestoreID makes, 32
// lowercase hex digits.
func CheckRestoreID(id string) error {
	ok := len(id) == 32
	for i := 0; ok && i < len(id); i++ {
		ok = id[i] >= '0' && id[i] <= '9' || id[i] >= 'a' && id[i] <= 'f'
	}
	if !ok {
		return fmt.Errorf("%w: restore id %q: 32 lowercase hex digits", base.ErrBadRequest, id)
	}
	return nil
}
