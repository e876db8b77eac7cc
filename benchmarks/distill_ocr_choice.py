"""How the distillation settings of benchmarks/distill_ocr.py were chosen: short runs scored on the VALIDATION
sets only (never on the held-out lines).

One configuration per process (PP-OCRv4 rec pruned at 0.5 by data-free obspa, distilled in-process with
spa.finetune.finetune on 512 unlabelled lines); prints the character accuracy relative to the original on
distill_ocr's two validation sets (GPL-3 lines in the distillation's DejaVu fonts, "val"; LGPL-2.1/Artistic/BSD
lines in faces neither distilled on nor held out, "val-unseen"), with the wall and CPU seconds and the load.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill_ocr_choice.py --tag e0 --epochs 4 [--lr 2e-3]
        [--augment all|LIST] [--T 2] [--fonts dejavu|wide]   >> benchmarks/distill_ocr_choice.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from distill_ocr import N_EVAL, TRAIN_FONTS, TRAIN_TEXTS, VALID_FONTS, VALID_TEXTS, WIDE_FONTS, lines
from obspa_ocr import char_accuracy, charset, rec_model

import spa
from spa.finetune import finetune


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", default="")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--augment", default=None)
    ap.add_argument("--T", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--fonts", choices=("dejavu", "wide"), default="dejavu")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="distill_choice_"))
    orig = rec_model()
    onnx.save(orig, str(d / "orig.onnx"))
    pruned, _ = spa.prune(orig, ratio=0.5, criterion="obspa")
    onnx.save(pruned, str(d / "pruned.onnx"))
    x_tr, _ = lines(TRAIN_TEXTS, WIDE_FONTS if a.fonts == "wide" else TRAIN_FONTS, 512, seed=1)
    x_val, t_val = lines(["GPL-3"], TRAIN_FONTS, N_EVAL, seed=2)
    x_v2, t_v2 = lines(VALID_TEXTS, VALID_FONTS, N_EVAL, seed=4)
    chars, name = charset(orig), orig.graph.input[0].name

    def acc(m) -> tuple[float, float]:
        return char_accuracy(m, x_val, list(t_val), chars), char_accuracy(m, x_v2, list(t_v2), chars)

    b = acc(orig)
    c0, t0, l0 = time.process_time(), time.perf_counter(), os.getloadavg()[0]
    finetune(d / "pruned.onnx", {name: x_tr}, d / "out.onnx", epochs=a.epochs, lr=a.lr, batch=a.batch,
             teacher=d / "orig.onnx", temperature=a.T, augment=a.augment,
             progress=lambda e, n, v, s: print(f"  epoch {e}/{n} loss {v:.4g} {s:.0f}s", flush=True))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = acc(onnx.load(str(d / "out.onnx")))
    print(f"RESULT {a.tag}: ep {a.epochs} lr {a.lr} T {a.T} aug {a.augment} fonts {a.fonts} | val {s[0] / b[0]:.1%} "
          f"val-unseen {s[1] / b[1]:.1%} (orig {b[0]:.4f} {b[1]:.4f}) | wall {wall:.0f}s cpu {cpu:.0f}s load "
          f"{l0:.1f}->{os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
