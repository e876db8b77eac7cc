"""Cheap knobs of calibrated OBSPA on PP-OCRv4 rec, on benchmarks/obspa_calib_fast.py's CHOICE set only (never its
held-out set): one setting changed per row, seeds 0-2, per-seed character accuracy and the worst / mean as a fraction
of the original's. A knob may replace a default only if it beats the default's worst seed at 0.5 without losing at
0.2 (raw rows: benchmarks/obspa_calib_fast_choice.txt).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/obspa_calib_fast_knobs.py base,cap1.2 0.5

Rows: "base" (today's defaults); "capC" = spa.sensitivity.REFIT_ENERGY_CAP C; "refitdampD" = obspa.REFIT_DAMP D (the
re-fit's damping); "dampD" = obspa.DAMP D (H's damping for the scoring, the energy allocation and the per-layer
update); "dampDscore" / "dampDupdate" = D for the scoring (and allocation) only / for the per-layer update only,
0.01 for the other; "scalesA/B" = spa.augment.SCALES (A, B); "calibalone" = the calibration lines without the prior's
images (spa.calib.IMAGE_CALIB_SOURCE "calib", the --calib default before branch calprior); "roundsR" = spa.calib.ROUNDS R
(obspa's channel choice in R rounds, the OBS update between them; its first rows, "greedy8" / "greedy16", came from a
scratch copy of the same algorithm monkeypatched in); "refitcopiesK" = spa.augment.REFIT_COPIES K (the re-fit on the
calibration lines and K of their rescaled copies; the statistics keep both copies).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import obspa_calib_fast as bench
from obspa_ocr import char_accuracy, charset, rec_model

import spa
import spa.augment as aug
import spa.calib as spa_calib
import spa.sensitivity as sens

ob = importlib.import_module("spa.criteria.obspa")  # the package re-exports the obspa function
_compensate = ob.compensate


def split_damp(update: float):
    """obspa.compensate with DAMP `update` while it runs (the scoring keeps the DAMP set beside it)."""
    def compensate(*args, **kwargs):
        old, ob.DAMP = ob.DAMP, update
        try:
            return _compensate(*args, **kwargs)
        finally:
            ob.DAMP = old
    return compensate


VARIANTS = {
    "base": [],
    **{f"cap{c}": [(sens, "REFIT_ENERGY_CAP", c)] for c in (1.05, 1.2, 1.3)},
    **{f"refitdamp{d}": [(ob, "REFIT_DAMP", d)] for d in (0.005, 0.02)},
    **{f"damp{d}": [(ob, "DAMP", d)] for d in (0.005, 0.02, 0.03, 0.04, 0.05)},
    "damp0.02+refitdamp0.005": [(ob, "DAMP", 0.02), (ob, "REFIT_DAMP", 0.005)],
    "damp0.03+refitdamp0.005": [(ob, "DAMP", 0.03), (ob, "REFIT_DAMP", 0.005)],
    "damp0.03score": [(ob, "DAMP", 0.03), (ob, "compensate", split_damp(0.01))],
    "damp0.03update": [(ob, "DAMP", 0.01), (ob, "compensate", split_damp(0.03))],
    "scales0.7/1.3": [(aug, "SCALES", (0.7, 1.3))],
    "calibalone": [(spa_calib, "IMAGE_CALIB_SOURCE", "calib")],  # the calibration lines alone (before calprior)
    **{f"rounds{r}": [(spa_calib, "ROUNDS", r)] for r in (1, 8, 16)},  # obspa's choice in R rounds (spa.calib.ROUNDS)
    **{f"refitcopies{k}": [(aug, "REFIT_COPIES", k)] for k in (0, 1)},  # the re-fit on the lines and k of their copies
}


def main() -> None:
    m = rec_model()
    chars = charset(m)
    x_ev, truth = bench.lines(bench.CHOICE, bench.N_EVAL, 100)
    base = char_accuracy(m, x_ev, truth, chars)
    ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    for name in sys.argv[1].split(","):
        old = [(mod, k, getattr(mod, k)) for mod, k, _ in VARIANTS[name]]
        for mod, k, v in VARIANTS[name]:
            setattr(mod, k, v)
        aug.with_rescaled_copies.__defaults__ = (aug.SCALES,)  # its default was bound at import
        accs = []
        for seed in bench.SEEDS:
            x_ca, _ = bench.lines(bench.CALIB, bench.N_CALIB, seed)
            pruned, _ = spa.prune(m, ratio=ratio, criterion="obspa", calib={m.graph.input[0].name: x_ca})
            accs.append(char_accuracy(pruned, x_ev, truth, chars))
        print(f"{name:40s} {ratio:.1f} " + " ".join(f"{a:.4f}" for a in accs)
              + f"  worst {min(accs) / base:6.1%} mean {np.mean(accs) / base:6.1%}", flush=True)
        for mod, k, v in old:
            setattr(mod, k, v)
        aug.with_rescaled_copies.__defaults__ = (aug.SCALES,)


if __name__ == "__main__":
    main()
