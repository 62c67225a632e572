#!/usr/bin/env bash
# Starts (or stops) a local Redis Cluster with the module: 3 masters + 3
# replicas on 127.0.0.1, ports PORT_BASE..PORT_BASE+5 (default 7101; their
# cluster bus ports are each +10000), data under tmp/cluster/. The server is
# INVENTORY_SERVER (default redis-server); APPENDONLY=yes turns the AOF on
# (everysec), as make bench does for its flash sale. Every wait is bounded: a node that
# does not come up within 10 s, or a cluster not healthy within 30 s, stops
# the script with that node's log.
# Usage: scripts/cluster.sh start|stop
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${PORT_BASE:-7101}
SERVER=${INVENTORY_SERVER:-redis-server}
MODULE=$(pwd)/target/release/libinventory.so
DIR=$(pwd)/tmp/cluster

# Waits up to $1 seconds for the command after it to succeed (each try at
# most a second: a port something else holds may accept and never answer).
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  while [ "$SECONDS" -lt "$deadline" ]; do
    timeout 1 "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

fail_with_log() {
  echo "$1; its log ($2):" >&2
  tail -n 30 "$2" >&2 2>/dev/null || echo "(no log)" >&2
  "$0" stop >/dev/null 2>&1 || true
  exit 1
}

case "${1:-}" in
start)
  [ -f "$MODULE" ] || { echo "build first: make release" >&2; exit 1; }
  # A node left from an earlier run would answer in place of a new one
  # (which then cannot bind) and is already in a cluster: refuse clearly.
  for i in 0 1 2 3 4 5; do
    port=$((BASE + i))
    if timeout 1 redis-cli -p "$port" ping >/dev/null 2>&1; then
      echo "port $port is already served (a node of an earlier run? $0 stop)" >&2
      exit 1
    fi
  done
  # A fresh start: no nodes.conf or AOF of an earlier run.
  rm -rf "$DIR"
  mkdir -p "$DIR"
  addrs=()
  for i in 0 1 2 3 4 5; do
    port=$((BASE + i)); d="$DIR/$port"; mkdir -p "$d"
    "$SERVER" --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$d" \
      --pidfile "$d/pid" --logfile "$d/log" --save "" --appendonly "${APPENDONLY:-no}" \
      --cluster-enabled yes --cluster-config-file "$d/nodes.conf" --cluster-node-timeout 2000 \
      --loadmodule "$MODULE" ||
      fail_with_log "node $port did not start" "$d/log"
    addrs+=("127.0.0.1:$port")
  done
  for i in 0 1 2 3 4 5; do
    port=$((BASE + i))
    wait_for 10 redis-cli -p "$port" ping ||
      fail_with_log "node $port does not answer after 10 s" "$DIR/$port/log"
  done
  # redis-cli says why a create fails on its standard output: kept.
  timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$DIR/create.log" 2>&1 ||
    fail_with_log "cluster create failed (redis-cli: $(grep -E 'ERR|rror' "$DIR/create.log" | head -3 | tr '\n' ' '))" "$DIR/$BASE/log"
  wait_for 30 sh -c "redis-cli -p $BASE cluster info | grep -q cluster_state:ok" ||
    fail_with_log "the cluster is not healthy after 30 s" "$DIR/$BASE/log"
  echo "cluster up: ${addrs[*]} (stop with: make cluster-stop)"
  ;;
stop)
  # SHUTDOWN can be slow or lost (a busy node, a client timeout), and a node
  # left running would hold its port for the next start: each node's pid is
  # waited for, up to 10 s, then killed.
  pids=()
  for i in 0 1 2 3 4 5; do
    port=$((BASE + i))
    pid=$(cat "$DIR/$port/pid" 2>/dev/null || true)
    timeout 2 redis-cli -p "$port" shutdown nosave now >/dev/null 2>&1 || true
    [ -n "$pid" ] && pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || continue 2; sleep 0.1; done
    echo "node $pid did not shut down in 10 s: killed" >&2
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$DIR"
  echo "cluster stopped"
  ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
