"""Model statistics for before/after tables: parameters, MACs per sample, file size.

MACs come from tensor shapes. A model with symbolic image or sequence sizes has no MAC count of its own: it is
counted at a size (`at`: graph input -> dims, e.g. the size verification ran at or `--input-shape`), recorded
in `ModelStats.input_shapes` and printed next to the figure. Without `at`, symbolic dims count as 1 (a sequence
model's MACs are then per token)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from .view import ModelView
from .rules import DEFAULT, RuleSet
from .rules.hooks import Shapes, prod

_NOT_WEIGHTS = {onnx.TensorProto.INT64, onnx.TensorProto.BOOL, onnx.TensorProto.STRING}


@dataclass
class ModelStats:
    params: int
    macs: int
    size_bytes: int
    nodes: int
    macs_by_op: dict[str, int] = field(default_factory=dict)
    input_shapes: dict[str, list[int]] = field(default_factory=dict)  # the input dims MACs were counted at

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def as_dict(self) -> dict:
        d = asdict(self)
        d["flops"] = self.flops
        return d


def model_stats(view: ModelView, size_bytes: int | None = None, at: dict[str, list[int]] | None = None,
          rules: RuleSet | None = None) -> ModelStats:
    """Params, MACs, size, nodes. `at`: count MACs with the graph inputs at these dims (batch 1 per sample).
    `rules`: whose MAC counts (`Rule.macs`) to use (default: spa's rules)."""
    g = view.model.graph
    # weights of any numeric type (float, quantized int8/uint8, int32 biases); int64/bool are shapes and masks
    params = sum(prod(t.dims) for t in g.initializer if t.data_type not in _NOT_WEIGHTS)
    shapes = shapes_at(view, at, rules) if at else view.shapes
    by_op: dict[str, int] = {}
    for node in g.node:
        m = node_macs(shapes, node, rules)
        if m:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + m
    size = view.model.ByteSize() if size_bytes is None else size_bytes
    return ModelStats(params, sum(by_op.values()), size, len(g.node), by_op, dict(at or {}))


def _counts_macs(node: onnx.NodeProto, rules: RuleSet | None) -> bool:
    rule = (DEFAULT if rules is None else rules).rule_for(node)
    return rule is not None and rule.counts_macs


def _mac_tensors(node: onnx.NodeProto) -> list[str]:
    return [t for t in list(node.input) + list(node.output[:1]) if t]


def shapes_at(view: ModelView, at: dict[str, list[int]], rules: RuleSet | None = None) -> Shapes:
    """Every tensor's shape with the graph inputs at `at`: ONNX shape inference with those input dims, and
    one onnxruntime run for what inference leaves unknown around MAC-bearing nodes (computed reshapes)."""
    from .view import infer_shapes, ort_options, shape_of
    from .verify import random_inputs

    inferred = infer_shapes(view.model, input_dims=at).graph
    shapes: Shapes = dict(view.shapes)
    for vi in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
        s = shape_of(vi.type)
        if s is not None and None not in s:
            shapes[vi.name] = s
    need = list(dict.fromkeys(t for n in view.model.graph.node if _counts_macs(n, rules) for t in _mac_tensors(n)
                              if t not in view.inits and None in (shapes.get(t) or (None,))))
    if need:
        try:
            import onnxruntime as ort

            m = onnx.ModelProto()
            m.CopyFrom(view.model)
            outs = {o.name for o in m.graph.output}
            m.graph.output.extend(onnx.ValueInfoProto(name=t) for t in need if t not in outs)
            so = ort_options(view.base_dir)
            so.log_severity_level = 4
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
            for t, v in zip(need, sess.run(need, random_inputs(view.model, shapes=at))):
                shapes[t] = tuple(int(d) for d in np.shape(v))
        except Exception:  # noqa: BLE001 - best effort: those nodes keep the symbolic-as-1 count
            pass
    return shapes


def node_macs(shapes: Shapes | ModelView, node: onnx.NodeProto, rules: RuleSet | None = None) -> int:
    """Multiply-accumulates of one node from the shapes of its tensors (a ModelView: its inferred shapes), as its
    rule counts them (`Rule.macs`, default rules unless `rules`); 0 for ops without a count."""
    if isinstance(shapes, ModelView):
        shapes = shapes.shapes
    rule = (DEFAULT if rules is None else rules).rule_for(node)
    try:
        return (rule.macs(node, shapes) if rule is not None else None) or 0
    except (IndexError, TypeError):  # a malformed node (missing inputs, shapes of another rank)
        return 0


def model_stats_of(model: onnx.ModelProto, size_bytes: int | None = None) -> ModelStats:
    return model_stats(ModelView.build(model), size_bytes)


def human(n: float, unit: str = "") -> str:
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suf}{unit}"
    return f"{n:.0f}{unit}"
