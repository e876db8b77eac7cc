"""How long OBSPA (data-free, the default source) takes on ResNet-50 (models/zoo_torch, full size, 224×224) against L1,
measured in the same run, whole spa.prune call (load, analysis, statistics, scoring, OBS update, rewrite,
verification), ratio 0.3. The machine's load average is printed with the numbers: the 2 cores are shared.

    .venv/bin/python benchmarks/obspa_resnet50_time.py > benchmarks/obspa_resnet50_time.txt
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spa
from models import zoo_torch
from spa import calib


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        p = zoo_torch.export("resnet50", Path(d) / "resnet50.onnx", size="full")
        print(f"ResNet-50 (zoo_torch full, legacy export, BatchNorm folded); cpu count {os.cpu_count()}; "
              f"statistics: {calib.DEFAULT_SOURCE}, {calib.DATA_FREE_SAMPLES} samples, batch 8, ≤{calib.ROWS_TOTAL} rows per "
              "layer")
        for crit in ("l1", "obspa", "l1", "obspa"):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            _, rep = spa.prune(str(p), ratio=0.3, criterion=crit)
            total = time.perf_counter() - t0
            stages = ", ".join(f"{k} {v:.2f}" for k, v in rep.seconds.items() if k != "total")
            print(f"{crit:6s} total {total:6.2f} s  ({stages})  load avg before {load:.1f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
