#!/usr/bin/env bash
# The main job on an embedded default: render examples/demo with the env backend, no server needed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-debian.sh build
cargo build --quiet -p confd
out=target/demo
rm -rf "$out" && mkdir -p "$out/bin"
# A private copy: plugin executables that a workspace build leaves in target/debug would override the builtins.
cp target/debug/confd "$out/bin/confd"
export DEMO_DATABASE_HOST=db.internal DEMO_DATABASE_PORT=5432 DEMO_DATABASE_USER=app \
    DEMO_UPSTREAM_APP1=10.0.0.1:8080 DEMO_UPSTREAM_APP2=10.0.0.2:8080
"$out/bin/confd" --onetime --backend env --confdir examples/demo --prefix /demo --log-level info
for f in "$out"/*.conf; do
    echo "==> $f"
    cat "$f"
done
