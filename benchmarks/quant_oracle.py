"""Quantized models from onnxruntime.quantization, pruned with `--ratio 0.25 -c l1`: does spa remove exactly the
planted dead channels, with the quantized outputs unchanged?

The tiny ResNet-18 / ResNet-50 of models/zoo_torch.py (random init) get ⌊0.25·n⌋ dead channels in every prunable
group (models/quantized.py plant_dead: every weight of the channel zero), then are quantized: QDQ and QOperator
(quant_pre_process + quantize_static, per tensor and per channel) and dynamic int8 (quantize_dynamic). For each:
groups found / prunable, channels removed vs planted, the relative change of the quantized outputs
(max |y - y_q| / max |y_q|, 0 = only dead channels went) and the zero-group oracle.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quant_oracle.py              # this checkout
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quant_oracle.py --spa DIR    # spa from another checkout (before)
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spa", default=str(ROOT), help="checkout whose spa package is measured")
    args = ap.parse_args()
    sys.path[:0] = [args.spa, str(ROOT)]  # spa from --spa, models from this checkout
    logging.disable(logging.WARNING)
    import numpy as np

    import spa
    from models import quantized as Q
    from spa.verify import random_inputs, run

    rev = subprocess.run(["git", "-C", str(Path(spa.__file__).resolve().parents[1]), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False).stdout.strip()
    print(f"# spa at {rev or args.spa}; --ratio 0.25 -c l1 on quantized models with planted dead channels")
    print(f"{'model':9} {'format':10} {'per_ch':6} {'groups':>6} {'prunable':>8} {'removed':>7} {'planted':>7} "
          f"{'change':>9} {'oracle':>8}")
    for name in ("resnet18", "resnet50"):
        dead, keep = Q.plant_dead(Q.zoo(name), 0.25, seed=1)
        for fmt in Q.FORMATS:
            for per_channel in (False, True):
                q = Q.quantize(dead, fmt, per_channel=per_channel)
                a = spa.analyze(q).analysis
                try:
                    pm, rep = spa.prune(q, ratio=0.25, criterion="l1", oracle=True)
                except Exception as e:  # noqa: BLE001 - reported in the table
                    print(f"{name:9} {fmt:10} {per_channel!s:6} {len(a.groups):6d} {len(a.prunable):8d} "
                          f"failed: {type(e).__name__}: {str(e)[:80]}")
                    continue
                f = random_inputs(q, seed=5, batch=2)
                y0, y1 = run(q, f)[0], run(pm, f)[0]
                change = float(np.abs(y0 - y1).max() / np.abs(y0).max())
                print(f"{name:9} {fmt:10} {per_channel!s:6} {len(a.groups):6d} {len(a.prunable):8d} "
                      f"{rep.plan.removed:7d} {int((~keep).sum()):7d} {change:9.2e} {rep.oracle:8.1e}", flush=True)


if __name__ == "__main__":
    main()
