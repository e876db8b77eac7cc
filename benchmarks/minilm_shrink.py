"""Does shrinking obspa's H towards its diagonal help all-MiniLM-L6-v2 (few real rows for 1536-wide MLP consumers)?

H_s = (1 - a) H + a diag(H), then obspa's usual damping (spa.calib.Consumer.hinv, patched here only). Selection
sentences (generalise.minilm(selection=True), GPL-3), ratio 0.3, seed 0, spa's defaults otherwise: calibrated
("cal": --calib on the 32 calibration sentences) and data-free ("free"). Not adopted: see benchmarks/minilm_shrink.txt.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/minilm_shrink.py cal:0,cal:0.1,cal:0.3,free:0,free:0.1,free:0.3
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import generalise as g

import spa
from spa import calib

SHRINK = {"a": 0.0}  # the share of H's off-diagonal removed, set per row


def hinv(self: calib.Consumer, damp: float) -> list[np.ndarray]:
    """Consumer.hinv with H shrunk towards its diagonal by SHRINK["a"] before the damping."""
    key = (damp, SHRINK["a"])
    if self._hinv is None or self._hinv_damp != key:
        d = float(np.mean(self.diag()))
        inv = []
        for h in self.grams:
            h = np.multiply(h, 1.0 / max(1, self.rows), dtype=np.float32)
            diag = np.diag(h).copy()
            h *= 1 - SHRINK["a"]
            h[np.diag_indices_from(h)] += SHRINK["a"] * diag + (damp * d if d > 0 else 1e-8)
            inv.append(calib.spd_inverse(h))
        self._hinv, self._hinv_damp = inv, key
    return self._hinv


def main() -> None:
    calib.Consumer.hinv = hinv
    b = g.minilm(selection=True)
    print(f"# {b.what}; ratio 0.3, seed 0; rows: mode:a cosine prune_s")
    for spec in sys.argv[1].split(","):
        mode, a = spec.split(":")
        SHRINK["a"] = float(a)
        t0 = time.perf_counter()
        pruned, _ = spa.prune(b.model, ratio=0.3, criterion="obspa", seed=0,
                              **({"calib": b.calib} if mode == "cal" else {}))
        secs = time.perf_counter() - t0
        print(f"{spec}\t" + "\t".join(f"{d} {b.metric(pruned, x):.4f}" for d, x in b.dists.items()) + f"\t{secs:.0f}",
              flush=True)


if __name__ == "__main__":
    main()
