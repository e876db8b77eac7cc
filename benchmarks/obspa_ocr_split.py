"""Where the data-free OBSPA gap on PP-OCRv4 rec comes from (ratio 0.2): the channels it chooses (the plan) or
the weight update that compensates for them? Each plan (data-free "binary" or calibrated) is applied with each
update (data-free or calibrated, per-layer OBS only, no re-fit), and, for the calibrated plan, the data-free
update is put on one consumer at a time (the others calibrated) to see which layer's update transfers worst.
Data, model and metric are benchmarks/obspa_ocr.py's.

    .venv/bin/python benchmarks/obspa_ocr_split.py > benchmarks/obspa_ocr_split.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from obspa_ocr import charset, char_accuracy, dataset, rec_model

import spa
from spa import calib as cal
from spa.analysis import analyze
from spa.api import compute_plan, prepare
from spa.criteria.obspa import compensate
from spa.plan import keep_mask
from spa.rewrite import Rewriter

SEEDS = (0, 1, 2, 3)


def main() -> None:
    m = rec_model()
    chars = charset(m)
    x_ev, truth, x_ca = dataset()
    calib = {m.graph.input[0].name: x_ca}

    def acc(model) -> float:
        return char_accuracy(model, x_ev, truth, chars)

    print(f"PP-OCRv4 rec at ratio 0.2, original {acc(m):.4f}; per-layer OBS update only (no re-fit)")
    print(f"{'seed':>4s} {'free plan+free upd':>19s} {'free plan+calib upd':>20s} {'calib plan+free upd':>20s} "
          f"{'calib plan+calib upd':>21s}")
    for seed in SEEDS:
        _, rf = spa.prune(m, ratio=0.2, criterion="obspa", calib_source="binary", seed=seed)
        _, rc = spa.prune(m, ratio=0.2, criterion="obspa", calib=calib, refit=False, seed=seed)
        cells = []
        for plan in (rf.plan, rc.plan):
            for kw in (dict(calib_source="binary", seed=seed), dict(calib=calib, refit=False)):
                cells.append(acc(spa.prune(m, criterion="obspa", plan=plan, **kw)[0]))
        print(f"{seed:4d} {cells[0]:19.4f} {cells[1]:20.4f} {cells[2]:20.4f} {cells[3]:21.4f}")
        sys.stdout.flush()

    seed = 1
    view, _ = prepare(m)
    a = analyze(view)
    sc = cal.collect(a, "calib", calib, seed=seed)
    sf = cal.collect(a, "binary", None, seed=seed)
    keep = keep_mask(a, compute_plan(a, ratio=0.2, criterion="obspa", seed=seed, data=sc))
    oc, of = compensate(a, keep, sc), compensate(a, keep, sf)

    def ev(ov) -> float:
        return acc(Rewriter(a, keep, overrides=ov).apply())

    print(f"calibrated plan (seed {seed}): calibrated update everywhere {ev(oc):.4f}, data-free everywhere "
          f"{ev(of):.4f}; the data-free update on one consumer only:")
    for key, c in sorted(sc.items(), key=lambda kv: kv[1].node):
        names = [n for n in (key[0], c.bias) if n and n in oc]
        if names:
            mix = dict(oc)
            mix.update({n: of[n] for n in names})
            print(f"  {view.model.graph.node[c.node].op_type:6s} {key[0]:18s} {str(view.shape(key[0])):18s} "
                  f"{ev(mix):.4f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
