#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install stagbench with the bundled local model,
# llama.cpp's server and the dev tools. Re-installs only when pyproject.toml changed.
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
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "Installing stagbench into .venv (the first time builds llama.cpp: several minutes)..." >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[local,server,dev]'
    touch "$stamp"
fi
