"""Prune every zoo model (torch and Keras) at ratio 0.5 (L1, local) and report groups, params, MACs, the
zero-group oracle error and time.

    .venv/bin/python benchmarks/zoo_summary.py [--size tiny|full] [--no-keras] > benchmarks/zoo_summary_tiny.txt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import spa  # noqa: E402
from models import zoo_keras, zoo_torch  # noqa: E402


def row(name: str, path: Path, oracle: bool) -> str:
    t0 = time.perf_counter()
    _, rep = spa.prune(str(path), ratio=0.5, criterion="l1", oracle=oracle)
    dt = time.perf_counter() - t0
    b, a = rep.before, rep.after
    orc = f"{rep.oracle:.1e}" if rep.oracle is not None else "-"
    return (
        f"{name:24s} {rep.groups_total:6d} {rep.groups_prunable:8d} {rep.groups_total - rep.groups_prunable:6d} "
        f"{b.params:12,d} {a.params:12,d} {a.params / b.params:6.3f} {b.macs:14,d} {a.macs:14,d} "
        f"{a.macs / b.macs:6.3f} {orc:>8s} {dt:7.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--no-oracle", action="store_true")
    args = ap.parse_args()
    print(f"# spa prune --ratio 0.5 --criterion l1 (local); size={args.size}; oracle = max relative error")
    print(
        f"{'model':24s} {'groups':>6s} {'prunable':>8s} {'frozen':>6s} {'params':>12s} {'params_after':>12s} "
        f"{'ratio':>6s} {'MACs':>14s} {'MACs_after':>14s} {'ratio':>6s} {'oracle':>8s} {'sec':>7s}"
    )
    with tempfile.TemporaryDirectory() as d:
        for name in sorted(zoo_torch.ZOO):
            p = Path(d) / f"{name}.onnx"
            zoo_torch.export(name, p, size=args.size)
            print(row(f"torch/{name}", p, not args.no_oracle), flush=True)
        if not args.no_keras:
            for name in sorted(zoo_keras.KERAS_ZOO):
                p = Path(d) / f"{name}.onnx"
                zoo_keras.export(name, p, size=args.size)
                print(row(f"keras/{name}", p, not args.no_oracle), flush=True)


if __name__ == "__main__":
    main()
