#!/usr/bin/env bash
# MAC / parameter / latency targets on full-size ResNet-50, then all outputs measured side by side.
#   bash benchmarks/targets.sh > benchmarks/targets.txt
set -euo pipefail
cd "$(dirname "$0")/.."
d=$(mktemp -d)
.venv/bin/python -c "import sys; sys.path.insert(0, '.'); from models import zoo_torch; zoo_torch.export('resnet50', '$d/resnet50.onnx', size='full')" 2>/dev/null
echo "# $(date -u +%F) ResNet-50 full, opset 17; spa prune with each target (l1, global, round-to 8)"
for t in "--target-macs 0.5" "--target-params 0.3" "--target-latency 0.5"; do
  name=$(echo "$t" | tr -d ' -' | tr '.' '_')
  start=$(date +%s.%N)
  .venv/bin/spa prune "$d/resnet50.onnx" -o "$d/$name.onnx" $t --json > "$d/$name.json"
  end=$(date +%s.%N)
  .venv/bin/python - "$d/$name.json" "$t" "$start" "$end" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:22s} ratio {d['ratio']:.4f}  MACs {d['after']['macs'] / d['before']['macs']:.3f}  "
      f"params {d['after']['params'] / d['before']['params']:.3f}  reached {d['seconds'].get('target_reached', 0):.3f}  "
      f"wall {float(sys.argv[4]) - float(sys.argv[3]):.1f} s")
PY
done
echo
echo "# spa bench, CPU, 1 thread, batch 1 (interleaved)"
.venv/bin/spa bench "$d/resnet50.onnx" "$d"/targetmacs0_5.onnx "$d"/targetparams0_3.onnx "$d"/targetlatency0_5.onnx --runs 20 --no-memory
rm -rf "$d"
