#!/usr/bin/env bash
# Install (if needed), then run a real demo batch on the bundled local model (no key, no
# network) and print where the results are. Extra arguments go to `stagbench run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/stagbench run experiments/demo_local.toml --out results/demo-local "$@"
