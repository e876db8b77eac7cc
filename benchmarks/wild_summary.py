"""Prune the real third-party ONNX files of models/wild.py at ratio 0.3 (L1, local) and report origin, opset,
params and MACs before/after (at the registry's real-looking input shape), groups, every frozen reason with
its count, the zero-group oracle on real-looking inputs and the prune time (whole spa.prune: load, analyse,
plan, rewrite, verify; best of 3).

    .venv/bin/python benchmarks/wild_summary.py > benchmarks/wild_summary.txt
"""

from __future__ import annotations

import collections
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnxruntime

import spa
from models import wild

RATIO = 0.3


def main() -> None:
    print(f"# spa wild summary: ratio {RATIO}, criterion l1, local; python {platform.python_version()}, "
          f"onnxruntime {onnxruntime.__version__}, {platform.machine()}")
    print("# MACs at the input shape given; oracle = max |zeroed - pruned| / max |zeroed| on real-looking inputs "
          "(2 seeds); time = best of 3 spa.prune calls")
    rows, details = [], []
    for name, m in wild.WILD.items():
        if not wild.available(name):
            rows.append(f"{name:11s} SKIPPED: package {m.package} not installed")
            continue
        model = wild.load(name)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            pruned, rep = spa.prune(model, ratio=RATIO, criterion="l1")
            times.append(time.perf_counter() - t0)
        err = wild.oracle_error(name, model, pruned, rep.plan)
        b, a = rep.before, rep.after
        frozen = rep.groups_total - rep.groups_prunable
        rows.append(
            f"{name:11s} {m.opset:5d} {b.params:10,d} {a.params:10,d} {a.params / b.params:6.3f} "
            f"{b.macs:14,d} {a.macs:14,d} {a.macs / b.macs:6.3f} {rep.groups_total:6d} {rep.groups_prunable:8d} "
            f"{rep.groups_pruned:6d} {frozen:6d} {err:8.1e} {min(times):6.2f}"
        )
        shapes = ", ".join(f"{k} {list(s)}" for k, (s, _) in m.feeds.items())
        details.append(f"\n## {name}: {m.what}\n   origin: {m.origin}; file: {m.package} {m.relpath}; input: {shapes}")
        if m.oracle_on:
            details.append(f"   oracle measured on '{m.oracle_on[0]}': {m.oracle_on[1]}")
        an = spa.analyze(model)
        reasons = collections.Counter(g.why for g in an.analysis.groups if not g.prunable)
        no_rule = an.as_dict()["ops_without_rule"]
        details.append(f"   frozen groups ({sum(reasons.values())}), by reason:")
        for why, k in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            details.append(f"   {k:4d}  {why}")
        if no_rule:
            details.append("   ops without a rule (every tensor they touch is frozen): "
                           + ", ".join(f"{op} x{len(v)}" for op, v in sorted(no_rule.items())))
    print(f"{'model':11s} {'opset':>5s} {'params':>10s} {'after':>10s} {'ratio':>6s} {'MACs':>14s} {'after':>14s} "
          f"{'ratio':>6s} {'groups':>6s} {'prunable':>8s} {'pruned':>6s} {'frozen':>6s} {'oracle':>8s} {'time_s':>6s}")
    print("\n".join(rows))
    print("\n".join(details))


if __name__ == "__main__":
    main()
