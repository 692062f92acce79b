#!/bin/sh
# Makes the Python plugin runnable: a virtualenv with the pinned packages, the gRPC stubs generated
# from this checkout's proto/ into it, and the plugin installed as <venv>/bin/confd-database-sqlite
# with that virtualenv's Python in its first line.
#   examples/python-plugin/setup.sh VENV_DIR        (PYTHON=python3.12 to choose the interpreter)
# Exit status 3: no virtualenv can be made with this Python (e.g. Debian's python3-venv is missing).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 VENV_DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
proto=$here/../../proto
python=${PYTHON:-python3}
mkdir -p "$1"
venv=$(cd "$1" && pwd)

# The packages are installed once per requirements.txt; the stubs and the plugin copy are redone
# every time (a second), so they always match this checkout.
if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
    rm -rf "$venv" && mkdir -p "$venv"
    if ! "$python" -m venv "$venv" >"$venv/venv.log" 2>&1; then
        echo "setup.sh: '$python -m venv' failed (on Debian: apt-get install python3-venv):" >&2
        cat "$venv/venv.log" >&2
        exit 3
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$venv/bin/python" -m grpc_tools.protoc -I "$proto" --python_out="$site" --grpc_python_out="$site" \
    confd/plugin/v1/database.proto plugin/grpc_controller.proto plugin/grpc_stdio.proto
plugin=$venv/bin/confd-database-sqlite
{ echo "#!$venv/bin/python"; tail -n +2 "$here/confd-database-sqlite"; } >"$plugin.tmp"
chmod 755 "$plugin.tmp"
mv "$plugin.tmp" "$plugin"
echo "$plugin"
