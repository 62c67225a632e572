#!/usr/bin/env bash
# Reproduces the profiles behind docs/benchmarks.md (issue #4 section).
#
#   scripts/profile.sh callgrind [server]  instructions per INV.RESERVE and per
#       HINCRBY: 50,000 fresh-txid reserves on one new key, each followed by a
#       HINCRBY, under valgrind --tool=callgrind (stable on a noisy machine).
#       AOF=1: the server runs with appendonly yes (replication's cost inside
#       the command). STOCK=0: every reserve meets a sold-out key.
#       CACHE=1: also simulate the caches and branch predictor: L1
#       instruction-cache misses and mispredicted branches per call.
#       processCommand's line is the whole of one command's processing
#       (command filters, lookup, ACL, call, propagation), averaged over both.
#   scripts/profile.sh footprint [server]  the module code one INV.RESERVE
#       runs: distinct instructions and 64-byte cache lines executed by
#       (nearly) every call, by function (same load and options as callgrind).
#   scripts/profile.sh flood [server]      the edges phase's flood alone:
#       300,000 fresh reserves (TTL 10 min) on one key by redis-cli --pipe, on a
#       new server RUNS times (default 5); per run, the reserves SLOWLOG kept
#       over SLOW microseconds (default 500) and the server's major faults.
#       PIN=1: the server on CPU 0, redis-cli on CPU 1 (taskset).
#   scripts/profile.sh perf [server]       where INV.RESERVE's time goes: perf
#       record --call-graph dwarf on the server during `make bench RATIOS=1`,
#       samples under the module command dispatcher grouped by part.
#   scripts/profile.sh replica [server]    where a replica's time goes applying
#       fed reserves: a master and its replica (AOF everysec, no automatic
#       rewrite), one key with its change feed on, N (default 200,000)
#       fresh-txid reserves sent to the master by redis-cli --pipe, perf
#       record --call-graph dwarf of the replica meanwhile; prints the share
#       of its samples under each part (a sample counts in every part its
#       stack passes through). FEED=0: the same reserves without the feed.
#       BUYER=1: each reserve names a new buyer, on a key with a limit of one
#       unit per buyer (the bench's "INV.RESERVE BUYER stocked"). TOP=n: also
#       the n functions with the most samples of their own. STACKS=file:
#       keep the samples' stacks (perf script -F ip,sym) there. MASTER=1:
#       record the master instead (its parts: INV.RESERVE where the
#       replica's say INV.APPLY).
#   scripts/profile.sh replica-callgrind [server]  instructions a replica
#       runs per fed (FEED=1, default) or plain (FEED=0) reserve: the same
#       master, replica and key as `replica`, the replica under valgrind
#       --tool=callgrind, its counters zeroed after 200 warm-up reserves, N
#       (default 20,000) more sent; prints the replica's instructions per
#       request (whole process) and the TOP (default 25) functions by
#       inclusive instructions per request. Deterministic enough to compare
#       builds (INVENTORY_MODULE=...) where timings are noise.
#
# server: a redis-server or valkey-server binary (default: redis-server from
# PATH). Needs valgrind or perf (flood: taskset with PIN=1), and the release
# module (make release), or the module INVENTORY_MODULE names.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/profile.sh callgrind|footprint|flood|perf|replica|replica-callgrind [server]}
server=${2:-$(command -v redis-server)}
module=${INVENTORY_MODULE:-$PWD/target/release/libinventory.so}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# For the replica modes: a master and its replica on loopback as deployed
# (AOF everysec, no automatic rewrite), the replica linked and in sync, both
# shut down on exit. `deployed_pair <master port> <replica port>
# [launcher...]`: the replica runs daemonized, or under the launcher (say
# valgrind) as a background job whose pid is then in $replica_job.
deployed_pair() {
  cli=$(command -v redis-cli)
  ports=("$1" "$2")
  shift 2
  stop() { for p in "${ports[@]}"; do "$cli" -p "$p" shutdown nosave >/dev/null 2>&1 || true; done; }
  trap 'stop; rm -rf "$work"' EXIT
  local opts=(--bind 127.0.0.1 --loadmodule "$module" --save ''
    --appendonly yes --appendfsync everysec --auto-aof-rewrite-percentage 0)
  mkdir -p "$work/0" "$work/1"
  "$server" --port "${ports[0]}" "${opts[@]}" \
    --dir "$work/0" --logfile "$work/0.log" --daemonize yes --pidfile "$work/0.pid"
  if [ $# -eq 0 ]; then
    "$server" --port "${ports[1]}" "${opts[@]}" \
      --dir "$work/1" --logfile "$work/1.log" --daemonize yes --pidfile "$work/1.pid"
  else
    "$@" "$server" --port "${ports[1]}" "${opts[@]}" \
      --dir "$work/1" --logfile "$work/1.log" >"$work/launcher.log" 2>&1 &
    replica_job=$!
  fi
  for p in "${ports[@]}"; do until "$cli" -p "$p" ping >/dev/null 2>&1; do sleep 0.1; done; done
  "$cli" -p "${ports[1]}" replicaof 127.0.0.1 "${ports[0]}" >/dev/null
  until "$cli" -p "${ports[1]}" info replication | grep -q master_link_status:up; do sleep 0.2; done
}

case $mode in
callgrind | footprint)
  port=7560
  python3 - "$work/load.resp" "${STOCK:-$((1 << 50))}" <<'PY'
import sys
def cmd(*a):
    return f"*{len(a)}\r\n" + "".join(f"${len(str(x))}\r\n{x}\r\n" for x in a)
with open(sys.argv[1], "w") as f:
    f.write(cmd("INV.SET", "hotx", int(sys.argv[2])) + cmd("HSET", "floor", "reserved", 0))
    for i in range(50_000):
        f.write(cmd("INV.RESERVE", "hotx", f"0000001-{i:08d}", 1, "TTL", 3600000))
        f.write(cmd("HINCRBY", "floor", "reserved", 1))
PY
  sim=()
  [ -n "${CACHE:-}" ] && sim=(--cache-sim=yes --branch-sim=yes)
  [ "$mode" = footprint ] && sim=(--dump-instr=yes)
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" "${sim[@]}" \
    "$server" --port $port --save '' --dir "$work" --appendonly "$([ -n "${AOF:-}" ] && echo yes || echo no)" \
    --loadmodule "$module" >"$work/vg.log" 2>&1 &
  for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
  callgrind_control -i on >/dev/null 2>&1
  callgrind_control -z >/dev/null 2>&1
  redis-cli -p $port --pipe <"$work/load.resp" >/dev/null
  callgrind_control -d >/dev/null 2>&1
  callgrind_control -i off >/dev/null 2>&1
  redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true
  wait
  if [ "$mode" = footprint ]; then
    python3 - "$work"/cg.out.* <<'PY'
# Instructions of the module's object executed at least 45,000 times in
# 50,000 reserves, with the 64-byte lines they sit on, by function.
import collections, re, sys
names, obj, fn, addr, after_calls = {}, None, None, 0, False
hits, fn_of = collections.Counter(), {}
for line in open(sys.argv[1]):
    m = re.match(r"(c?)(ob|fn|fl|fi|fe)=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
    if m:
        callee, kind, idx, name = m.groups()
        if name:
            names[(kind, idx)] = name
        if not callee and kind == "ob":
            obj = names.get((kind, idx))
        if not callee and kind == "fn":
            fn = names.get((kind, idx))
        continue
    if line.startswith("calls="):
        after_calls = True
        continue
    t = line.split()
    if not t or not (t[0][0].isdigit() or t[0][0] in "+-*"):
        continue
    a = t[0]
    addr = int(a, 16) if a.startswith("0x") else addr + int(a) if a[0] in "+-" else addr if a == "*" else int(a)
    if after_calls:
        after_calls = False  # the called function's inclusive cost, not this line's
        continue
    if obj and "libinventory" in obj and len(t) >= 3:
        hits[addr] += int(t[2])
        fn_of[addr] = fn
hot = [a for a, n in hits.items() if n >= 45_000]
lines = {a // 64 for a in hot}
print(f"module code per reserve: {sum(hits.values()) / 50_000:.0f} instructions executed, "
      f"{len(hot)} distinct hot instructions on {len(lines)} cache lines ({len(lines) * 64 / 1024:.1f} KB)")
by_fn = collections.defaultdict(list)
for a in hot:
    by_fn[fn_of[a]].append(a)
for f, addrs in sorted(by_fn.items(), key=lambda kv: -len(kv[1]))[:15]:
    print(f"{len(addrs):6d} instructions {len({a // 64 for a in addrs}):4d} lines  {f[:100]}")
PY
  else
    show=Ir
    [ -n "${CACHE:-}" ] && show=Ir,I1mr,D1mr,Bcm,Bim
    callgrind_annotate --inclusive=yes --show=$show --show-percs=no "$work"/cg.out.* 2>/dev/null |
      grep -E "(RedisModuleCommandDispatcher|ValkeyModuleCommandDispatcher|hincrbyCommand|processCommand) \[" |
      awk -v show=$show '{n = split(show, ev, ","); line = ""
        # processCommand runs for both commands: its count is per command.
        calls = $(n + 1) ~ /processCommand/ ? 100000 : 50000
        for (i = 1; i <= n; i++) { v = $i; gsub(",", "", v); line = line sprintf("%8.1f %s", v / calls, ev[i]) }
        print line " per call  " $(n + 1)}'
  fi
  ;;
flood)
  # 300,000 fresh reserves (TTL 10 min) on one key by redis-cli --pipe, the
  # edges phase's flood, RUNS times on a new server each; PIN=1 puts the
  # server on CPU 0 and redis-cli on CPU 1. Per run: the commands SLOWLOG
  # kept over SLOW microseconds (default 500) and the server's major faults.
  port=7561
  python3 - "$work/flood.resp" <<'PY'
import sys
def cmd(*a):
    return f"*{len(a)}\r\n" + "".join(f"${len(str(x))}\r\n{x}\r\n" for x in a)
with open(sys.argv[1], "w") as f:
    for i in range(300_000):
        f.write(cmd("INV.RESERVE", "flood", f"{i:016d}", 1, "TTL", 600000))
PY
  on() { if [ -n "${PIN:-}" ]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
  for run in $(seq "${RUNS:-5}"); do
    on 0 "$server" --port $port --save '' --dir "$work" --appendonly no \
      --loadmodule "$module" >"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p $port config set slowlog-log-slower-than "${SLOW:-500}" >/dev/null
    redis-cli -p $port config set slowlog-max-len 1000 >/dev/null
    redis-cli -p $port inv.set flood 1125899906842624 >/dev/null
    redis-cli -p $port slowlog reset >/dev/null
    faults=$(awk '{print $12}' /proc/$pid/stat)
    on 1 redis-cli -p $port --pipe <"$work/flood.resp" >/dev/null
    faults=$(($(awk '{print $12}' /proc/$pid/stat) - faults))
    slow=$(python3 - $port "${SLOW:-500}" <<'PY'
# SLOWLOG GET through a plain socket: "<ms> ms (txid <n>)" per entry.
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"*3\r\n$7\r\nSLOWLOG\r\n$3\r\nGET\r\n$4\r\n1000\r\n")
f = s.makefile("rb")
def read():
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"*":
        return [read() for _ in range(int(rest))]
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode(errors="replace")
    return int(rest) if kind == b":" else rest.decode()
entries = [e for e in read() if len(e[3]) > 2 and e[3][0].upper() == "INV.RESERVE"]
print(", ".join(f"{e[2] / 1000:.2f} ms (txid {int(e[3][2])})" for e in reversed(entries)) or f"none over {sys.argv[2]} us")
PY
)
    echo "run $run$([ -n "${PIN:-}" ] && echo ' (pinned)'): $slow; major faults $faults"
    redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true
    wait $pid 2>/dev/null || true
  done
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
replica)
  deployed_pair 7571 7572
  python3 - "${N:-200000}" "${FEED:-1}" "${BUYER:-0}" >"$work/load.resp" <<'PY'
import sys
n, fed, buyer = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] == "1"
def cmd(*a):
    sys.stdout.write("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a))
cmd("INV.SET", "k", str(1 << 40))
if fed:
    cmd("INV.RULES", "k", "FEED", "ON")
if buyer:
    cmd("INV.RULES", "k", "LIMIT", "1")
for i in range(n):
    extra = ("BUYER", "buyer-%010d" % i) if buyer else ()
    cmd("INV.RESERVE", "k", "tx-%012d" % i, "1", "TTL", "600000", *extra)
PY
  "$cli" -p "${ports[0]}" wait 1 5000 >/dev/null
  perf record -p "$(cat "$work/$([ -n "${MASTER:-}" ] && echo 0 || echo 1).pid")" -e cpu-clock -F 2999 --call-graph dwarf,16384 \
    -o "$work/perf.data" -- sleep "${SECONDS_RECORDED:-6}" >/dev/null 2>&1 &
  rec=$!
  sleep 0.3
  "$cli" -p "${ports[0]}" --pipe <"$work/load.resp" | tail -1
  "$cli" -p "${ports[0]}" wait 1 10000 >/dev/null
  wait $rec || true
  perf script -i "$work/perf.data" -F ip,sym 2>/dev/null >"$work/stacks.txt"
  [ -n "${STACKS:-}" ] && cp "$work/stacks.txt" "$STACKS"
  python3 - "$work/stacks.txt" <<'PY'
import collections, os, sys
parts = [
    ("INV.APPLY, all of it", ["RedisModuleCommandDispatcher"]),
    ("  the stream append (RM_StreamAdd)", ["RM_StreamAdd"]),
    ("  the entry's field strings (EntryArgs)", ["EntryArgs::"]),
    ("  opening the feed stream (RM_OpenKey of it, type check)", ["FeedStream::open"]),
    ("  parsing the effect and its stamp", ["parse::apply"]),
    ("  applying the effect to the SKU", ["Sku>::apply"]),
    ("    the buyer's entry (Buyers)", ["buyers::Buyers::"]),
    ("  passing it on verbatim (RM_ReplicateVerbatim)", ["RM_ReplicateVerbatim"]),
    ("the replica's AOF (feedAppendOnlyFile)", ["feedAppendOnlyFile"]),
    ("reading and splitting the command (processMultibulkBuffer)", ["processMultibulkBuffer"]),
    ("freeing its arguments (resetClient)", ["resetClient"]),
    ("writing the AOF (flushAppendOnlyFile)", ["flushAppendOnlyFile"]),
]
counts, selfs, n = collections.Counter(), collections.Counter(), 0
for sample in open(sys.argv[1]).read().split("\n\n"):
    syms = [(l.strip().split(" ", 1) + [""])[1] for l in sample.strip().split("\n") if l.strip()]
    if not syms:
        continue
    n += 1
    selfs[syms[0]] += 1
    for name, pats in parts:
        if any(p in s for s in syms for p in pats):
            counts[name] += 1
print(f"replica samples: {n}")
for name, _ in parts:
    print(f"{100 * counts[name] / max(n, 1):5.1f}%  {name}")
if os.environ.get("TOP"):
    print("self samples, top functions:")
    for name, c in selfs.most_common(int(os.environ["TOP"])):
        print(f"{100 * c / max(n, 1):5.1f}%  {name[:110]}")
PY
  ;;
replica-callgrind)
  n=${N:-20000}
  deployed_pair 7573 7574 valgrind --tool=callgrind --callgrind-out-file="$work/cg.out"
  vg=$replica_job
  offset() { "$cli" -p "$1" info replication | tr -d '\r' | sed -n "s/^$2:\([0-9]*\)$/\1/p"; }
  caught_up() {
    for _ in $(seq 1200); do
      [ "$(offset "${ports[0]}" master_repl_offset)" = "$(offset "${ports[1]}" slave_repl_offset)" ] && return 0
      sleep 0.5
    done
    echo "the replica did not catch up" >&2
    return 1
  }
  python3 - "$n" "${FEED:-1}" "$work/warm.resp" "$work/load.resp" <<'PY'
import sys
n, fed = int(sys.argv[1]), sys.argv[2] == "1"
def cmd(f, *a):
    f.write("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a))
with open(sys.argv[3], "w") as f:
    cmd(f, "INV.SET", "k", str(1 << 40))
    if fed:
        cmd(f, "INV.RULES", "k", "FEED", "ON")
    for i in range(200):
        cmd(f, "INV.RESERVE", "k", "warm-%012d" % i, "1", "TTL", "600000")
with open(sys.argv[4], "w") as f:
    for i in range(n):
        cmd(f, "INV.RESERVE", "k", "tx-%012d" % i, "1", "TTL", "600000")
PY
  "$cli" -p "${ports[0]}" --pipe <"$work/warm.resp" >/dev/null
  caught_up
  callgrind_control -z "$vg" >/dev/null 2>&1
  "$cli" -p "${ports[0]}" --pipe <"$work/load.resp" >/dev/null
  caught_up
  calls=$("$cli" -p "${ports[1]}" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_inv\.apply:calls=\([0-9]*\),.*/\1/p')
  stop
  wait "$vg" || true
  echo "replica INV.APPLY calls: $calls (200 warm-up and the feed's own change before the count was zeroed)"
  callgrind_annotate --inclusive=yes --show-percs=no "$work/cg.out" 2>/dev/null |
    awk -v n="$n" -v top="${TOP:-25}" '
      /PROGRAM TOTALS/ { v = $1; gsub(",", "", v); printf "%9.1f instructions per request, whole replica process\n", v / n; next }
      /^ *[0-9,]+ +[^ ]/ && shown < top && !/=>|PROGRAM TOTALS|below main|libc-start|ld-linux|:main |:aeMain |\?\?\?:0x/ {
        v = $1; gsub(",", "", v); $1 = ""; printf "%9.1f %s\n", v / n, substr($0, 2, 120); shown++ }'
  ;;
*)
  echo "usage: scripts/profile.sh callgrind|footprint|flood|perf|replica|replica-callgrind [server]" >&2
  exit 2
  ;;
esac
