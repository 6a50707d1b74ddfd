#!/usr/bin/env bash
# Render every role's page at 1440×900 (the interpreter at 1366×768) and 390×844 into
# docs/screenshots/ (scripts/screenshots.py). Runs in a network namespace that has only `lo`,
# like the tests: the node, and Chromium's every request, stay on 127.0.0.1.
# Arguments go to screenshots.py (e.g. --state results, --out /tmp/shots).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || { echo "run scripts/test.sh first (it makes .venv with the test extras)" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { echo "/usr/bin/chromium is missing: apt-get install chromium" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then ns=(unshare --net); else ns=(unshare -r -n); fi
exec "${ns[@]}" -- sh -c 'ip link set lo up && exec "$0" scripts/screenshots.py "$@"' "$py" "$@"
