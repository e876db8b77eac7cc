"""Page faults in a fresh `spa prune` process (issue 14 item 6): the costs this stop removed, each measured in a
fresh process, before and after, side by side.

  arrays after a prefetch   making the weights' arrays (onnx numpy_helper.to_array of every initializer) after the
                            input was read on a second thread (spa.io_safety.prefetch) and parsed, with glibc's
                            per-thread arenas ("arenas per thread") or one arena (M_ARENA_MAX=1, what spa's
                            command sets: spa.__main__.keep_freed_memory)
  first l1 scoring          spa.api.compute_scores(l1) right after load + analysis (the first touch of every weight):
                            the plain |w| temporary per weight ("whole temporary", the code before) or |w| a block of
                            rows at a time (spa.criteria.magnitude, now)

    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python benchmarks/first_touch.py IN.onnx > benchmarks/first_touch.txt
(IN: the resnet50 export of benchmarks/tp_side_by_side.py)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ARRAYS = """
import sys, time, ctypes
from spa.__main__ import keep_freed_memory
keep_freed_memory()
if sys.argv[2] == "per-thread":
    ctypes.CDLL(None).mallopt(-8, 8)  # M_ARENA_MAX back to glibc's default for 2 cores (8 x cores)
from spa import io_safety
io_safety.prefetch(sys.argv[1])
import onnx
from onnx import numpy_helper
from spa import modelfile
time.sleep(0.2)
m = modelfile.load(sys.argv[1])
t = time.perf_counter()
arrs = [numpy_helper.to_array(x) for x in m.graph.initializer]
print(time.perf_counter() - t)
"""

SCORES = """
import sys, time
import numpy as np
from spa.__main__ import keep_freed_memory
keep_freed_memory()
import spa.api as api
from spa.criteria import magnitude
from spa.analysis import analyze
from spa.modelfile import load
from spa.view import ModelView
if sys.argv[2] == "whole":
    def whole(w, axis, p):  # the code before: one |w| temporary as large as the weight
        w = w if w.dtype in (np.float32, np.float64) else w.astype(np.float32)
        a = np.abs(w) if p == 1 else np.square(w)
        return np.moveaxis(a, axis, 0).reshape(w.shape[axis], -1).sum(axis=1).astype(np.float64)
    magnitude._index_sums = whole
a = analyze(ModelView.build(load(sys.argv[1])))
t = time.perf_counter()
api.compute_scores(a, "l1")
print(time.perf_counter() - t)
"""


def fresh(code: str, *args: str) -> float:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True,
                         cwd=ROOT).stdout
    return float(out.split()[-1])


def main() -> None:
    model, repeat = sys.argv[1], 7
    rows = {("arrays after a prefetch", "per-thread"): [], ("arrays after a prefetch", "one"): [],
            ("first l1 scoring", "whole"): [], ("first l1 scoring", "blocked"): []}
    for _ in range(repeat):  # interleaved
        for (what, how), v in rows.items():
            v.append(fresh(ARRAYS if what.startswith("arrays") else SCORES, model, how))
    import os

    print(f"# cores {os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"median of {repeat} fresh processes each, interleaved (seconds)")
    for (what, how), v in rows.items():
        print(f"{what:26s} {how:11s} {statistics.median(v):.3f}   [{', '.join(f'{x:.3f}' for x in v)}]")


if __name__ == "__main__":
    main()
