#!/usr/bin/env bash
# Checks a TLS listener against Mozilla's "intermediate" configuration with
# sslyze, installed from PyPI into a venv under target/ on first use.
#
# usage: tls_sslyze.sh HOST PORT CA_FILE
# exit:  0 compliant, 1 not compliant (sslyze's report on stdout),
#        3 sslyze could not be installed (the caller decides to skip or fail).
set -u
host=$1 port=$2 ca=$3
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../../target}
venv=$target/tls-sslyze-venv

if [ ! -x "$venv/bin/sslyze" ]; then
    echo "installing sslyze into $venv" >&2
    python3 -m venv "$venv" >&2 || { echo "python3 -m venv failed" >&2; exit 3; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'sslyze>=6,<7' >&2 \
        || { echo "pip install sslyze failed" >&2; exit 3; }
fi

# {IP} pins the address so "localhost" (the certificate's name) is not
# resolved to ::1.
"$venv/bin/sslyze" --mozilla_config=intermediate --certinfo_ca_file "$ca" \
    "$host:$port{127.0.0.1}"
rc=$?
[ $rc -eq 0 ] || exit 1
