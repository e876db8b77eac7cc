"""Can data-free obspa check its own plan? A candidate study on the SELECTION sets of benchmarks/generalise.py.

Idea: prune with several allocations (local, the OBS-cost allocation capped at 1.1x / 1.5x the ratio per group),
run each pruned model and the original on fresh samples of the same data-free prior (another seed than the one
whose statistics chose the channels), and keep the candidate whose outputs move least. If the prior's own output
error ranks the candidates as the real inputs do, spa could pick the allocation per model and ratio instead of one
fixed rule (today: energy at 1.1x up to 0.3 on float-input models, local above; 1.5x is better on the recogniser
and worse on the detector).

Prints, per model, ratio, seed and candidate: the selection metric on every selection distribution, and the proxy
errors (relative squared error of every output, mean over outputs; per sample, the 90th percentile). Nothing here
is held out: this only decides whether the idea is worth building.

    python benchmarks/self_check.py --models ocr_rec,ocr_det --ratios 0.1,0.2,0.3,0.5 --seeds 0,1,2
    python benchmarks/self_check.py --summary RUN1.txt RUN2.txt ...   (the table at the end of self_check.txt)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generalise as g  # noqa: E402

from spa import priors  # noqa: E402
from spa.api import prepare  # noqa: E402

CANDIDATES = ("obspa-strokes", "obspa-strokes-energy11", "obspa-strokes-energy15")
PROBE_SEED = 10_000  # far from the seeds whose statistics choose the channels
PROBES = 32


def outputs(m, feeds: dict[str, np.ndarray], batch: int = 8) -> list[np.ndarray]:
    s = g.session(m, optimize=True, threads=1)
    n = len(next(iter(feeds.values())))
    parts = [s.run(None, {k: v[i:i + batch] for k, v in feeds.items()}) for i in range(0, n, batch)]
    return [np.concatenate([p[j] for p in parts]).astype(np.float64) for j in range(len(parts[0]))]


def proxy(ref: list[np.ndarray], out: list[np.ndarray]) -> tuple[float, float]:
    """Relative squared error, mean over outputs: over the whole probe set, and the 90th percentile per sample."""
    whole, p90 = [], []
    for a, b in zip(ref, out):
        whole.append(float(np.sum((a - b) ** 2) / max(np.sum(a ** 2), 1e-30)))
        ax = tuple(range(1, a.ndim))
        per = np.sum((a - b) ** 2, axis=ax) / np.maximum(np.sum(a ** 2, axis=ax), 1e-30)
        p90.append(float(np.quantile(per, 0.9)))
    return float(np.mean(whole)), float(np.mean(p90))


def summary(paths: list[str]) -> None:
    """Worst / mean over seeds and distributions per model, ratio and candidate, and for "probe": in each seed the
    candidate of least proxy error (rows with the same model, ratio, seed and method: the last one counts)."""
    rows: dict[tuple, tuple[float, list[float]]] = {}
    for p in paths:
        for line in Path(p).read_text().splitlines():
            f = line.split("\t")
            if f[0] == "S":
                rows[(f[1], float(f[2]), int(f[3]), f[4])] = (float(f[5]), [float(v) for v in f[9:]])
    keys = sorted({(m, r) for m, r, _, _ in rows})
    print("# summary: worst / mean of the selection metric over seeds and distributions; probe = per seed the "
          "candidate of least proxy error (which one: its cap per seed)")
    for m, r in keys:
        seeds = sorted({s for mm, rr, s, _ in rows if (mm, rr) == (m, r)})
        methods = sorted({k for mm, rr, _, k in rows if (mm, rr) == (m, r)})
        cands = [k for k in methods if all((m, r, s, k) in rows for s in seeds)]
        cells = {k: [v for s in seeds for v in rows[(m, r, s, k)][1]] for k in cands}
        picks = [min(("obspa-strokes-energy11", "obspa-strokes-energy15"), key=lambda k: rows[(m, r, s, k)][0])
                 for s in seeds] if {"obspa-strokes-energy11", "obspa-strokes-energy15"} <= set(cands) else []
        if picks:
            cells["probe"] = [v for s, k in zip(seeds, picks) for v in rows[(m, r, s, k)][1]]
        text = "  ".join(f"{k.removeprefix('obspa-strokes-') or 'local'} {min(v):.3f} / {np.mean(v):.3f}"
                         for k, v in cells.items())
        which = ",".join(k[-2:] for k in picks)
        print(f"{m}\t{r}\tseeds {seeds[0]}-{seeds[-1]}\t{text}" + (f"  (probe picked {which})" if picks else ""))


def main() -> None:
    if sys.argv[1:2] == ["--summary"]:
        summary(sys.argv[2:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="ocr_rec,ocr_det")
    ap.add_argument("--ratios", default="0.1,0.2,0.3,0.5")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    args = ap.parse_args()
    for name in args.models.split(","):
        b = g.ocr_rec(selection=True, numbers_too=True) if name == "ocr_rec" else g.BENCHES[name](selection=True)
        view, _ = prepare(b.model)
        if name.startswith("ocr"):  # the runs of benchmarks/self_check.txt's first block
            source, probe = "strokes", priors.strokes_inputs(view, PROBES, PROBE_SEED)
        else:  # spa's data-free default source for the model, as spa.probe draws it (one seed for every prune)
            from spa import calib
            from spa.analysis import analyze

            a = analyze(view)
            source = calib.default_source(view, "obspa", False)
            probe = calib.source_feeds(a, source, None, samples=PROBES, seed=PROBE_SEED)
        ref = outputs(b.model, probe)
        print(f"# {b.name}: {b.what}; proxy = {PROBES} {source!r} samples at seed {PROBE_SEED}", flush=True)
        print("# S\tmodel\tratio\tseed\tmethod\tproxy\tproxy_p90\tparams_kept\tprune_s\t" +
              "\t".join(b.dists), flush=True)
        for r in [float(v) for v in args.ratios.split(",")]:
            for seed in [int(v) for v in args.seeds.split(",")]:
                for method in args.candidates.split(","):
                    t0 = time.perf_counter()
                    p, rep = g.prune_with(b.model, method, r, seed, None)
                    secs = time.perf_counter() - t0
                    e, e90 = proxy(ref, outputs(p, probe))
                    scores = [b.metric(p, d) for d in b.dists.values()]
                    print(f"S\t{b.name}\t{r}\t{seed}\t{method}\t{e:.5f}\t{e90:.5f}\t"
                          f"{rep.after.params / rep.before.params:.4f}\t{secs:.1f}\t" +
                          "\t".join(f"{v:.4f}" for v in scores), flush=True)


if __name__ == "__main__":
    main()
