#!/usr/bin/env bash
# The Python the tests parse /metrics with: a virtualenv in <target>/test-venv holding the Prometheus
# client library (its text-format parser is the reference one), made once. Needs python3-venv
# (scripts/setup-debian.sh test installs it) and PyPI at set-up time; the tests themselves run offline.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${CARGO_TARGET_DIR:-target}/test-venv
want=prometheus_client==0.26.0

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import prometheus_client' 2>/dev/null; then
    exit 0
fi
echo "setup: creating $venv with $want" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$want"
