"""Model statistics for before/after tables: parameters, MACs (per sample, from inferred shapes; every symbolic
dim counts as 1, so a sequence model's MACs are per token), file size."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from .graph import ModelView

_NOT_WEIGHTS = {onnx.TensorProto.INT64, onnx.TensorProto.BOOL, onnx.TensorProto.STRING}


@dataclass
class Stats:
    params: int
    macs: int
    size_bytes: int
    nodes: int
    macs_by_op: dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def as_dict(self) -> dict:
        d = asdict(self)
        d["flops"] = self.flops
        return d


def _prod(xs) -> int:
    return int(np.prod([int(x) for x in xs], dtype=np.int64)) if len(xs) else 1


def _dims(view: ModelView, name: str) -> list[int] | None:
    s = view.shape(name)
    if s is None:
        return None
    return [1 if d is None else int(d) for d in s]  # symbolic dims (batch) count as 1: per-sample MACs


def stats(view: ModelView, size_bytes: int | None = None) -> Stats:
    g = view.model.graph
    # weights of any numeric type (float, quantized int8/uint8, int32 biases); int64/bool are shapes and masks
    params = sum(_prod(t.dims) for t in g.initializer if t.data_type not in _NOT_WEIGHTS)
    by_op: dict[str, int] = {}
    for node in g.node:
        m = node_macs(view, node)
        if m:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + m
    size = view.model.ByteSize() if size_bytes is None else size_bytes
    return Stats(params, sum(by_op.values()), size, len(g.node), by_op)


def node_macs(view: ModelView, node: onnx.NodeProto) -> int:
    op = node.op_type
    try:
        if op == "Conv":
            w, y = _dims(view, node.input[1]), _dims(view, node.output[0])
            return 0 if w is None or y is None else _prod(y) * _prod(w[1:])
        if op == "ConvTranspose":
            w, x = _dims(view, node.input[1]), _dims(view, node.input[0])
            if w is None or x is None:
                return 0
            return _prod(x) * _prod(w[1:])
        if op == "Gemm":
            y = _dims(view, node.output[0])
            a = _dims(view, node.input[0])
            if y is None or a is None:
                return 0
            k = a[0] if any(at.name == "transA" and at.i for at in node.attribute) else a[1]
            return _prod(y) * k
        if op == "MatMul":
            y, a = _dims(view, node.output[0]), _dims(view, node.input[0])
            return 0 if y is None or a is None else _prod(y) * a[-1]
        if op in ("LSTM", "GRU", "RNN"):  # every step (T·B, either layout), direction and gate row: W·x + R·h
            x, w, r = (_dims(view, node.input[k]) for k in range(3))
            return 0 if x is None or w is None or r is None else x[0] * x[1] * w[0] * w[1] * (w[2] + r[2])
    except (IndexError, TypeError):
        return 0
    return 0


def stats_of(model: onnx.ModelProto, size_bytes: int | None = None) -> Stats:
    return stats(ModelView.build(model), size_bytes)


def human(n: float, unit: str = "") -> str:
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suf}{unit}"
    return f"{n:.0f}{unit}"
