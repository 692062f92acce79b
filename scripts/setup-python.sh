#!/usr/bin/env bash
# The Python the tests use: a virtualenv in <target>/test-venv holding the Prometheus client library
# (its text-format parser is the reference one, for /metrics) and moto's server (the AWS APIs the
# ssm, secretsmanager and dynamodb backends are tested against), made once. Needs python3-venv
# (scripts/setup-debian.sh test installs it) and PyPI at set-up time; the tests themselves run offline.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${CARGO_TARGET_DIR:-target}/test-venv
want=(prometheus_client==0.26.0 "moto[server]==5.2.5")

if [ -x "$venv/bin/python" ] && [ -x "$venv/bin/moto_server" ] &&
    "$venv/bin/python" -c 'import prometheus_client, moto' 2>/dev/null; then
    exit 0
fi
echo "setup: $venv with ${want[*]}" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "${want[@]}"
