#!/usr/bin/env bash
# `make demo` on a fresh clone: wall time (venv creation + core install + the prune) and the size of the
# environment it leaves. Usage: bash benchmarks/demo_setup.sh > benchmarks/demo_setup.txt
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
git clone -q "$src" "$d/spa"
cd "$d/spa"
echo "commit $(git rev-parse --short HEAD); $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
make demo 2>&1 | grep -v -e '^WARNING: Location' -e 'pip-build-env' -e '!!' -e '\*\*\*\*' -e 'Editable installation' \
  -e 'Please be careful' -e 'name as your package' -e 'WheelFile' -e '^ *$'
end=$(date +%s.%N)
echo "make demo wall time: $(echo "$end - $start" | bc) s (pip resolves from the package registry; no wheel cache reuse assumed)"
echo "environment: $(du -sm .venv | cut -f1) MB in .venv; packages: $(.venv/bin/python -m pip list --format=freeze 2>/dev/null | grep -v '^-e' | cut -d= -f1 | tr '\n' ' ')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
