package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// The default soft memory limit (--memory-limit) is a quarter of the
// memory this process may use (its cgroup's limit, else the machine's),
// at most maxDefaultMemoryLimit and at least minDefaultMemoryLimit. A node
// holding 1 GiB of 64 KiB values measured at most 1.0 GB anonymous memory
// (just after a restart, replaying its log) and 0.66 GB under 32 writers
// or four full lists; 2 GiB leaves that three times over, and the limit
// only makes the garbage collector work harder near it, so it costs
// nothing until then (README, "Memory").
const (
	maxDefaultMemoryLimit = 2 << 30
	minDefaultMemoryLimit = 256 << 20
)

// memoryLimit is the soft memory limit to set, if any: the flag's when
// given ("off" or 0: none), none when GOMEMLIMIT is set in the environment
// (Go applies it), else the default for total bytes of memory (0:
// unknown).
func (o options) memoryLimit(getenv func(string) string, total int64) (int64, bool, error) {
	switch {
	case o.memLimit != "":
		if o.memLimit == "off" {
			return math.MaxInt64, true, nil
		}
		n, err := parseBytes(o.memLimit)
		if err != nil {
			return 0, false, fmt.Errorf("--memory-limit %q: %w", o.memLimit, err)
		}
		if n == 0 {
			return math.MaxInt64, true, nil
		}
		return n, true, nil
	case getenv("GOMEMLIMIT") != "":
		return 0, false, nil
	}
	if total <= 0 {
		return maxDefaultMemoryLimit, true, nil
	}
	return min(max(total/4, minDefaultMemoryLimit), maxDefaultMemoryLimit), true, nil
}

// parseBytes reads a size as GOMEMLIMIT writes it: a number with an
// optional unit B, KiB, MiB, GiB or TiB (KB, MB, GB and TB taken as the
// same powers of two).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	num, unit := s[:i], strings.ToUpper(s[i:])
	shift := map[string]uint{"": 0, "B": 0, "KIB": 10, "KB": 10, "MIB": 20, "MB": 20, "GIB": 30, "GB": 30, "TIB": 40, "TB": 40}
	sh, ok := shift[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n < 0 || n > math.MaxInt64>>sh {
		return 0, fmt.Errorf("want a size such as 2GiB or 512MiB, or off")
	}
	return n << sh, nil
}

// availableMemory is what this process may use: its cgroup's memory limit
// when there is one, else the machine's memory; 0 when neither is known.
func availableMemory() int64 {
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
