#!/usr/bin/env bash
# Install (if needed) and run the whole test suite, the real bundled model included.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh -m 'not local_model and not llama_server'
# -P keeps the working directory off sys.path: the tests import the installed stagbench.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -P -m pytest "$@"
