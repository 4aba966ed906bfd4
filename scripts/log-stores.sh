#!/bin/bash
# Compare the Raft log stores side by side on this machine: two local
# 3-node clusters, one per store (ringkvd --log-store wal | boltdb), 3
# groups each, the same `ringkv bench` load in alternating rounds (128-byte
# values, 10,000 keys, writes only), at 1, 16, 64 and 256 clients. Prints
# one line per round and the medians per store and client count.
#
#   scripts/log-stores.sh [rounds] [seconds-per-round]
#
# With RESTART_KEYS=N it then loads N keys into each cluster, snapshots,
# and reports each store's log size on disk and the time a node takes to
# restart and answer again.
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-8}
WORK=$(mktemp -d /tmp/log-stores.XXXX)
trap 'pkill -f "$WORK/ringkvd" 2>/dev/null || true' EXIT
go build -o "$WORK/" ./cmd/ringkvd ./cmd/ringkv
RINGKV="$WORK/ringkv"

start() { # kind base-port
  local kind=$1 port=$2 i join=()
  for i in 1 2 3; do
    local h=$((port + 10 * i)) r=$((port + 10 * i + 1))
    "$WORK/ringkvd" --id "n$i" --http-addr "127.0.0.1:$h" --raft-addr "127.0.0.1:$r" \
      --data-dir "$WORK/$kind/n$i" --groups 3 --log-store "$kind" --log-level warn "${join[@]}" \
      >"$WORK/$kind-n$i.log" 2>&1 &
    echo $! >"$WORK/$kind-n$i.pid"
    join=(--join "http://127.0.0.1:$((port + 10))")
    until "$RINGKV" --addr "127.0.0.1:$h" --timeout 1s health >/dev/null 2>&1; do sleep 0.2; done
  done
}
endpoints() { echo "127.0.0.1:$(($1 + 10)),127.0.0.1:$(($1 + 20)),127.0.0.1:$(($1 + 30))"; }

start wal 7100
start boltdb 7200
declare -A PORT=([wal]=7100 [boltdb]=7200)
RES="$WORK/results"
: >"$RES"
for round in $(seq 1 "$ROUNDS"); do
  for c in 1 16 64 256; do
    order="wal boltdb"
    [ $((round % 2)) -eq 0 ] && order="boltdb wal"
    for kind in $order; do
      out=$("$RINGKV" --endpoints "$(endpoints "${PORT[$kind]}")" bench --concurrency "$c" \
        --duration "${SECS}s" --value-size 128 --keys 10000 --json 2>/dev/null)
      line=$(echo "$out" | python3 -c 'import json,sys; r=json.load(sys.stdin)["all"]; print("%.0f %.2f %d" % (r["ops_per_s"], r["p99_ns"]/1e6, r["errors"]))')
      echo "round $round clients $c $kind: writes/s p99(ms) errors = $line"
      echo "$kind $c $line" >>"$RES"
    done
  done
done
python3 - "$RES" <<'PY'
import sys, statistics, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    k, c, ops, p99, errs = l.split()
    d[(k, int(c))].append((float(ops), float(p99), int(errs)))
print("clients | wal writes/s | boltdb writes/s | ratio | p99 wal / boltdb ms | errors")
for c in (1, 16, 64, 256):
    w, b = d[("wal", c)], d[("boltdb", c)]
    mw, mb = statistics.median(x[0] for x in w), statistics.median(x[0] for x in b)
    pw, pb = statistics.median(x[1] for x in w), statistics.median(x[1] for x in b)
    print(f"{c} | {mw:.0f} | {mb:.0f} | {mw/mb:.2f} | {pw:.1f} / {pb:.1f} | {sum(x[2] for x in w)} / {sum(x[2] for x in b)}")
PY

if [ -n "${RESTART_KEYS:-}" ]; then
  for kind in wal boltdb; do
    eps=$(endpoints "${PORT[$kind]}")
    "$RINGKV" --endpoints "$eps" bench --concurrency 128 --ops "$RESTART_KEYS" --keys "$RESTART_KEYS" \
      --dist sequential --value-size 128 --prefix load/ --json >/dev/null 2>&1
    for i in 1 2 3; do "$RINGKV" --addr "127.0.0.1:$((PORT[$kind] + 10 * i))" snapshot >/dev/null; done
    log=$(du -sk "$WORK/$kind/n1/groups" --exclude state.db --exclude snapshots | cut -f1)
    state=$(find "$WORK/$kind/n1/groups" -name state.db -exec du -ck {} + | tail -1 | cut -f1)
    pid=$(cat "$WORK/$kind-n1.pid")
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true # its ports are free once it is reaped
    h=$((PORT[$kind] + 10))
    t0=$(date +%s.%N)
    "$WORK/ringkvd" --id n1 --http-addr "127.0.0.1:$h" --raft-addr "127.0.0.1:$((h + 1))" \
      --data-dir "$WORK/$kind/n1" --groups 3 --log-store "$kind" --log-level warn >>"$WORK/$kind-n1.log" 2>&1 &
    echo $! >"$WORK/$kind-n1.pid"
    until "$RINGKV" --addr "127.0.0.1:$h" --timeout 1s get load/00000001 --consistency stale >/dev/null 2>&1; do sleep 0.05; done
    t1=$(date +%s.%N)
    echo "$kind: $RESTART_KEYS keys: group logs ${log} KiB, state ${state} KiB on n1; restart after kill -9 to a served read: $(python3 -c "print(f'{$t1-$t0:.2f}')") s"
  done
fi
