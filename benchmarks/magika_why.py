"""Why data-free obspa loses to l1 on Magika v3.3 (benchmarks/accuracy.md): which of OBSPA's two parts (the channel
choice, the weight update) costs agreement, and in which group. On the Magika SELECTION files of
benchmarks/generalise.py (under /usr/lib, /usr/include, /etc; never the held-out ones), at 0.2 and 0.3, seeds 0-1
of the default source: plans mixing the l1 and obspa choices of Magika's two prunable groups (the 257-value byte
alphabet of the one-hot, consumed by the first Dense; the Dense's 64 channels, consumed by the Conv), each with and
without obspa's update; then l1's and obspa's plans with the update of one consumer only (the Dense that reads the
one-hot, the Conv that reads the Dense's channels). Output: benchmarks/magika_why.txt.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/magika_why.py > benchmarks/magika_why.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generalise import magika

import spa
from spa.analysis import analyze
from spa.api import compute_plan, prepare
from spa.calib import collect
from spa.criteria.obspa import compensate
from spa.plan import Plan, keep_mask
from spa.rewrite import Rewriter


def main() -> None:
    b = magika(selection=True)
    view, _ = prepare(b.model)
    a = analyze(view)
    (_, x), = b.dists.items()
    print("# agreement with the original on the Magika selection files; alphabet = the 257-value one-hot group")
    for ratio in (0.2, 0.3):
        for seed in (0, 1):
            stats = collect(a, "binary", None, seed=seed)
            plans = {"l1": compute_plan(a, ratio=ratio, criterion="l1"),
                     "obspa": compute_plan(a, ratio=ratio, criterion="obspa", data=stats, seed=seed)}
            for c0 in plans:
                for c1 in plans:
                    groups = [plans[c0].groups[i] if g.size == 257 else plans[c1].groups[i]
                              for i, g in enumerate(plans["l1"].groups)]
                    for update in (True, False):
                        p, _ = spa.prune(b.model, plan=Plan(groups, "obspa", ratio, "local"), criterion="obspa",
                                         seed=seed, compensate=update)
                        print(f"ratio {ratio} seed {seed} alphabet {c0} dense64 {c1} update {update}: "
                              f"{b.metric(p, x):.4f}", flush=True)
    print("# the update of one consumer only")
    for ratio in (0.2, 0.3):
        for seed in (0, 1):
            stats = collect(a, "binary", None, seed=seed)
            for crit in ("l1", "obspa"):
                keep = keep_mask(a, compute_plan(a, ratio=ratio, criterion=crit, seed=seed,
                                                 data=stats if crit == "obspa" else None))
                for which in ("none", "conv", "dense", "both"):
                    sub = {k: c for k, c in stats.items()
                           if which == "both" or (which == "conv") == (c.op == "Conv") and which != "none"}
                    p = Rewriter(a, keep, overrides=compensate(a, keep, sub) if sub else {}).apply()
                    print(f"ratio {ratio} seed {seed} plan {crit} update {which}: {b.metric(p, x):.4f}", flush=True)


if __name__ == "__main__":
    main()
