"""Could spa.probe tell data-free obspa's plan from l1's on Magika? (issue 12: at 0.1 / 0.2 l1 keeps more held-out
binary files than the data-free default's worst seed, benchmarks/accuracy.md.)

For Magika v3.3 on its SELECTION files (generalise.magika(selection=True); never the held-out ones), seeds 0-4 and
ratios 0.1 / 0.2 / 0.3 / 0.5: spa's data-free default (criterion obspa) and l1, each scored on the selection files
(top-1 agreement with the original) and on 256 fresh samples of spa's own data-free prior (seed + spa.probe's
PROBE_SEED, as the probe draws them): the relative squared output error spa.probe ranks plans by, and the top-1
agreement. If the probe preferred l1 where l1 scores higher on the files, it could choose between the two plans.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/magika_probe_l1.py > benchmarks/magika_probe_l1.txt
"""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import numpy as np

import spa
from spa import calib
from spa.analysis import analyze
from spa.api import prepare
from spa.probe import PROBE_SEED

from generalise import magika, run_batched
b = magika(selection=True)
m = b.model
a = analyze(prepare(m)[0])
src = calib.default_source(a.view, "obspa", False)
x = b.dists["selection"]
print(f"# {b.what}; data-free source {src!r}; columns: seed ratio, then per criterion: selection agreement, probe error, probe top-1")
for seed in range(5):
    probes = calib.source_feeds(a, src, None, samples=256, seed=seed + PROBE_SEED)
    (k, v), = probes.items()
    y0 = run_batched(m, v)
    for r in (0.1, 0.2, 0.3, 0.5):
        row = []
        for crit in ("obspa", "l1"):
            p, _ = spa.prune(m, ratio=r, criterion=crit, seed=seed)
            y = run_batched(p, v)
            err = float(np.sum((y - y0) ** 2) / np.sum(y0 ** 2))
            agree = float(np.mean(y.argmax(-1) == y0.argmax(-1)))
            row.append(f"{crit} sel {b.metric(p, x):.4f} probe_err {err:.4f} probe_top1 {agree:.3f}")
        print(seed, r, " | ".join(row), flush=True)
