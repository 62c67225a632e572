#!/usr/bin/env bash
# What a key-by-key reshard's MIGRATE of a feed stream costs: builds a
# stream of N entries shaped like a `reserved` feed entry (event, key, txid,
# qty, version, deadline; plain XADD, no module needed) on one server, then
# MIGRATEs it (COPY REPLACE) to a second one three times, printing the
# stream's MEMORY USAGE and how long MIGRATE held the source and RESTORE the
# target (SLOWLOG, microseconds). docs/benchmarks.md, "the feed on a cluster".
#
#   scripts/migrate-cost.sh [server]   SIZES="10000 100000 1000000" by default;
#                                      SANITIZE=1: the target runs
#                                      sanitize-dump-payload yes
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:-$(scripts/deps.sh redis)}
cli=$(dirname "$server")/redis-cli
[ -x "$cli" ] || cli=$(command -v redis-cli)
work=$(mktemp -d)
ports=(7601 7602)
cleanup() {
  for p in "${ports[@]}"; do "$cli" -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
for p in "${ports[@]}"; do
  "$server" --port "$p" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$work" --logfile "$work/$p.log" --pidfile "$work/$p.pid"
done
for p in "${ports[@]}"; do
  until "$cli" -p "$p" ping >/dev/null 2>&1; do sleep 0.1; done
  "$cli" -p "$p" config set slowlog-log-slower-than 0 >/dev/null
done
[ -n "${SANITIZE:-}" ] && "$cli" -p "${ports[1]}" config set sanitize-dump-payload yes >/dev/null
stream='inv:feed:{1}:sku'
for n in ${SIZES:-10000 100000 1000000}; do
  for p in "${ports[@]}"; do "$cli" -p "$p" flushall >/dev/null; done
  python3 - "$n" "$stream" <<'PY' | "$cli" -p "${ports[0]}" --pipe >/dev/null
import sys
n, stream = int(sys.argv[1]), sys.argv[2]
out = sys.stdout
def cmd(*a):
    out.write("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a))
for i in range(n):
    cmd("XADD", stream, "*", "event", "reserved", "key", "sku", "txid", "order-%010d" % i,
        "qty", "1", "version", str(i + 2), "deadline", "1796000000000")
PY
  len=$("$cli" -p "${ports[0]}" xlen "$stream")
  mem=$("$cli" -p "${ports[0]}" memory usage "$stream" samples 0)
  for round in 1 2 3; do
    "$cli" -p "${ports[0]}" migrate 127.0.0.1 "${ports[1]}" "$stream" 0 60000 COPY REPLACE >/dev/null
    src=$("$cli" -p "${ports[0]}" slowlog get 1 | sed -n 3p)
    dst=$("$cli" -p "${ports[1]}" slowlog get 1 | sed -n 3p)
    echo "entries=$len bytes=$mem round=$round migrate_us=$src restore_us=$dst"
  done
done
