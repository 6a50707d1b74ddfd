#!/usr/bin/env bash
# Run the demo assembly on the embedded memory backend (no Redis needed) and print a link
# for each role. Needs Debian with Python 3.11. Extra arguments go to `hemicycle demo`
# (for example --port 8080, or --host 0.0.0.0 --public-url http://my-host:8000).
set -euo pipefail
cd "$(dirname "$0")/.."
# pip's own failures stop the script (pipefail); only its noise about missing mirrors is hidden.
quiet() { grep -v '^WARNING: Location' || true; }
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e . 2>&1 | quiet
exec .venv/bin/hemicycle demo "$@"
