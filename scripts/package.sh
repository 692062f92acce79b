#!/usr/bin/env bash
# `make deb`: the Debian package of confd, built with cargo-deb into target/debian/.
#   scripts/package.sh                    release build (fat LTO: minutes), the package to ship
#   scripts/package.sh --profile dev --no-build
#                                         the test suite's existing dev build, same files; what
#                                         scripts/package-check.sh installs and checks
# The man page and completions come from confd-gen-docs of the same build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned, so every machine packages with the same tool; --locked takes its own Cargo.lock.
CARGO_DEB_VERSION=3.8.0

profile=release
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "usage: $0 [--profile NAME] [--no-build]" >&2; exit 2 ;;
    esac
done
case "$profile" in
    dev) dir=debug ;;
    *) dir=$profile ;;
esac
target=${CARGO_TARGET_DIR:-target}
out=$target/$dir

if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    echo "== installing cargo-deb $CARGO_DEB_VERSION (cargo install, once per machine)" >&2
    cargo install --quiet --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi

if [ "$build" = 1 ]; then
    scripts/setup-debian.sh build
    cargo build --profile "$profile" -p confd --bin confd --bin confd-gen-docs
fi
for bin in confd confd-gen-docs; do
    [ -x "$out/$bin" ] || { echo "package: $out/$bin is missing; build it first" >&2; exit 1; }
done

rm -rf "$out/confd-docs"
"$out/confd-gen-docs" "$out/confd-docs"
# -n: no name or time stamp inside, so the same page gives the same bytes.
gzip -9n "$out/confd-docs/confd.1"

args=(-p confd --no-build --output "$target/debian/")
if [ "$profile" != release ]; then
    # Not a release, and its version says so. cargo-deb warns about the dev profile: expected.
    args+=(--profile "$profile" --deb-revision "0~$dir" --fast)
fi
cargo deb "${args[@]}"
