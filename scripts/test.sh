#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with only Rust: installs what the tests need, builds, tests,
# builds and installs the Debian package and removes it again (scripts/package-check.sh), then runs the
# conformance cases recorded from the original confd when ../shared/conformance exists.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-debian.sh test
scripts/setup-python.sh
export CARGO_TERM_COLOR=never INSTA_UPDATE=no
cargo build --workspace --all-targets
# Every executable is built now, with the workspace's features: the tests use them as they are
# instead of rebuilding a package alone (which resolves its features differently).
CONFD_TEST_BINS_PREBUILT=1 cargo test --workspace --no-fail-fast
scripts/package-check.sh

conformance=../shared/conformance/run.sh
if [ -f "$conformance" ]; then
    echo "== conformance (cases recorded from the original Go confd)"
    bash "$conformance" target/debug/confd
fi
