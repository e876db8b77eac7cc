"""Which default for grouped (non-depthwise) convolutions: in-group positions or whole groups?

On the tiny ResNeXt (4 groups of 16..128 channels) and RegNetY (group width 8) of models/zoo_torch.py, random
init, TorchScript export, side by side in one run:

1. planted dead in-group positions: ⌊0.25·n⌋ units of every prunable group zeroed everywhere (found in
   positions mode, so in the grouped convs the dead channels sit at the same positions of every group), then
   `--ratio 0.25 -c l1` in each mode: the relative output change against the planted model (0 = exactly the
   dead channels were removed);
2. the reverse control: whole conv groups planted dead (found in groups mode), pruned in each mode;
3. l1 fidelity without planting: ratio 0.25 / 0.5, relative L2 error of the logits to the unpruned model over
   16 random inputs, with params and MACs kept, over 3 init seeds (mean and worst); at equal ratio the modes
   remove different amounts, so a last table compares them at the same parameter budget (--target-params).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/group_conv.py > benchmarks/group_conv.txt
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

import spa
from models import quantized as Q
from models import zoo_torch
from spa.verify import random_inputs, run

MODES = ("positions", "groups")
MODELS = ("resnext", "regnet")
SEEDS = (0, 1, 2)


def rel_change(m, pm, batch: int = 16) -> float:
    f = random_inputs(m, seed=7, batch=batch)
    y0, y1 = run(m, f)[0].astype(np.float64), run(pm, f)[0].astype(np.float64)
    return float(np.linalg.norm(y0 - y1) / np.linalg.norm(y0))


def seeded_models(name: str) -> list:
    """The zoo model `name` built with every init seed of SEEDS (zoo_torch.SEED restored to 0)."""
    models = []
    for seed in SEEDS:
        zoo_torch.SEED = seed
        models.append(Q.zoo(name))
    zoo_torch.SEED = 0
    return models


def main() -> None:
    logging.disable(logging.WARNING)
    print("# grouped convs: positions (same in-group positions from every group) vs groups (whole groups)")
    print("# 1. planted dead units (found in the PLANT mode), --ratio 0.25 -c l1 in each PRUNE mode; "
          "change = |y - y_planted| / |y_planted| (L2)")
    print(f"{'model':8} {'plant':9} {'prune':9} {'removed':>7} {'change':>9} {'oracle':>8}")
    for name in MODELS:
        m = Q.zoo(name)
        for plant in MODES:
            dead, _ = Q.plant_dead(m, 0.25, group_conv=plant)
            for mode in MODES:
                pm, rep = spa.prune(dead, ratio=0.25, criterion="l1", oracle=True, group_conv=mode)
                print(f"{name:8} {plant:9} {mode:9} {rep.plan.removed:7d} {rel_change(dead, pm):9.2e} "
                      f"{rep.oracle:8.1e}", flush=True)
    print()
    print("# 2. l1 fidelity, no planting: rel. L2 error of the logits to the unpruned model (16 inputs), "
          f"init seeds {SEEDS}: mean / worst; params and MACs kept (seed 0)")
    print(f"{'model':8} {'ratio':>5} {'mode':9} {'err mean':>9} {'err worst':>9} {'params':>7} {'MACs':>7} "
          f"{'groups':>6}")
    for name in MODELS:
        models = seeded_models(name)
        for ratio in (0.25, 0.5):
            for mode in MODES:
                errs, kept = [], None
                for m in models:
                    pm, rep = spa.prune(m, ratio=ratio, criterion="l1", group_conv=mode)
                    errs.append(rel_change(m, pm))
                    if kept is None:
                        kept = (rep.after.params / rep.before.params, rep.after.macs / rep.before.macs,
                                rep.groups_prunable)
                print(f"{name:8} {ratio:5.2f} {mode:9} {np.mean(errs):9.3f} {max(errs):9.3f} {kept[0]:7.3f} "
                      f"{kept[1]:7.3f} {kept[2]:6d}", flush=True)
    print()
    print("# 3. the same at matched size: --target-params F (global l1 ranking, ratio bisected), same seeds")
    print(f"{'model':8} {'target':>6} {'mode':9} {'err mean':>9} {'err worst':>9} {'params':>7} {'MACs':>7}")
    for name in MODELS:
        models = seeded_models(name)
        for frac in (0.6, 0.35):
            for mode in MODES:
                errs, kept = [], None
                for m in models:
                    pm, rep = spa.prune(m, target_params=frac, criterion="l1", round_to=1, group_conv=mode)
                    errs.append(rel_change(m, pm))
                    if kept is None:
                        kept = (rep.after.params / rep.before.params, rep.after.macs / rep.before.macs)
                print(f"{name:8} {frac:6.2f} {mode:9} {np.mean(errs):9.3f} {max(errs):9.3f} {kept[0]:7.3f} "
                      f"{kept[1]:7.3f}", flush=True)


if __name__ == "__main__":
    main()
