#!/usr/bin/env bash
# Regenerates host/symbol-order.txt from the current build: the functions a one-shot run
# executes, host and builtin plugin, so the release link (host/build.rs, which says what that
# buys) places them together at the start of .text.
# Run after a rustc or dependency update (the names carry crate hashes) or changes on the one-shot
# path: `make bench` fails once most names are missing from the build. Names that no longer exist
# are skipped by the linker, new functions are placed in the default order.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get install -y -q valgrind
fi
# Without the current order file: the profile must not depend on the previous layout.
CONFD_SYMBOL_ORDER=0 cargo build --release -p confd
confd="${CARGO_TARGET_DIR:-$PWD/target}/release/confd"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
# A copy alone in its directory: the builtins then run as `confd internal-plugin database <name>`.
cp "$confd" "$work/bin/confd"

# 20 resources x 10 keys, Go and Jinja templates, env and file data.
for engine in go jinja; do
    mkdir -p "$work/$engine/conf.d" "$work/$engine/templates" "$work/$engine/out"
done
{
    echo "{\"app\": {"
    for r in $(seq -w 0 19); do
        [ "$r" != 00 ] && echo ","
        echo "\"r$r\": {\"name\": \"resource-$r\""
        for k in $(seq -w 0 8); do echo ", \"k$k\": \"value-$r-$k\""; done
        echo "}"
    done
    echo "}}"
} >"$work/data.json"
envs=()
for r in $(seq -w 0 19); do
    envs+=("APP_R${r}_NAME=resource-$r")
    for k in $(seq -w 0 8); do envs+=("APP_R${r}_K$k=value-$r-$k"); done
    printf '# {{getv "/name"}}\n{{range gets "/k*"}}{{base .Key}} = {{.Value}}\n{{end}}' \
        >"$work/go/templates/r$r.tmpl"
    printf '# {{ getv("/name") }}\n{%% for kv in gets("/k*") %%}{{ base(kv.key) }} = {{ kv.value }}\n{%% endfor %%}' \
        >"$work/jinja/templates/r$r.j2"
    for engine in go jinja; do
        ext=tmpl; [ $engine = jinja ] && ext=j2
        printf '[template]\nsrc = "r%s.%s"\ndest = "%s/%s/out/r%s.conf"\nprefix = "/app/r%s"\nkeys = ["/"]\nmode = "0644"\n' \
            "$r" "$ext" "$work" "$engine" "$r" "$r" >"$work/$engine/conf.d/r$r.toml"
    done
done

profile() {
    local name=$1
    shift
    env -i PATH=/usr/bin:/bin "${envs[@]}" valgrind --tool=callgrind --trace-children=yes \
        --demangle=no --callgrind-out-file="$work/cg.$name.%p" "$work/bin/confd" --onetime "$@" \
        --log-level error 2>"$work/$name.log" || { cat "$work/$name.log"; exit 1; }
}
for engine in go jinja; do
    profile "$engine-env" --confdir "$work/$engine" --backend env
    rm -rf "$work/$engine/out"/*
    profile "$engine-file" --confdir "$work/$engine" --backend file --file "$work/data.json"
done

# Functions both processes run first, then the plugin's, then the host's: each process's hot
# code is then one contiguous run. Sorted within each group so the file is stable.
for f in "$work"/cg.*; do
    role=host
    grep -q '^cmd:.*internal-plugin' "$f" && role=plugin
    sed -n 's/^c\{0,1\}fn=([0-9]*) \(.*\)$/\1/p' "$f" | sed "s/^/$role /"
done | sort -u | awk '
    { seen[$2] = seen[$2] " " $1 }
    END {
        for (s in seen) {
            rank = (seen[s] ~ /host/ && seen[s] ~ /plugin/) ? 0 : (seen[s] ~ /plugin/ ? 1 : 2)
            print rank "\t" s
        }
    }' | sort -k1,1n -k2,2 | cut -f2 | grep -E '^(_ZN|_R)' >host/symbol-order.txt
echo "host/symbol-order.txt: $(wc -l <host/symbol-order.txt) functions"
