#!/usr/bin/env bash
# `make run`: redis-server in the foreground with the module, its data and
# configuration in data/ (git-ignored). The first run copies redis.conf (the
# template) to data/redis.conf and adds the data dir and the module to the
# copy; later runs start from the copy as it is, CONFIG REWRITE included.
# Usage: scripts/run.sh [port]
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-6379}
module=$(pwd)/target/release/libinventory.so
[ -f "$module" ] || { echo "build first: make release" >&2; exit 1; }
mkdir -p data
if [ ! -f data/redis.conf ]; then
  {
    echo "# Made by make run from redis.conf; edit this copy, or delete it to start again."
    echo "dir $(pwd)/data"
    echo "loadmodule $module"
    cat redis.conf
  } >data/redis.conf
fi
exec redis-server data/redis.conf --port "$port"
