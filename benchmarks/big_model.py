"""A model with > 2 GB of external data pruned by `spa prune` as a separate process: file size, wall time,
peak RSS of the spa process (ru_maxrss of the child, and /usr/bin/time -v), pruned size, and onnxruntime
running the output (in another process, its own peak RSS too).

The model (models/big_mlp.py: d=2048, f=8192, 21 layers, 704M float32 parameters, ~2.8 GB) is generated with
numpy into a temporary directory and deleted afterwards; nothing is downloaded or committed.

    .venv/bin/python benchmarks/big_model.py > benchmarks/big_model.txt
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUN_ORT = r"""
import resource, sys, time
import numpy as np, onnxruntime as ort
t = time.perf_counter()
so = ort.SessionOptions(); so.log_severity_level = 3
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((4, int(sys.argv[2]))).astype(np.float32)
y = s.run(None, {"x": x})[0]
print(f"output shape {list(y.shape)}, finite {bool(np.isfinite(y).all())}, load+run {time.perf_counter() - t:.1f} s,"
      f" peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
"""


def sizes(model: Path) -> int:
    """The model file plus every external data file it refers to (spa writes `<out>.<16 hex>.data`)."""
    from spa.io_safety import model_files

    return sum(f.stat().st_size for f in model_files(model))


def timed_child(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, float, str]:
    """Run `cmd` under /usr/bin/time -v; returns (result, wall s, ru_maxrss GiB of the child, time -v's line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over waited-for children so far
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    tv = f"{int(m.group(1)) / 2**20:.2f} GiB" if m else "n/a"
    return r, wall, max(after, before) / 2**20, tv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--f", type=int, default=8192)
    ap.add_argument("--layers", type=int, default=21)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--dir", default=None, help="where to generate (default: a temporary directory)")
    args = ap.parse_args()
    import onnx
    import onnxruntime

    from models import big_mlp

    print(f"# spa on a generated MLP stack with external data: cpu cores {os.cpu_count()}, onnx {onnx.__version__},"
          f" onnxruntime {onnxruntime.__version__}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="spa-big-", dir=args.dir) as d:
        d = Path(d)
        src, out = d / "big.onnx", d / "out" / "big_pruned.onnx"
        out.parent.mkdir()
        t = time.perf_counter()
        params = big_mlp.build(src, d=args.d, f=args.f, layers=args.layers)
        size = sizes(src)
        print(f"model: d={args.d} f={args.f} layers={args.layers}: {params:,} params, file + external data"
              f" {size / 2**30:.2f} GiB ({size:,} bytes), generated in {time.perf_counter() - t:.0f} s")
        cmd = [sys.executable, "-m", "spa", "prune", str(src), "-o", str(out), "--ratio", str(args.ratio), "--json"]
        r, wall, rss, tv = timed_child(cmd)
        if r.returncode != 0:
            print(f"spa prune FAILED (exit {r.returncode}): {r.stderr.strip()[-2000:]}")
            return
        js = json.loads(r.stdout)
        psize = sizes(out)
        print(f"\nspa prune --ratio {args.ratio} (whole process, verification on, default settings):")
        print(f"  wall time        {wall:.1f} s   stages in-process: {js['seconds']}")
        print(f"  peak RSS         {rss:.2f} GiB (ru_maxrss of the child)  /usr/bin/time -v: {tv}")
        print(f"  peak RSS / model {rss * 2**30 / size:.2f}x")
        print(f"  params           {js['before']['params']:,} -> {js['after']['params']:,}")
        print(f"  pruned size      {psize / 2**30:.2f} GiB ({psize:,} bytes; {psize / size:.2f}x),"
              f" files {sorted(p.name for p in out.parent.iterdir())}")
        m = onnx.load(out, load_external_data=False)
        n_ext = sum(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
        print(f"  output           {n_ext} / {len(m.graph.initializer)} initializers in external data,"
              f" model file {out.stat().st_size:,} bytes")
        r2 = subprocess.run([sys.executable, "-c", RUN_ORT, str(out), str(args.d)], capture_output=True, text=True,
                            check=False)
        print(f"\nonnxruntime on the pruned file (separate process): {(r2.stdout + r2.stderr).strip()}")
    print(f"\n# generated files deleted; load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
