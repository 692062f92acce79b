#!/usr/bin/env bash
# Installs the Debian packages a build or the test suite needs, only when missing.
#   scripts/setup-debian.sh build   protoc (the etcd client generates its stubs at build time)
#   scripts/setup-debian.sh test    build + etcd, redis (and its sentinel), zookeeper, Go and go-plugin's packages for the interop tests,
#                                   python3-venv for the /metrics parser and the Python plugin test, man-db for the package check
set -euo pipefail

want=(protobuf-compiler)
if [ "${1:-build}" = test ]; then
    # binutils: nm, for the bench's check of host/symbol-order.txt.
    # zookeeper: the jars the zookeeper tests run with java (QuorumPeerMain), no service.
    # redis-sentinel: the sentinels of the Redis failover test.
    want+=(etcd-server redis-server redis-sentinel zookeeper openssl golang-go binutils
        golang-github-hashicorp-go-plugin-dev golang-github-hashicorp-go-hclog-dev
        golang-google-grpc-dev golang-google-genproto-dev golang-goprotobuf-dev golang-github-golang-protobuf-1-3-dev
        protoc-gen-go-1-3 python3 python3-venv man-db)
fi

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "setup: missing packages ${missing[*]} and no apt-get here; install them by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian etcd and redis packages start system services where an init exists; the tests start their own.
