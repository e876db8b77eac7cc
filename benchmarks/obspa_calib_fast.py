"""Calibrated OBSPA (`--calib`, with the sequential re-fit) on PP-OCRv4 rec: its prune time next to `l1`'s, and
the accuracy it keeps on text and fonts that neither the calibration nor any choice of settings saw.

Calibration: 32 unlabelled lines of one text (Apache-2.0 licence) in FreeSans / FreeSerif, drawn at random per
seed (seeds 0-2): what a user has at hand, not the evaluation's text or fonts. spa adds rescaled copies of each
(spa.augment, the default; `--choose augment` compares them with none) and spreads the ratio over the groups by
the OBS cost at the local plan's MACs (`allocation` energy, the default with calibration data; `--choose
allocation` compares it with local).
Choice set (settings were chosen on it: `--choose`): 64 lines of the Artistic licence in DejaVu Sans / Serif /
Mono. Held-out set (reported; never used for any choice): 64 lines of the MPL-2.0 in Liberation Sans / Serif /
Mono and FreeMono. Rendering, preprocessing (48x320, /255, -0.5, /0.5), CTC decoding and the character-accuracy
metric are benchmarks/obspa_ocr.py's.

Timing: `spa.prune` of the same in-memory model, l1 and obspa --calib alternately, 3 times each, median; both
include load, analysis, rewrite, verification and the self-check oracle, as a `spa prune` does.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/obspa_calib_fast.py > benchmarks/obspa_calib_fast.txt
    (--choose damp,rows,augment,allocation: the settings' comparison on the choice set instead, ratio 0.5 only; raw output
    of the runs that chose the defaults: benchmarks/obspa_calib_fast_choice.txt)
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from obspa_ocr import char_accuracy, charset, rec_model, render, segments

import spa

RATIOS = (0.1, 0.2, 0.3, 0.5)
SEEDS = (0, 1, 2)
N_EVAL, N_CALIB = 64, 32
FONT = "/usr/share/fonts/truetype/{}.ttf"
CALIB = ("Apache-2.0", ["freefont/FreeSans", "freefont/FreeSerif"])
CHOICE = ("Artistic", ["dejavu/DejaVuSans", "dejavu/DejaVuSerif", "dejavu/DejaVuSansMono"])
HELD_OUT = ("MPL-2.0", ["liberation/LiberationSans-Regular", "liberation/LiberationSerif-Regular",
                        "liberation/LiberationMono-Regular", "freefont/FreeMono"])


def lines(spec: tuple[str, list[str]], n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    text, fonts = spec
    segs = segments(text)
    pick = np.random.default_rng(seed).permutation(len(segs))[:n]
    return np.stack([render(segs[i], FONT.format(fonts[k % len(fonts)])) for k, i in enumerate(pick)]), [
        segs[i] for i in pick]


def timing(m, calib: dict[str, np.ndarray], reps: int = 3) -> tuple[dict[str, tuple[float, float]], dict]:
    """Median wall and CPU seconds (all threads of this process: less sensitive to other jobs on a shared
    machine) per criterion, and the median seconds of each stage of the calibrated prune (PruneReport.seconds)."""
    spa.prune(m, ratio=0.5, criterion="l1")  # warm-up: imports, onnxruntime
    t: dict[str, list[tuple[float, float]]] = {"l1": [], "obspa": []}
    stages: dict[str, list[float]] = {}
    for _ in range(reps):
        for crit, times in t.items():
            t0, c0 = time.perf_counter(), time.process_time()
            _, rep = spa.prune(m, ratio=0.5, criterion=crit, calib=calib if crit == "obspa" else None)
            times.append((time.perf_counter() - t0, time.process_time() - c0))
            for stage, sec in rep.seconds.items() if crit == "obspa" else ():
                stages.setdefault(stage, []).append(sec)
    return ({k: (float(np.median([w for w, _ in v])), float(np.median([c for _, c in v]))) for k, v in t.items()},
            {k: float(np.median(v)) for k, v in stages.items()})


def evaluate(m, chars, spec, label: str, ratios=RATIOS, **options) -> None:
    x_ev, truth = lines(spec, N_EVAL, 100)
    base = char_accuracy(m, x_ev, truth, chars)
    print(f"{label}: {len(truth)} lines of {spec[0]} in {', '.join(f.split('/')[1] for f in spec[1])}; "
          f"original character accuracy {base:.4f}")
    print(f"  {'ratio':>5s}  " + "  ".join(f"seed {s}" for s in SEEDS) + "     worst    mean  (fraction of the original)")
    for r in ratios:
        accs = []
        for seed in SEEDS:
            x_ca, _ = lines(CALIB, N_CALIB, seed)
            pruned, _ = spa.prune(m, ratio=r, criterion="obspa", calib={m.graph.input[0].name: x_ca}, **options)
            accs.append(char_accuracy(pruned, x_ev, truth, chars))
        print(f"  {r:5.1f}  " + "  ".join(f"{a:.4f}" for a in accs)
              + f"   {min(accs) / base:6.1%}  {np.mean(accs) / base:6.1%}")
        sys.stdout.flush()


def main() -> None:
    m = rec_model()
    chars = charset(m)
    print(f"PP-OCRv4 rec (rapidocr-onnxruntime), input (N, 3, 48, 320); calibration {N_CALIB} unlabelled lines of "
          f"{CALIB[0]} in {', '.join(f.split('/')[1] for f in CALIB[1])} (drawn per seed)")
    if "--choose" in sys.argv:
        obspa = importlib.import_module("spa.criteria.obspa")
        which = sys.argv[sys.argv.index("--choose") + 1].split(",") if len(sys.argv) > 2 else ["damp"]
        variants = {"damp": [("REFIT_DAMP", v) for v in (0.01, 0.1, 0.001)],
                    "rows": [("REFIT_ROWS", v) for v in (16384, 4096, 1024, 512)],
                    "augment": [("calib_augment", v) for v in (False, True)],  # prune options, not constants
                    "allocation": [("allocation", v) for v in ("local", "energy")]}
        for name, value in (v for w in which for v in variants[w]):
            if not hasattr(obspa, name):
                evaluate(m, chars, CHOICE, f"choice set, {name} {value}", ratios=(0.5,), **{name: value})
                continue
            old = getattr(obspa, name)
            setattr(obspa, name, value)
            evaluate(m, chars, CHOICE, f"choice set, {name} {value}", ratios=(0.5,))
            setattr(obspa, name, old)
        return
    x_ca, _ = lines(CALIB, N_CALIB, 0)
    t, stages = timing(m, {m.graph.input[0].name: x_ca})
    (l1, l1_cpu), (obs, obs_cpu) = t["l1"], t["obspa"]
    print(f"prune time at ratio 0.5 (median of 3, alternated): l1 {l1:.2f} s, obspa --calib {obs:.2f} s, "
          f"ratio {obs / l1:.1f}x; CPU time l1 {l1_cpu:.2f} s, obspa --calib {obs_cpu:.2f} s, "
          f"ratio {obs_cpu / l1_cpu:.1f}x")
    print("  obspa --calib stages (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    sys.stdout.flush()
    if "--time-only" not in sys.argv:  # the timing alone, e.g. at top priority on a shared machine
        evaluate(m, chars, HELD_OUT, "held-out set")


if __name__ == "__main__":
    main()
