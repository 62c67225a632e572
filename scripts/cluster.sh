#!/usr/bin/env bash
# Starts (or stops) a local Redis Cluster with the module: 3 masters + 3
# replicas on 127.0.0.1, ports $PORT_BASE..$PORT_BASE+5 (default 7101),
# data under tmp/cluster/. Usage: scripts/cluster.sh start|stop
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${PORT_BASE:-7101}
SERVER=${INVENTORY_SERVER:-redis-server}
MODULE=$(pwd)/target/release/libinventory.so
DIR=$(pwd)/tmp/cluster

case "${1:-}" in
start)
  [ -f "$MODULE" ] || { echo "build first: cargo build --release" >&2; exit 1; }
  mkdir -p "$DIR"
  addrs=()
  for i in 0 1 2 3 4 5; do
    port=$((BASE + i)); d="$DIR/$port"; mkdir -p "$d"
    "$SERVER" --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$d" \
      --pidfile "$d/pid" --logfile "$d/log" --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file "$d/nodes.conf" --cluster-node-timeout 2000 \
      --loadmodule "$MODULE"
    addrs+=("127.0.0.1:$port")
  done
  for i in 0 1 2 3 4 5; do
    until redis-cli -p $((BASE + i)) ping >/dev/null 2>&1; do sleep 0.1; done
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  until redis-cli -p "$BASE" cluster info | grep -q cluster_state:ok; do sleep 0.2; done
  echo "cluster up: ${addrs[*]} (stop with: make cluster-stop)"
  ;;
stop)
  for i in 0 1 2 3 4 5; do redis-cli -p $((BASE + i)) shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$DIR"
  echo "cluster stopped"
  ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
