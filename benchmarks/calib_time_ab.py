"""Calibrated OBSPA's prune time on PP-OCRv4 rec at two commits, side by side in one run: a speed change measured
as a ratio against the code before it, on the same (shared, noisy) machine at the same time.

Each commit is checked out in a temporary git worktree. Fresh processes alternate between the two (A, B, A, B, ...);
each process prunes `--prunes` times (after a warm-up l1 prune): an l1 prune, then the calibrated obspa prune at 0.5
with 32 lines (benchmarks/obspa_calib_fast.py's calibration, seed 0), both through spa.prune as a `spa prune` does.
Printed per commit: the median seconds of each stage (PruneReport.seconds) and of the l1 prune, over all its prunes,
and the median over its prunes of obspa's total / the l1 prune just before it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calib_time_ab.py 9259a53 HEAD [--rounds 4] [--prunes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {root!r} + "/benchmarks")
from obspa_calib_fast import CALIB, lines
from obspa_ocr import rec_model
import spa
m = rec_model()
x, _ = lines(CALIB, 32, 0)
calib = {{m.graph.input[0].name: x}}
spa.prune(m, ratio=0.5, criterion="l1")
out = []
for _ in range({prunes}):
    t = time.perf_counter()
    spa.prune(m, ratio=0.5, criterion="l1")
    l1 = time.perf_counter() - t
    _, rep = spa.prune(m, ratio=0.5, criterion="obspa", calib=calib)
    out.append(dict(rep.seconds, l1=l1))
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--prunes", type=int, default=2)
    args = ap.parse_args()
    revs = {r: subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", r], check=True, capture_output=True,
                              text=True).stdout.strip() for r in (args.a, args.b)}
    runs: dict[str, list[dict]] = {r: [] for r in revs.values()}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for rev in revs.values():
            trees[rev] = Path(tmp, rev)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(trees[rev]), rev],
                           check=True)
        try:
            for _ in range(args.rounds):
                for rev, tree in trees.items():
                    code = CHILD.format(root=str(tree), prunes=args.prunes)
                    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
                    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                         env=env, cwd=tree)
                    runs[rev].extend(json.loads(res.stdout.strip().splitlines()[-1]))
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"PP-OCRv4 rec, obspa --calib (32 lines) at 0.5 against l1; fresh processes alternating {args.rounds} "
          f"rounds x {args.prunes} prunes each; medians")
    for rev, rs in runs.items():
        stages = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k not in ("l1", "total")}
        total, l1 = statistics.median(r["total"] for r in rs), statistics.median(r["l1"] for r in rs)
        ratio = statistics.median(r["total"] / r["l1"] for r in rs)
        print(f"{rev}: {len(rs)} prunes: total {total:.2f} s, l1 {l1:.2f} s, obspa / l1 {ratio:.1f}x; stages "
              + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))


if __name__ == "__main__":
    main()
