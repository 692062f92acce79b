#!/bin/sh
# Builds the Go go-plugin interop peers (a host and a plugin for confd's
# Database service) from Debian packages only, offline, in GOPATH mode.
# Usage: integration/go/build.sh OUTDIR
# Exit status: 0 built, 3 a prerequisite (tool or Debian package) is missing,
# 1 anything else. Produces OUTDIR/confd-interop-host and OUTDIR/confd-interop-plugin. The
# generated Go stubs live in OUTDIR/gopath and are never committed.
set -eu

die() {
	echo "integration/go/build.sh: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: build.sh OUTDIR"
here=$(cd "$(dirname "$0")" && pwd)
proto_root=$(cd "$here/../../proto" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

# Debian's Go library sources; the packages install them here.
debian_gopath=/usr/share/gocode
missing=""
need_tool() { # tool package
	command -v "$1" >/dev/null 2>&1 || missing="$missing\n  command $1 (apt-get install $2)"
}
need_src() { # import-path package
	[ -d "$debian_gopath/src/$1" ] || missing="$missing\n  Go package $1 in $debian_gopath/src (apt-get install $2)"
}
need_tool go golang-go
need_tool protoc protobuf-compiler
need_tool protoc-gen-go protoc-gen-go-1-3
need_src github.com/hashicorp/go-plugin golang-github-hashicorp-go-plugin-dev
need_src github.com/hashicorp/go-hclog golang-github-hashicorp-go-hclog-dev
need_src google.golang.org/grpc golang-google-grpc-dev
need_src google.golang.org/genproto golang-google-genproto-dev
need_src github.com/golang/protobuf/proto golang-github-golang-protobuf-1-3-dev
if [ -n "$missing" ]; then
	# printf interprets the \n separators collected above.
	printf "integration/go/build.sh: missing build prerequisites:$missing\n" >&2
	exit 3
fi

# Serialise concurrent builds into the same OUTDIR (e.g. two test runs).
if command -v flock >/dev/null 2>&1; then
	exec 9>"$out/.build.lock"
	flock 9
fi

gopath="$out/gopath"
export GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0
export GOPATH="$gopath:$debian_gopath"
export GOCACHE="${CONFD_INTEROP_GOCACHE:-$out/go-cache}"

# Generated stubs: import path confd/plugin/v1 (the proto's go_package).
mkdir -p "$gopath/src"
if ! protoc -I "$proto_root" \
	--go_out="plugins=grpc,paths=source_relative:$gopath/src" \
	"$proto_root/confd/plugin/v1/database.proto"; then
	die "protoc failed; the generator must be protoc-gen-go 1.3.x from Debian's protoc-gen-go-1-3 (the newer protoc-gen-go 1.28 has no plugins=grpc and does not match Debian's grpc 1.33)"
fi

# Our sources, copied fresh so deleted files do not linger.
rm -rf "$gopath/src/confdinterop"
mkdir -p "$gopath/src/confdinterop"
cp -R "$here/shared" "$here/host" "$here/plugin" "$gopath/src/confdinterop/"

go build -o "$out/confd-interop-host" confdinterop/host ||
	die "go build of the interop host failed (see above)"
go build -o "$out/confd-interop-plugin" confdinterop/plugin ||
	die "go build of the interop plugin failed (see above)"
