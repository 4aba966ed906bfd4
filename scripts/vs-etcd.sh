#!/bin/bash
# ringkv against a 3-member etcd on this machine, in the same run,
# alternating which goes first: writes of 128-byte values to 10,000 keys
# at each client count, through
#   etcd      its Go gRPC client (../shared/tools/loadgen -target etcd),
#   http      plain HTTP round-robin over ringkv's nodes (loadgen -target http),
#   cluster   ringkv's cluster-aware client (ringkv bench, --routing direct),
# then linearizable reads at 64 clients (etcd's default Get, ringkv's
# default consistency). CPU per operation is the servers' user + system
# time over the round (/proc/PID/stat), divided by the operations; the
# load generator's own (it shares the machine's cores) is reported beside
# it.
#
#   scripts/vs-etcd.sh [rounds] [seconds] [clients...]
#
# Needs etcd (apt-get install -y etcd-server) and the shared tools beside
# the repository (TOOLS, default ../shared/tools).
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-8}
shift $(($# < 2 ? $# : 2))
CLIENTS=${*:-1 16 64 256}
TOOLS=${TOOLS:-$(cd "$(dirname "$0")/../../shared/tools" && pwd)}
WORK=$(mktemp -d /tmp/vs-etcd.XXXX)
cleanup() { pkill -f "$WORK/ringkvd" 2>/dev/null || true; "$TOOLS/etcd-cluster.sh" stop "$WORK/etcd" >/dev/null 2>&1 || true; }
trap cleanup EXIT
go build -o "$WORK/" ./cmd/ringkvd ./cmd/ringkv
(cd "$TOOLS/loadgen" && go build -o "$WORK/loadgen" .)
R="$WORK/ringkv"

PIDS_RINGKV=()
for i in 1 2 3; do
  h=$((7300 + 10 * i))
  join=()
  [ "$i" -gt 1 ] && join=(--join http://127.0.0.1:7310)
  "$WORK/ringkvd" --id "n$i" --http-addr "127.0.0.1:$h" --raft-addr "127.0.0.1:$((h + 1))" \
    --data-dir "$WORK/data/n$i" --groups 3 --log-level warn "${join[@]}" >"$WORK/n$i.log" 2>&1 &
  PIDS_RINGKV+=($!)
  until "$R" --addr "127.0.0.1:$h" --timeout 1s health >/dev/null 2>&1; do
    kill -0 "${PIDS_RINGKV[-1]}" 2>/dev/null || { cat "$WORK/n$i.log"; exit 1; }
    sleep 0.2
  done
done
EPS=127.0.0.1:7310,127.0.0.1:7320,127.0.0.1:7330
HTTP_EPS=http://127.0.0.1:7310,http://127.0.0.1:7320,http://127.0.0.1:7330
"$TOOLS/etcd-cluster.sh" start "$WORK/etcd" >/dev/null
PIDS_ETCD=($(cat "$WORK"/etcd/n*.pid))
ETCD_EPS=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793

cpu() { # total user+system clock ticks of the pids
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
RES="$WORK/results"
: >"$RES"
run() { # target clients reads -> appends "label clients ops/s p50ms p99ms errors server_cpu_ms_per_op generator_cpu_ms_per_op"
  local name=$1 c=$2 reads=$3 label=$1 pids out c0 c1
  [ "$reads" != 0 ] && label=$name-read
  case $name in etcd) pids=("${PIDS_ETCD[@]}") ;; *) pids=("${PIDS_RINGKV[@]}") ;; esac
  c0=$(cpu "${pids[@]}")
  g0=$(awk '{print $16 + $17}' /proc/$$/stat)
  case $name in
  etcd) out=$("$WORK/loadgen" -target etcd -endpoints "$ETCD_EPS" -conc "$c" -duration "${SECS}s" -keys 10000 -vsize 128 -reads "$reads") ;;
  http) out=$("$WORK/loadgen" -target http -endpoints "$HTTP_EPS" -conc "$c" -duration "${SECS}s" -keys 10000 -vsize 128 -reads "$reads") ;;
  cluster) out=$("$R" --endpoints "$EPS" bench --concurrency "$c" --duration "${SECS}s" --keys 10000 --value-size 128 --reads "$reads" --json 2>/dev/null) ;;
  esac
  c1=$(cpu "${pids[@]}")
  g1=$(awk '{print $16 + $17}' /proc/$$/stat)
  echo "$out" | python3 -c '
import json, sys
label, c, ticks, hz, gticks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = json.load(sys.stdin)
if "all" in r:   # ringkv bench
    a = r["all"]; ops, p50, p99, errs, n = a["ops_per_s"], a["p50_ns"]/1e6, a["p99_ns"]/1e6, a["errors"], a["ops"]
else:            # loadgen
    ops, p50, p99, errs = r["ops_per_s"], r["p50_ms"], r["p99_ms"], r["errors"]; n = r.get("ops", ops)
print(label, c, "%.0f" % ops, "%.2f" % p50, "%.2f" % p99, errs, "%.3f" % (1000.0 * ticks / hz / max(n, 1)), "%.3f" % (1000.0 * gticks / hz / max(n, 1)))
' "$label" "$c" $((c1 - c0)) "$HZ" $((g1 - g0)) | tee -a "$RES"
}
# The keys exist before reads are measured.
"$R" --endpoints "$EPS" bench --concurrency 64 --ops 10000 --keys 10000 --dist sequential --prefix bench/ >/dev/null 2>&1
"$WORK/loadgen" -target etcd -endpoints "$ETCD_EPS" -conc 64 -duration 3s -keys 10000 -vsize 128 >/dev/null
for round in $(seq 1 "$ROUNDS"); do
  order="etcd http cluster"
  [ $((round % 2)) -eq 0 ] && order="cluster http etcd"
  for c in $CLIENTS; do
    for name in $order; do run "$name" "$c" 0; done
  done
  for name in $order; do run "$name" 64 1; done
done
python3 - "$RES" <<'PY'
import sys, statistics, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    name, c, ops, p50, p99, errs, cpu, gen = l.split()
    d[(name, int(c))].append((float(ops), float(p50), float(p99), int(errs), float(cpu), float(gen)))
med = lambda k, i: statistics.median(x[i] for x in d[k]) if d[k] else float("nan")
print("clients | etcd writes/s | http writes/s (x etcd) | cluster writes/s (x etcd) | p50 etcd/http/cluster ms | p99 etcd/http/cluster ms | server CPU ms/op etcd/http/cluster | generator CPU ms/op etcd/http/cluster | errors etcd/http/cluster")
for suffix, c in [("", c) for c in sorted({k[1] for k in d if "-" not in k[0]})] + [("-read", 64)]:
    e, h, cl = ("etcd" + suffix, c), ("http" + suffix, c), ("cluster" + suffix, c)
    if not d[e]:
        continue
    print(f"{c}{' reads' if suffix else ''} | {med(e,0):.0f} | {med(h,0):.0f} ({med(h,0)/med(e,0):.2f}) | {med(cl,0):.0f} ({med(cl,0)/med(e,0):.2f}) | "
          f"{med(e,1):.2f} / {med(h,1):.2f} / {med(cl,1):.2f} | {med(e,2):.1f} / {med(h,2):.1f} / {med(cl,2):.1f} | "
          f"{med(e,4):.3f} / {med(h,4):.3f} / {med(cl,4):.3f} | {med(e,5):.3f} / {med(h,5):.3f} / {med(cl,5):.3f} | {' / '.join(str(sum(x[3] for x in d[k])) for k in (e,h,cl))}")
PY
