"""Real recurrent models before and after the LSTM/GRU/RNN rule (spa/rules/recurrent.py), side by side in one
run: "before" is the same spa with that rule unregistered (the recurrent ops then have no rule, as on main
before it), "after" with it. Per model: params and MACs before/after pruning at ratio 0.3 (L1, local), groups,
the zero-group oracle (onnxruntime, spa's random inputs) and every frozen reason with its count.

- ddddocr common.onnx: PyTorch 1.9 CRNN captcha recogniser (Conv encoder, bidirectional LSTM of 512, Gemm over
  8210 characters). Input fixed to [1, 1, 64, 160] (ddddocr resizes to height 64). Its declared output
  [1, seqlen] is wrong (it returns [T, 1, 8210], issue 13 point 5): the declaration is replaced by a symbolic
  rank-3 one so that verification compares what the model really returns.
- silero_vad (models/wild.py): its LSTM lives inside If branches, which spa does not follow: unchanged.

    pip install ddddocr   # ships common.onnx
    .venv/bin/python benchmarks/recurrent_wild.py [path/to/common.onnx] > benchmarks/recurrent_wild.txt
"""

from __future__ import annotations

import collections
import importlib.util
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx
import onnxruntime

import spa
from models import wild
from spa.rules import DEFAULT

RATIO = 0.3
WITHOUT_RECURRENT = DEFAULT.without("LSTM", "GRU", "RNN")


def ddddocr(path: str | None) -> onnx.ModelProto | None:
    if path is None:
        spec = importlib.util.find_spec("ddddocr")
        if spec is None or not spec.submodule_search_locations:
            return None
        path = str(Path(next(iter(spec.submodule_search_locations))) / "common.onnx")
    m = onnx.load(path)
    m.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 160
    dims = m.graph.output[0].type.tensor_type.shape.dim
    del dims[:]
    for sym in ("T", "N", "C"):
        dims.add().dim_param = sym
    return m


def measure(name: str, model: onnx.ModelProto, label: str, rules=None) -> tuple[str, list[str]]:
    _, rep = spa.prune(model, ratio=RATIO, criterion="l1", oracle=True, rules=rules)
    b, a = rep.before, rep.after
    frozen = rep.groups_total - rep.groups_prunable
    row = (f"{name:11s} {label:6s} {b.params:10,d} {a.params:10,d} {a.params / b.params:6.3f} {b.macs:12,d} "
           f"{a.macs:12,d} {a.macs / b.macs:6.3f} {rep.groups_total:6d} {rep.groups_prunable:8d} "
           f"{rep.groups_pruned:6d} {frozen:6d} {rep.oracle:8.1e}")
    an = spa.analyze(model, rules=rules)
    reasons = collections.Counter(g.why for g in an.analysis.groups if not g.prunable)
    lines = [f"   {label}: frozen groups ({sum(reasons.values())}), by reason:"]
    lines += [f"   {k:4d}  {why}" for why, k in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    no_rule = an.as_dict()["ops_without_rule"]
    if no_rule:
        lines.append("   ops without a rule: " + ", ".join(f"{op} x{len(v)}" for op, v in sorted(no_rule.items())))
    return row, lines


def main() -> None:
    print(f"# spa recurrent rule on real files: ratio {RATIO}, criterion l1, local; python "
          f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}, {platform.machine()}")
    print("# before = LSTM/GRU/RNN rule left out; after = with it. MACs count LSTM/GRU/RNN steps (T·B·dirs·"
          "gate rows·(input + hidden)) in both; oracle = max |zeroed - pruned| / max |zeroed|")
    models = {}
    m = ddddocr(sys.argv[1] if len(sys.argv) > 1 else None)
    if m is not None:
        models["ddddocr"] = m
    if wild.available("silero_vad"):
        models["silero_vad"] = wild.load("silero_vad")
    rows, details = [], []
    for name, model in models.items():
        details.append(f"\n## {name}")
        row, lines = measure(name, model, "before", WITHOUT_RECURRENT)
        rows.append(row)
        details += lines
        row, lines = measure(name, model, "after")
        rows.append(row)
        details += lines
    print(f"{'model':11s} {'rule':6s} {'params':>10s} {'after':>10s} {'ratio':>6s} {'MACs':>12s} {'after':>12s} "
          f"{'ratio':>6s} {'groups':>6s} {'prunable':>8s} {'pruned':>6s} {'frozen':>6s} {'oracle':>8s}")
    print("\n".join(rows))
    print("\n".join(details))


if __name__ == "__main__":
    main()
