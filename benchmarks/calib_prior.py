"""Does mixing samples of the data-free image prior into the calibration images guard what they do not show?

On the held-out OCR set (benchmarks/generalise_ocr_rec.txt) calibrated obspa kept 0.60 of PP-OCRv4 rec's accuracy
on number-only lines at 0.3 (its calibration lines hold no numbers) where data-free obspa kept 0.82. This runs
the question on the SELECTION set of benchmarks/generalise.py only (its six OCR distributions: selection,
sel-lowcontrast, sel-small, sel-jpeg, sel-skew, sel-texture), with 32 unlabelled calibration lines drawn from three
of them (COVERED: other lines of the same licence texts, fonts and conditions, none evaluated), so that the other
three are distributions the calibration lines miss, and scores every method on all six.

Methods (spa.prune, criterion obspa, `calib` = the 32 lines):
- calib: `--calib-source calib`, spa's calibrated default before this branch (the re-fit, energy cap 1.1, rescaled
  copies);
- prior<N>-both: `--calib-source calib-prior --calib-samples N`: the lines, their rescaled copies and N images of the
  "strokes" prior in the statistics and in the re-fit (spa.calib.CALIB_PRIOR_REFIT "both");
- prior<N>-real: the same statistics, the re-fit on the lines and their copies only (CALIB_PRIOR_REFIT "real");
- datafree: obspa without --calib (the data-free default), for reference.

Rows as generalise.py's (R model dist method ratio seed metric params_kept macs_kept prune_s), then a summary per
method and ratio as shares of the original's accuracy: worst and mean over the six distributions (and the seeds),
and the means over the covered and uncovered ones.
Usage: python benchmarks/calib_prior.py --methods calib,prior32-both --ratios 0.2,0.3,0.5 --seeds 0
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import generalise as g

import spa
from spa import calib as spa_calib

COVERED = ("sel-lowcontrast", "sel-jpeg", "sel-texture")  # the calibration lines' distributions
N_CALIB = 32


def calib_lines(evaluated: dict[str, tuple[np.ndarray, list[str]]]) -> np.ndarray:
    """32 lines of the COVERED distributions (11, 11, 10): their licence texts, fonts and conditions, none of the
    evaluated texts."""
    rng = np.random.default_rng(11)
    out = []
    for k, d in enumerate(COVERED):
        text, fonts, opts = g.OCR_WIDE[d]
        seen = set(evaluated[d][1])
        segs = [s for s in g.licence_segments(f"/usr/share/common-licenses/{text}") if s not in seen]
        n = N_CALIB // len(COVERED) + (1 if k < N_CALIB % len(COVERED) else 0)
        for j, i in enumerate(rng.permutation(len(segs))[:n]):
            out.append(g.wide_line(segs[i], fonts[j % 2], rng, **opts))
    return np.stack(out)


def prune(m, method: str, ratio: float, seed: int, calib: dict[str, np.ndarray]):
    if method == "datafree":
        return spa.prune(m, ratio=ratio, criterion="obspa", seed=seed)
    if method == "calib":
        return spa.prune(m, ratio=ratio, criterion="obspa", calib=calib, calib_source="calib", seed=seed)
    kind, _, refit = method.partition("-")
    before = spa_calib.CALIB_PRIOR_REFIT
    spa_calib.CALIB_PRIOR_REFIT = refit or before
    try:
        return spa.prune(m, ratio=ratio, criterion="obspa", calib=calib, calib_source="calib-prior", seed=seed,
                         calib_samples=int(kind.removeprefix("prior")))
    finally:
        spa_calib.CALIB_PRIOR_REFIT = before


def timing(m, calib: dict[str, np.ndarray], methods: list[str], ratio: float = 0.5, reps: int = 3) -> None:
    """Median wall seconds of each prune (load, analysis, rewrite, verification and oracle, as `spa prune` does),
    `l1` first, the methods alternated `reps` times in one process, and each one's ratio to l1's."""
    spa.prune(m, ratio=ratio, criterion="l1")  # warm-up: imports, onnxruntime
    t: dict[str, list[float]] = defaultdict(list)
    for _ in range(reps):
        for method in ["l1", *methods]:
            t0 = time.perf_counter()
            if method == "l1":
                spa.prune(m, ratio=ratio, criterion="l1")
            else:
                prune(m, method, ratio, 0, calib)
            t[method].append(time.perf_counter() - t0)
    l1 = float(np.median(t["l1"]))
    print(f"# timing at {ratio}, median of {reps} alternated (wall s, x l1): " + ", ".join(
        f"{k} {np.median(v):.2f} s ({np.median(v) / l1:.1f}x)" for k, v in t.items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="calib,prior32-both,prior64-both,prior32-real,prior64-real")
    ap.add_argument("--ratios", default="0.2,0.3,0.5")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--timing", action="store_true", help="prune times of l1 and --methods instead")
    ap.add_argument("--timing-ratio", type=float, default=0.5, help="the ratio --timing prunes at")
    ap.add_argument("--summarise", default="", help="comma-separated earlier outputs: their rows' summary, no run")
    ap.add_argument("--det", action="store_true",
                    help="PP-OCRv4 det instead: its selection pages (sel-pages), calibrated on generalise.ocr_det's 32 "
                         "pages (Apache-2.0 lines, half of them noisy; not evaluated)")
    ap.add_argument("--numbers", action="store_true",
                    help="also score sel-numbers (digit strings, generalise.ocr_rec numbers_too; uncovered)")
    args = ap.parse_args()
    if args.summarise:
        summarise_files(args.summarise.split(","))
        return
    if args.det:
        b = g.ocr_det(selection=True)
        calib = b.calib
    else:
        b = g.ocr_rec(selection=True, numbers_too=args.numbers)
        calib = {b.model.graph.input[0].name: calib_lines(b.dists)}
    if args.timing:
        timing(b.model, calib, args.methods.split(","), ratio=args.timing_ratio)
        return
    print(f"# {b.what}", flush=True)
    if args.det:
        print(f"# calibration: generalise.ocr_det's {N_CALIB} pages (not evaluated)", flush=True)
    else:
        print(f"# calibration: {N_CALIB} lines of {', '.join(COVERED)} (not evaluated); uncovered: "
              f"{', '.join(d for d in b.dists if d not in COVERED)}", flush=True)
    print("# R\tmodel\tdist\tmethod\tratio\tseed\tmetric\tparams_kept\tmacs_kept\tprune_s", flush=True)
    scores: dict[tuple[str, float], dict[int, dict[str, float]]] = defaultdict(dict)
    secs_of: dict[tuple[str, float], list[float]] = defaultdict(list)
    for seed in (int(s) for s in args.seeds.split(",")):
        for r in (float(v) for v in args.ratios.split(",")):
            for method in args.methods.split(","):
                t0 = time.perf_counter()
                p, rep = prune(b.model, method, r, seed, calib)
                secs = time.perf_counter() - t0
                pk, mk = rep.after.params / rep.before.params, rep.after.macs / rep.before.macs
                got = {}
                for d, data in b.dists.items():
                    got[d] = b.metric(p, data)
                    print(f"R\t{b.name}\t{d}\t{method}\t{r}\t{seed}\t{got[d]:.4f}\t{pk:.4f}\t{mk:.4f}\t{secs:.2f}",
                          flush=True)
                scores[(method, r)][seed] = got
                secs_of[(method, r)].append(secs)
    summarise(scores, secs_of, {d: b.metric(b.model, data) for d, data in b.dists.items()})


def summarise(scores: dict[tuple[str, float], dict[int, dict[str, float]]], secs_of: dict[tuple[str, float], list[float]],
              base: dict[str, float]) -> None:
    """The summary lines (`# `) per method and ratio, as shares of the original's accuracy `base`."""
    print("# summary, as shares of the original's accuracy: method ratio seeds | worst mean (over the 6 distributions "
          "and the seeds) | covered mean | uncovered mean | worst seed's mean | prune_s mean")
    for (method, r), by_seed in sorted(scores.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        by_seed = {s: {d: v / base[d] for d, v in got.items()} for s, got in by_seed.items()}
        allv = [v for got in by_seed.values() for v in got.values()]
        cov = [got[d] for got in by_seed.values() for d in got if d in COVERED]
        unc = [got[d] for got in by_seed.values() for d in got if d not in COVERED]
        worst_seed = min(np.mean(list(got.values())) for got in by_seed.values())
        print(f"# {method}\t{r}\t{len(by_seed)}\t{min(allv):.4f}\t{np.mean(allv):.4f}\t{np.mean(cov):.4f}\t"
              f"{np.mean(unc):.4f}\t{worst_seed:.4f}\t{np.mean(secs_of[(method, r)]):.1f}")


def summarise_files(paths: list[str]) -> None:
    """The summary of the rows of earlier outputs together (the original's accuracy from their header line)."""
    scores: dict[tuple[str, float], dict[int, dict[str, float]]] = defaultdict(dict)
    secs_of: dict[tuple[str, float], dict[int, float]] = defaultdict(dict)
    base: dict[str, float] = {}
    for line in (x for p in paths for x in Path(p).read_text().splitlines()):
        if "original " in line and line.startswith("# PP-OCRv4"):
            base = {d: float(v) for d, v in (kv.split() for kv in line.split("original ", 1)[1].split(", "))}
        f = line.split("\t")
        if f[0] == "R":
            scores[(f[3], float(f[4]))].setdefault(int(f[5]), {})[f[2]] = float(f[6])
            secs_of[(f[3], float(f[4]))][int(f[5])] = float(f[9])
    summarise(scores, {k: list(v.values()) for k, v in secs_of.items()}, base)

if __name__ == "__main__":
    main()
