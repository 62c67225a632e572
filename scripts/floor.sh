#!/usr/bin/env bash
# The floor an INV.RESERVE stands on, in whole-server CPU per request
# (docs/benchmarks.md, "The floor of a module command, whole-server"):
# applies scripts/floor.patch to a temporary worktree of HEAD (measurement-
# only commands shaped like INV.RESERVE, each stopping earlier, one that
# counts its BUYER in a std HashMap instead, and their variants in the
# bench), builds it apart from target/, and runs
#
#   redis-inventory-bench --server-cpu --rounds ${ROUNDS:-5} --server <server> [bench options]
#
# with that build, so the floors take turns with INV.RESERVE, HINCRBY, the
# Lua scripts and (TAIRSTRING_MODULE, as for make bench) TairString in the
# same run. Nothing it builds is installed or shipped.
#
#   scripts/floor.sh [server [bench options]]   (default: redis-server from PATH)
#
# e.g. the buyer's floors alone, as deployed:
#   scripts/floor.sh redis-server --deployed-shape --variants \
#     "INV.RESERVE stocked,INV.RESERVE BUYER stocked,floor: + propagate,floor: + propagate BUYER,floor: + propagate BUYER + map"
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:-$(command -v redis-server)}
work=$(mktemp -d)
cleanup() {
  git worktree remove --force "$work/tree" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
git worktree add -q --detach "$work/tree" HEAD
git -C "$work/tree" apply "$PWD/scripts/floor.patch"
# The bench finds the module where its build put it (the tree's target/);
# FLOOR_TARGET keeps the build for the next run.
if [ -n "${FLOOR_TARGET:-}" ]; then
  mkdir -p "$FLOOR_TARGET"
  ln -s "$(realpath "$FLOOR_TARGET")" "$work/tree/target"
fi
cd "$work/tree"
cargo build -q --release -p redis-inventory -p redis-inventory-bench
target/release/redis-inventory-bench --server-cpu --rounds "${ROUNDS:-5}" --server "$server" "${@:2}"
