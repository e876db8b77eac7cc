"""Transformer zoo (tiny, random init) pruned at ratio 0.5 with and without the lossy hidden width: params,
MACs (symbolic dims count as 1: per sample, and per token for bert/llama, whose sequence is dynamic), groups
pruned/prunable/frozen, lossy groups, zero-group oracle, prune seconds (incl. verification and the oracle).
Run: python benchmarks/transformers_summary.py > benchmarks/transformers_summary.txt"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spa  # noqa: E402
from models import zoo_transformers as zt  # noqa: E402

CASES = [("vit", False), ("vit", True), ("vit_sep", False), ("vit_sep", True), ("mha", True), ("swin", False),
         ("swin", True), ("convnext", False), ("convnext", True), ("bert", False), ("bert", True),
         ("llama_onesmask", False), ("llama", True)]


def main() -> None:
    d = Path(tempfile.mkdtemp())
    print(f"{'model':<16}{'exporter':<9}{'hidden':<8}{'params':>22}{'MACs':>24}{'groups pr/pb/fz':>17}"
          f"{'lossy':>7}{'oracle':>10}{'s':>6}")
    for name, dynamo in CASES:
        try:
            path = zt.export(name, d / f"{name}_{dynamo}.onnx", dynamo=dynamo)
        except Exception as e:  # exporter failures are listed, not hidden
            print(f"{name:<16}{'dynamo' if dynamo else 'legacy':<9}export failed: {str(e).splitlines()[0][:80]}")
            continue
        for hidden in (True, False):
            t0 = time.perf_counter()
            _, r = spa.prune(str(path), ratio=0.5, hidden=hidden, oracle=True)
            dt = time.perf_counter() - t0
            a = spa.analyze(str(path), hidden=hidden).analysis
            lossy = sum(1 for g in a.prunable if g.lossy)
            print(f"{name:<16}{'dynamo' if dynamo else 'legacy':<9}{'yes' if hidden else 'no':<8}"
                  f"{r.before.params:>10} ->{r.after.params:>9}{r.before.macs:>12} ->{r.after.macs:>10}"
                  f"{f'{r.groups_pruned}/{r.groups_prunable}/{r.groups_total - r.groups_prunable}':>17}"
                  f"{lossy:>7}{r.oracle:>10.1e}{dt:>6.2f}")


if __name__ == "__main__":
    main()
