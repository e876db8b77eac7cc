"""Transformers after onnxruntime's transformer optimiser (and a decoder written in its fused ops), pruned at
ratio 0.5 with and without the lossy hidden width (`--no-hidden`): which ops were fused, params before → after,
groups pruned/prunable/frozen, lossy groups, head groups, zero-group oracle (float32, onnxruntime), prune
seconds (incl. verification and the oracle). Random init (models/optimized.py). MACs are not listed: spa counts
Conv/Gemm/MatMul MACs, not those inside the fused Attention ops.
`--full` runs bert-base instead (the optimised BERT-base, 110M params: ~15 min on 2 cores and ~9 GB peak RSS,
export and optimiser included).
Run: OMP_NUM_THREADS=1 python benchmarks/optimized_transformers.py [--full] >> benchmarks/optimized_transformers.txt"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spa
from models import optimized as mo

CASES = [
    ("bert (Attention)", mo.optimized_bert, {"variant": "attention"}),
    ("bert (MHA)", mo.optimized_bert, {"variant": "mha"}),
    ("bert (FastGelu)", mo.optimized_bert, {"variant": "fastgelu"}),
    ("bert pooled_only", mo.optimized_bert, {"pooled_only": True}),
    ("llama (gpt2 opt)", mo.optimized_llama, {}),
] + [(f"decoder {a}", mo.decoder, {"attention": a}) for a in mo.DECODER_ATTENTION]
FULL = [
    ("bert-base (Attention)", mo.optimized_bert, {"size": "full"}),
    ("bert-base pooled_only", mo.optimized_bert, {"size": "full", "pooled_only": True}),
]


def main() -> None:
    d = Path(tempfile.mkdtemp())
    cases = FULL if "--full" in sys.argv else CASES
    print(f"{'model':<24}{'hidden':<8}{'params':>24}{'groups pr/pb/fz':>17}{'lossy':>7}{'heads':>7}{'oracle':>10}"
          f"{'s':>7}  fused")
    for i, (name, build, kw) in enumerate(cases):
        path = str(build(d / f"m{i}.onnx", **kw))
        fused = " ".join(f"{op}x{c}" for op, c in mo.fused_ops(path).items())
        for hidden in (True, False):
            t0 = time.perf_counter()
            _, r = spa.prune(path, ratio=0.5, hidden=hidden, oracle=True)
            dt = time.perf_counter() - t0
            a = spa.analyze(path, hidden=hidden).analysis
            lossy = sum(1 for g in a.prunable if g.lossy)
            heads = sum(1 for g in a.prunable if g.width > 1)
            print(f"{name:<24}{'yes' if hidden else 'no':<8}{r.before.params:>11} ->{r.after.params:>10}"
                  f"{f'{r.groups_pruned}/{r.groups_prunable}/{r.groups_total - r.groups_prunable}':>17}"
                  f"{lossy:>7}{heads:>7}{r.oracle:>10.1e}{dt:>7.2f}  {fused if hidden else ''}")


if __name__ == "__main__":
    main()
