#!/usr/bin/env bash
# `make bench`: every benchmark, built in release, each printing its figures as ratios against a
# baseline measured in the same invocation; a summary of the end-to-end figures comes last.
# Budget: about 10 minutes on the 2-core reference machine (the builds are most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
scripts/setup-debian.sh test   # etcd for the watch benches, protoc for the build

# The original Go confd measured side by side when CONFD_GO names a build of it (see
# ../shared/tools/build-confd-go.sh); the benches print its column only then.
if [ -n "${CONFD_GO:-}" ]; then
    export CONFD_GO
    export CONFD_BENCH_BASELINE="${CONFD_BENCH_BASELINE:-go=$CONFD_GO}"
fi

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# The benches locate confd and the plugins through the support crate, which builds them in the
# bench's own (release) profile; building up front keeps build time out of every measurement.
cargo build --release -p confd -p confd-database-env -p confd-database-file -p confd-database-etcd
cargo bench -p confd-integration --no-run

# host/symbol-order.txt (see host/build.rs) names functions with their crate hashes, which change
# with every rustc or dependency update; the link skips names it does not find, so a stale file
# would quietly stop paying. Most of its names must be functions of this build.
confd="${CARGO_TARGET_DIR:-target}/release/confd"
if [ -f host/symbol-order.txt ]; then
    total=$(grep -c . host/symbol-order.txt)
    found=$(nm --defined-only "$confd" | awk '{print $3}' | sort -u |
        comm -12 - <(sort -u host/symbol-order.txt) | wc -l)
    echo "symbol order: $found of $total names in host/symbol-order.txt are functions of $confd" |
        tee "$log/symbol-order.txt"
    if [ $((found * 2)) -lt "$total" ]; then
        echo "host/symbol-order.txt is stale: regenerate it with scripts/symbol-order.sh" >&2
        exit 1
    fi
fi

run() {
    local name=$1
    shift
    echo
    echo "== $name"
    "$@" 2>&1 | tee "$log/$name.txt"
}

# Component benches owned by their crates (plugin transport, template engines), when present.
if grep -q '^\[\[bench\]\]' examples/memory/Cargo.toml 2>/dev/null; then
    run plugin_transport cargo bench -p confd-database-memory
fi
if grep -q '^\[\[bench\]\]' template/Cargo.toml 2>/dev/null; then
    run templates cargo bench -p confd-template
fi

run oneshot cargo bench -p confd-integration --bench oneshot
run watch_latency cargo bench -p confd-integration --bench watch_latency
run scale cargo bench -p confd-integration --bench scale
run million cargo bench -p confd-integration --bench million
run fleet cargo bench -p confd-integration --bench fleet
run reload cargo bench -p confd-integration --bench reload
run restart cargo bench -p confd-integration --bench restart
run failover cargo bench -p confd-integration --bench failover

echo
echo "================ summary (end-to-end) ================"
sed -n '/^one-shot,/,/^targets:/p' "$log/oneshot.txt"
grep '^engines' "$log/oneshot.txt" || true
grep '^baseline' "$log/oneshot.txt" || true
grep '^restart:' "$log/restart.txt" || true
grep -E '^[a-z]+ failover:' "$log/failover.txt" || true
cat "$log/symbol-order.txt" 2>/dev/null || true
echo
sed -n '/^watch latency: confd added/,/^ratios:/p' "$log/watch_latency.txt"
echo
sed -n '/^scale:/,$p' "$log/scale.txt"
echo
sed -n '/^million:/,$p' "$log/million.txt"
echo
sed -n '/^fleet:/,$p' "$log/fleet.txt"
echo
sed -n '/^reload:/,$p' "$log/reload.txt"
