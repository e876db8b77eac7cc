"""Whole-process `spa prune` time vs Torch-Pruning's in-memory prune of the same model, side by side.

    .venv/bin/python benchmarks/prune_time.py [--models resnet50 ...] [--repeat 5] > benchmarks/prune_time.txt

spa: wall time of `spa prune model.onnx -o out.onnx --ratio 0.5 --criterion l1` as a fresh process
(interpreter start, imports, load, analysis, plan, rewrite, onnx.checker + onnxruntime verification, write).
Torch-Pruning 1.6.1: MagnitudePruner(L1, ratio 0.5, classifier ignored) construction (dependency graph) +
step(), in memory, model already built. Medians over --repeat runs; machines are noisy, read the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tp_time(name: str, repeat: int) -> tuple[float, int, int]:
    import torch
    import torch_pruning as tp

    from models import zoo_torch

    times = []
    for _ in range(repeat):
        model = zoo_torch.build(name, "full")
        x = zoo_torch.example_input(name, "full")
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1:]
        t0 = time.perf_counter()
        pruner = tp.pruner.MagnitudePruner(
            model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5, ignored_layers=head
        )
        pruner.step()
        times.append(time.perf_counter() - t0)
    macs, params = tp.utils.count_ops_and_params(model, x)
    return statistics.median(times), int(macs), int(params)


def spa_time(onnx_path: Path, repeat: int) -> tuple[float, str]:
    spa = str(Path(sys.executable).parent / "spa")
    times, out = [], ""
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = subprocess.run(
                [spa, "prune", str(onnx_path), "-o", f"{d}/out.onnx", "--ratio", "0.5", "--criterion", "l1", "--json"],
                capture_output=True,
                text=True,
                check=True,
            )
            times.append(time.perf_counter() - t0)
            out = r.stdout
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50"])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import json

    import torch

    from models import zoo_torch

    print(f"# cpu cores: {os.cpu_count()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.models:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / f"{name}.onnx"
            zoo_torch.export(name, p, size="full", opset=17)
            t_spa, js = spa_time(p, args.repeat)
            rep = json.loads(js)
            t_tp, tp_macs, tp_params = tp_time(name, args.repeat)
        print(f"\n## {name} (full size, opset 17, legacy torch exporter), ratio 0.5, L1, local")
        print(f"spa whole process (median of {args.repeat}): {t_spa:.3f} s   stages in-process: {rep['seconds']}")
        print(f"torch-pruning in-memory (median of {args.repeat}): {t_tp:.3f} s")
        print(f"ratio spa/tp: {t_spa / t_tp:.2f}")
        print(f"spa params {rep['before']['params']} -> {rep['after']['params']}, MACs {rep['before']['macs']} -> {rep['after']['macs']}")
        print(f"tp  params -> {tp_params}, MACs -> {tp_macs}")
        print(f"spa groups {rep['groups']}")


if __name__ == "__main__":
    main()
