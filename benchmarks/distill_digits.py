"""Choosing distillation's temperature (the default of `spa finetune --teacher --temperature`) on one small model,
so that the OCR and detector benchmarks (distill_ocr.py, distill_det.py) only report it.

Model: benchmarks/anytime_digits.py's CNN trained on scikit-learn's digits (its output "logits" is named like
class scores, so distillation uses the KL), exported by torch (BatchNorm folded into the convs), pruned by `l1`
at 0.5 and 0.7 (local).  Distillation data: the training images WITHOUT labels; accuracy on the held-out test
split.  Rows: KL at temperatures 1, 2, 4, 8 and the relative MSE on the logits (`--output-loss logits=mse`),
10 epochs, lr 3e-3, batch 64, seeds 0-2 (sample order): worst and mean.  The labelled fine-tune (cross-entropy
on the true labels, same schedule) is the reference.

    .venv/bin/python benchmarks/distill_digits.py > benchmarks/distill_digits.txt
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from anytime_digits import EPOCHS, DigitsCNN, accuracy, data, export, prune_to, train

from spa.finetune import finetune

SEEDS, FT = (0, 1, 2), {"epochs": 10, "lr": 3e-3, "batch": 64}


def main() -> None:
    torch.manual_seed(0)
    xtr, xte, ytr, yte = data()
    d = Path(tempfile.mkdtemp(prefix="distill_digits_"))
    base = export(train(DigitsCNN(), xtr, ytr, EPOCHS), d / "base.onnx")
    acc0 = accuracy(base, xte, yte)
    print(f"digits CNN: {len(xtr)} training images (labels unused by distillation), {len(xte)} test; original test "
          f"accuracy {acc0:.4f}; fine-tune {FT}, seeds {SEEDS}")
    rows = [(f"KL T={t:g}", {"temperature": t}) for t in (1.0, 2.0, 4.0, 8.0)]
    rows.append(("relative MSE on the logits", {"output_loss": {"logits": "mse"}}))
    print(f"{'row':30s}" + "".join(f"{'r=' + str(r) + ' worst':>13s}{'mean':>8s}" for r in (0.5, 0.7)) + "   s/run")
    pruned = {}
    for r in (0.5, 0.7):
        pruned[r] = d / f"p{r}.onnx"
        prune_to(base, pruned[r], r)
    print(f"{'pruned only':30s}" + "".join(f"{accuracy(pruned[r], xte, yte):13.4f}{'':8s}" for r in (0.5, 0.7)))
    for label, kw in [*rows, ("labelled fine-tune (reference)", None)]:
        cells, secs = [], []
        for r in (0.5, 0.7):
            accs = []
            for s in SEEDS:
                t0 = time.perf_counter()
                out = d / f"o{r}_{s}.onnx"
                if kw is None:
                    finetune(pruned[r], {"input": xtr, "y": ytr}, out, seed=s, **FT)
                else:
                    finetune(pruned[r], {"input": xtr}, out, teacher=base, seed=s, **FT, **kw)
                secs.append(time.perf_counter() - t0)
                accs.append(accuracy(out, xte, yte))
            cells.append(f"{min(accs):13.4f}{np.mean(accs):8.4f}")
        print(f"{label:30s}" + "".join(cells) + f"{np.mean(secs):8.1f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
