#!/usr/bin/env bash
# The large fuzzing run: random architectures (hypothesis), zero-group oracle in float64.
#   SPA_FUZZ_EXAMPLES=2000 bash benchmarks/fuzz.sh > benchmarks/fuzz_random_arch.txt
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# $(date -u +%F) SPA_FUZZ_EXAMPLES=${SPA_FUZZ_EXAMPLES:-400}"
SPA_FUZZ_EXAMPLES=${SPA_FUZZ_EXAMPLES:-400} .venv/bin/python -m pytest -q tests/test_random_oracle.py \
  -k large_budget --hypothesis-show-statistics 2>&1 | grep -v "onnxruntime:"
