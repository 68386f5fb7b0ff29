#!/usr/bin/env bash
# Install (if needed) and run the whole test suite, the real bundled model included.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh -m 'not local_model and not llama_server'
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
