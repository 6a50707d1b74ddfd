#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite.
#
# Needs Debian with Python 3.11. Installs redis-server, redis-tools, nginx, chromium, coturn, nftables
# and espeak-ng from Debian's packages
# when missing (as root, or through sudo), makes .venv with the test extras, checks lint and
# types and the import contracts, and runs pytest inside a network namespace that has only `lo`, so that no test,
# browser or WebRTC peer reaches anything but 127.0.0.1. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip's own failures stop the script (pipefail); only its noise about missing mirrors is hidden.
quiet() { grep -v '^WARNING: Location' || true; }

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)   # makes the test Redis Cluster
[ -x /usr/sbin/nginx ] || need+=(nginx)                          # in front of two nodes
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The reach tests: coturn (TURN relay), nftables (blocked UDP, loss), espeak-ng (speech), openssl.
command -v turnserver >/dev/null 2>&1 || need+=(coturn)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
# The media write path in C (server/media/_rtp.c; tests/test_rtpout.py fails without it).
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
python3 -c "import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
  || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing from Debian: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
.venv/bin/python -m pip install -q -e '.[test,bench]' 2>&1 | quiet

.venv/bin/ruff check server tests bench
.venv/bin/ruff format --check server tests bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache   # the architecture's contracts (pyproject.toml)

# Root (CI) makes a plain network namespace; anyone else maps themselves to root in a new
# user namespace first.
if [ "$(id -u)" = 0 ]; then ns=(unshare --net --); else ns=(unshare -r -n --); fi
exec "${ns[@]}" sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' pytest "$@"
