#!/usr/bin/env bash
# The Debian package as a user meets it: build it, `dpkg -i` it on this machine, check what got
# installed and that it works, then `dpkg -r` (the conffiles stay) and `dpkg -P` (all gone).
# scripts/test.sh runs it after the workspace build. It packages that dev build (the same files
# as `make deb`, only the binary is unoptimised): a release build would add minutes of fat LTO.
# Needs root (or sudo) and dpkg. Outside CI a machine without them, or with a confd package
# someone installed, is skipped with a notice; under CI=true every check runs.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

skip() {
    if [ "${CI:-}" = true ]; then
        echo "package-check: $1, but CI=true: the package must be checked" >&2
        exit 1
    fi
    echo "*** SKIPPED package check: $1 ***" >&2
    exit 0
}
fail() {
    echo "package-check: FAILED: $*" >&2
    exit 1
}

command -v dpkg >/dev/null || skip "dpkg is not available"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || skip "installing a package needs root or password-less sudo"
    sudo=(sudo -n)
fi
# Developers share machines: one check at a time, and a package someone installed by hand is
# left alone outside CI.
exec 9>/tmp/confd-package-check.lock
flock -w 900 9 || fail "another package check held /tmp/confd-package-check.lock for 15 minutes"
if dpkg-query -W -f='${Status}' confd 2>/dev/null | grep -q 'ok installed\|config-files'; then
    [ "${CI:-}" = true ] || skip "a confd package is already installed here; not replacing it"
fi

# dpkg takes its lock for a moment; a concurrent apt-get from another test run is waited for.
dpkg_run() {
    local try err
    for try in $(seq 60); do
        if err=$("${sudo[@]}" dpkg "$@" 2>&1 >/dev/null); then
            return 0
        fi
        case "$err" in
            *lock*) sleep 2 ;;
            *) echo "$err" >&2; return 1 ;;
        esac
    done
    echo "$err" >&2
    return 1
}

echo "== package check: build the .deb"
deb=$(scripts/package.sh --profile dev --no-build | tail -n 1)
[ -f "$deb" ] || fail "scripts/package.sh did not name a package file (got '$deb')"

tmp=$(mktemp -d)
installed=0
cleanup() {
    [ "$installed" = 1 ] && dpkg_run -P confd || true
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "== package check: dpkg -i $deb"
dpkg_run -i "$deb" || fail "dpkg -i"
installed=1
dpkg-query -W -f='${Status}\n' confd | grep -qx 'install ok installed' || fail "confd is not 'install ok installed'"

echo "== package check: installed files"
version=$(/usr/bin/confd --version) || fail "/usr/bin/confd --version"
echo "$version" | sed 's/^/    /'
echo "$version" | grep -q '^confd [0-9]' || fail "--version: no 'confd <version>' line"
for label in commit rustc backends; do
    echo "$version" | grep -q "^$label: " || fail "--version: no $label line"
done
[ "$(man -w confd)" = /usr/share/man/man1/confd.1.gz ] || fail "man -w confd: $(man -w confd 2>&1)"
page=$(MANPAGER=cat MANWIDTH=100 man confd 2>/dev/null) || fail "man confd"
for text in 'EXIT STATUS' '--plugin-config' '--one-time'; do
    grep -qF -- "$text" <<<"$page" || fail "man confd has no '$text'"
done
bash -c 'source /usr/share/bash-completion/completions/confd && complete -p confd' >/dev/null ||
    fail "the bash completion does not register for confd"
for f in /usr/share/zsh/vendor-completions/_confd /usr/share/fish/vendor_completions.d/confd.fish \
    /lib/systemd/system/confd.service /usr/share/doc/confd/copyright \
    /usr/share/doc/confd/README.md /usr/share/doc/confd/CHANGELOG.md \
    /usr/share/doc/confd/docs/writing-a-plugin.md; do
    [ -s "$f" ] || fail "$f is missing or empty"
done
grep -q '^ExecStart=/usr/bin/confd' /lib/systemd/system/confd.service || fail "confd.service has no ExecStart"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' confd)
for f in /etc/confd/confd.toml /etc/confd/conf.d/myapp.toml.example /etc/confd/templates/myapp.conf.tmpl; do
    grep -q "^ $f " <<<"$conffiles" || fail "$f is not a conffile: $conffiles"
done

echo "== package check: the installed confd renders the demo and the shipped example"
(
    cd "$tmp" && mkdir -p target/demo
    DEMO_DATABASE_HOST=db.internal DEMO_DATABASE_PORT=5432 DEMO_UPSTREAM_APP1=10.0.0.1:8080 \
        /usr/bin/confd --onetime --backend env --confdir "$repo/examples/demo" --prefix /demo \
        --log-level warn
) || fail "rendering examples/demo"
grep -qx 'host = db.internal' "$tmp/target/demo/app.conf" || fail "demo app.conf: $(cat "$tmp/target/demo/app.conf")"
grep -qx 'user = postgres' "$tmp/target/demo/app.conf" || fail "demo app.conf has no default user"
grep -qF 'server 10.0.0.1:8080;  # app1' "$tmp/target/demo/upstream.conf" || fail "demo upstream.conf: $(cat "$tmp/target/demo/upstream.conf")"
# The shipped example, switched on as its comment says, with the shipped confd.toml (all comments,
# so it must parse to the defaults).
cp -r /etc/confd "$tmp/etc-confd"
sed "s|^dest = .*|dest = \"$tmp/myapp.conf\"|" "$tmp/etc-confd/conf.d/myapp.toml.example" \
    >"$tmp/etc-confd/conf.d/myapp.toml"
MYAPP_DATABASE_HOST=db.example /usr/bin/confd --config-file /etc/confd/confd.toml --onetime \
    --backend env --confdir "$tmp/etc-confd" --log-level warn || fail "rendering the shipped example"
grep -qx 'host = db.example' "$tmp/myapp.conf" && grep -qx 'port = 5432' "$tmp/myapp.conf" ||
    fail "the example rendered as: $(cat "$tmp/myapp.conf")"

echo "== package check: dpkg -r keeps edited conffiles, dpkg -P removes them"
echo '# edited by the package check' | "${sudo[@]}" tee -a /etc/confd/confd.toml >/dev/null
dpkg_run -r confd || fail "dpkg -r"
[ ! -e /usr/bin/confd ] || fail "/usr/bin/confd is still there after dpkg -r"
[ ! -e /usr/share/man/man1/confd.1.gz ] || fail "the man page is still there after dpkg -r"
dpkg-query -W -f='${Status}\n' confd | grep -qx 'deinstall ok config-files' ||
    fail "after dpkg -r: $(dpkg-query -W -f='${Status}' confd)"
grep -q 'edited by the package check' /etc/confd/confd.toml || fail "dpkg -r lost the edited confd.toml"
dpkg_run -P confd || fail "dpkg -P"
installed=0
[ ! -e /etc/confd ] || fail "/etc/confd is still there after dpkg -P: $(find /etc/confd)"
[ ! -e /etc/systemd/system/confd.service ] || fail "dpkg -P left a mask of confd.service behind"
if dpkg-query -W -f='${Status}' confd 2>/dev/null | grep -q 'ok installed\|config-files'; then
    fail "confd is still known to dpkg after dpkg -P"
fi
echo "== package check: passed in $((SECONDS - started)) s ($deb)"
