#!/usr/bin/env bash
# The GPU check of issue 13, in one command (under 8 minutes on one GPU, no network):
#   benchmarks/gpu_check.sh                 # on a GPU machine: measure, write reports/benchmarks/gpu_check.{json,md}
#   benchmarks/gpu_check.sh --device cpu --tiny --out-dir /tmp/x   # CPU smoke of the same code (what CI runs)
# Without a GPU and without --device cpu it writes the report saying "not measured: no GPU was available".
# Parts and limits: benchmarks/gpu_check.py. Python: $IQABENCH_PYTHON, else .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${IQABENCH_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import iqabench" 2>/dev/null; then
  echo "gpu_check: $PYTHON cannot import iqabench; run 'make setup' (or set IQABENCH_PYTHON)" >&2
  exit 2
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
