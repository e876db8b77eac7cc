"""What a whole `spa prune` process cannot go below on a ResNet-50 export: the fixed costs of a fresh process that
verifies its output (issue 14 item 6 compares the whole process with Torch-Pruning's in-memory prune).

Each row is the median of --repeat fresh processes, interleaved:
  bare interpreter            python -c pass
  imports                     python -c "import numpy, onnx, onnxruntime" (what spa cannot skip)
  read / parse / session+run / checker, inside one fresh process after those imports: reading the input file
                              (spa reads it on the other core while it imports: io_safety.prefetch), parsing those
                              bytes, an onnxruntime session of the pruned model plus one run at its input size, and
                              onnx.checker's full check of the pruned model's skeleton (what spa.verify checks)
  spa prune                   the whole command (--json)
The floor is imports + parse + session/run + checker (the read overlaps the imports).

    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python benchmarks/startup_floor.py IN.onnx PRUNED.onnx > benchmarks/startup_floor.txt
(IN: the resnet50 export of benchmarks/tp_side_by_side.py, models.zoo_torch.export("resnet50", ..., size="full",
opset=17); PRUNED: `spa prune IN -o PRUNED --ratio 0.5 -c l1`)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAGES = """
import sys, time
t = time.perf_counter(); import numpy, onnx, onnxruntime as ort; t0 = time.perf_counter()
data = open(sys.argv[1], "rb").read(); t1 = time.perf_counter()
onnx.load_model_from_string(data); t2 = time.perf_counter()
b = open(sys.argv[2], "rb").read()
t3 = time.perf_counter()
so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
s = ort.InferenceSession(b, so, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
s.run(None, {i.name: numpy.random.rand(*[d if isinstance(d, int) else 1 for d in i.shape]).astype("float32")})
t4 = time.perf_counter()
from spa.view import skeleton
sk = skeleton(onnx.load_model_from_string(b)); t5 = time.perf_counter()
onnx.checker.check_model(sk, full_check=True); t6 = time.perf_counter()
print(t1 - t0, t2 - t1, t4 - t3, t6 - t5)
"""
STAGE_ROWS = ("read the input", "parse it", "onnxruntime session + run", "onnx.checker (skeleton)")


def wall(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("pruned")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    py, spa = sys.executable, str(Path(sys.executable).parent / "spa")
    rows: dict[str, list[float]] = {k: [] for k in ("bare interpreter", "imports numpy+onnx+onnxruntime", *STAGE_ROWS,
                                                    "spa prune")}
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.onnx")
        prune = [spa, "prune", args.model, "-o", out, "--ratio", "0.5", "-c", "l1", "--json"]
        for _ in range(args.repeat):
            rows["bare interpreter"].append(wall([py, "-c", "pass"]))
            rows["imports numpy+onnx+onnxruntime"].append(wall([py, "-c", "import numpy, onnx, onnxruntime"]))
            r = subprocess.run([py, "-c", STAGES, args.model, args.pruned], check=True, capture_output=True, text=True,
                               env=dict(os.environ, PYTHONPATH=str(ROOT)))
            for k, v in zip(STAGE_ROWS, map(float, r.stdout.split())):
                rows[k].append(v)
            rows["spa prune"].append(wall(prune))
    print(f"# cores {os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"median of {args.repeat} fresh processes each, interleaved (seconds)")
    for k, v in rows.items():
        print(f"{k:34s} {statistics.median(v):7.3f}   [{', '.join(f'{x:.3f}' for x in v)}]")
    fixed = ("bare interpreter", "imports numpy+onnx+onnxruntime", *STAGE_ROWS[1:])
    floor = sum(statistics.median(rows[k]) for k in fixed)
    print(f"floor: interpreter + imports + parse + session/run + checker = {floor:.3f} s")


if __name__ == "__main__":
    main()
