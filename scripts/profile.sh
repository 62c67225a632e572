#!/usr/bin/env bash
# Reproduces the profiles behind docs/benchmarks.md (issue #4 section).
#
#   scripts/profile.sh callgrind [server]  instructions per INV.RESERVE and per
#       HINCRBY: 50,000 fresh-txid reserves on one new key, each followed by a
#       HINCRBY, under valgrind --tool=callgrind (stable on a noisy machine).
#   scripts/profile.sh perf [server]       where INV.RESERVE's time goes: perf
#       record --call-graph dwarf on the server during `make bench RATIOS=1`,
#       samples under the module command dispatcher grouped by part.
#
# server: a redis-server or valkey-server binary (default: redis-server from
# PATH). Needs valgrind or perf, and the release module (make release), or
# the module INVENTORY_MODULE names.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/profile.sh callgrind|perf [server]}
server=${2:-$(command -v redis-server)}
module=${INVENTORY_MODULE:-$PWD/target/release/libinventory.so}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case $mode in
callgrind)
  port=7560
  python3 - "$work/load.resp" <<'PY'
import sys
def cmd(*a):
    return f"*{len(a)}\r\n" + "".join(f"${len(str(x))}\r\n{x}\r\n" for x in a)
with open(sys.argv[1], "w") as f:
    f.write(cmd("INV.SET", "hotx", 1 << 50) + cmd("HSET", "floor", "reserved", 0))
    for i in range(50_000):
        f.write(cmd("INV.RESERVE", "hotx", f"0000001-{i:08d}", 1, "TTL", 3600000))
        f.write(cmd("HINCRBY", "floor", "reserved", 1))
PY
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" \
    "$server" --port $port --save '' --appendonly no --loadmodule "$module" >"$work/vg.log" 2>&1 &
  for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
  callgrind_control -i on >/dev/null 2>&1
  callgrind_control -z >/dev/null 2>&1
  redis-cli -p $port --pipe <"$work/load.resp" >/dev/null
  callgrind_control -d >/dev/null 2>&1
  callgrind_control -i off >/dev/null 2>&1
  redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true
  wait
  callgrind_annotate --inclusive=yes "$work"/cg.out.* 2>/dev/null |
    grep -E "(RedisModuleCommandDispatcher|hincrbyCommand) \[" |
    awk '{v=$1; gsub(",","",v); printf "%6.0f instructions per call  %s\n", v/50000, $3}'
  ;;
perf)
  cargo build --release -q -p redis-inventory-bench
  target/release/redis-inventory-bench --ratios-only --server "$server" >/dev/null 2>&1 &
  bench=$!
  sleep 0.7
  pid=$(pgrep -n -f "$(basename "$server")")
  perf record -p "$pid" -e cpu-clock -F 10000 --call-graph dwarf,16384 -o "$work/perf.data" -- sleep 1.5 >/dev/null 2>&1
  wait $bench || true
  perf script -i "$work/perf.data" -F ip,sym 2>/dev/null >"$work/stacks.txt"
  python3 - "$work/stacks.txt" <<'PY'
import collections, sys
groups = [
    ("replies (array, bulk status word, two integers)", ["RM_ReplyWith", "moduleReplyWithCollection", "Status::as_str"]),
    ("key open and close", ["Entry::open_name", "Key::open", "Key::value", "drop_in_place<inventory::module::key::Key>", "Key as core::ops::drop::Drop"]),
    ("the module's clock (now_ms)", ["now_ms"]),
    ("context creation and release", ["moduleCreateContext", "moduleFreeContext"]),
    ("keyspace event and WATCH signal", ["RM_NotifyKeyspaceEvent", "RM_SignalModifiedKey"]),
    ("index rebuilds of small keys, in the command", ["Index::rebuild", "index_room"]),
    ("applying the effect (append, index insert, heap push)", ["Sku::apply", "Entry::commit"]),
    ("planning (txid lookup, availability)", ["plan_reserve"]),
    ("parsing and argument access", ["parse::", "Request::new", "Request::open_early"]),
]
counts, n = collections.Counter(), 0
for sample in open(sys.argv[1]).read().split("\n\n"):
    syms = [(l.strip().split(" ", 1) + [""])[1].split("(")[0] for l in sample.strip().split("\n") if l.strip()]
    top = [k for k, s in enumerate(syms) if "RedisModuleCommandDispatcher" in s]
    if not top:
        continue
    n += 1
    chain = syms[: top[0] + 1]
    name = next((g for g, pats in groups if any(p in s for s in chain for p in pats)), "the rest")
    counts[name] += 1
print(f"samples under the module command dispatcher: {n}")
for name in [g for g, _ in groups] + ["the rest"]:
    print(f"{100 * counts[name] / max(n, 1):5.1f}%  {name}")
PY
  ;;
*)
  echo "usage: scripts/profile.sh callgrind|perf [server]" >&2
  exit 2
  ;;
esac
