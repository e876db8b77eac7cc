"""Constant folding of shape chains: Shape → Gather → Add/Div/... → Concat evaluated from the static shapes.

Exporters compute Slice ends, Split sizes or Reshape targets from the shapes of activations (torch's legacy
`chunk`, Keras' dynamic reshapes). When every dim they read is static, the value is known: the analysis uses
it to follow channels through the Reshape/Slice, and the rewriter writes it as a constant wherever the shapes
it was computed from change. Unknown (symbolic) dims are NaN while folding; a value with a NaN is not folded.

One small function per op in `FOLDERS`: (node, input values, input dtype) -> (value, dtype). To fold another
op, add its function there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from .onnxutil import attr

Value = tuple[np.ndarray, np.dtype]  # float64 values (NaN: unknown) and the dtype the tensor really has
Folder = Callable[[onnx.NodeProto, list[Value | None]], Value | None]

_SMALL = 64  # initializers up to this many elements take part (shape constants, not weights)


def _as_index(v: np.ndarray) -> np.ndarray:
    """Shape-arithmetic values as int64 indices, huge sentinels (±INT64_MAX as float) clamped to ±2**62."""
    v = np.asarray(v, dtype=np.float64)
    if np.isnan(v).any():
        raise ValueError("unknown index")  # the caller does not fold this node
    return np.clip(v, -(2.0**62), 2.0**62).astype(np.int64)


def _axes(node: onnx.NodeProto, ins: list[Value | None]) -> list[int] | None:
    """Unsqueeze/Squeeze axes: an attribute before opset 13, the second input after."""
    if len(node.input) < 2:
        return attr(node, "axes")
    return ins[1][0].astype(np.int64).tolist()


def _identity(node, ins):
    return ins[0]


def _cast(node, ins):
    a = ins[0][0]
    dt = onnx.helper.tensor_dtype_to_np_dtype(attr(node, "to"))
    return (np.trunc(a) if np.issubdtype(dt, np.integer) else a), np.dtype(dt)


def _gather(node, ins):
    (a, dt), idx = ins[0], ins[1][0].astype(np.int64)
    return np.take(a, idx, axis=int(attr(node, "axis", 0))), dt


def _unsqueeze(node, ins):
    (v, dt), axes = ins[0], _axes(node, ins)
    for ax in sorted(int(x) + (v.ndim + len(axes) if int(x) < 0 else 0) for x in axes):
        v = np.expand_dims(v, ax)
    return v, dt


def _squeeze(node, ins):
    (a, dt), axes = ins[0], _axes(node, ins)
    return (np.squeeze(a, axis=tuple(int(x) for x in axes)) if axes else np.squeeze(a)), dt


def _concat(node, ins):
    return np.concatenate([np.atleast_1d(x[0]) for x in ins], axis=int(attr(node, "axis", 0))), ins[0][1]


def _slice(node, ins):
    if len(node.input) < 3:
        return None
    a, dt = ins[0]
    # values are float64 here (NaN = unknown): INT64_MAX-style ends must be clamped before the cast
    st, en = _as_index(ins[1][0]), _as_index(ins[2][0])
    axes = _as_index(ins[3][0]) if len(ins) > 3 and ins[3] else np.arange(len(st))
    steps = _as_index(ins[4][0]) if len(ins) > 4 and ins[4] else np.ones(len(st), np.int64)
    sl = [slice(None)] * a.ndim
    for s0, e0, ax, sp in zip(st, en, axes, steps):
        sl[int(ax)] = slice(int(s0), int(e0), int(sp))
    return a[tuple(sl)], dt


def _binary(fn) -> Folder:
    def fold(node, ins):
        (a, dt), b = ins[0], ins[1][0]
        v = fn(a, b)
        if node.op_type == "Div" and np.issubdtype(dt, np.integer):
            v = np.trunc(v)  # integer division of shape values
        return v, dt

    return fold


def _unary(fn) -> Folder:
    return lambda node, ins: (fn(ins[0][0]), ins[0][1])


def _reduce(fn) -> Folder:
    def fold(node, ins):
        if len(node.input) > 1 or attr(node, "axes") is not None:
            return None  # only the whole-tensor reduction (the element count of a shape)
        a, dt = ins[0]
        v = fn(a)
        return (np.reshape(v, [1] * a.ndim) if attr(node, "keepdims", 1) else v), dt

    return fold


FOLDERS: dict[str, Folder] = {
    "Identity": _identity,
    "Cast": _cast,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Slice": _slice,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(np.divide),
    "Max": _binary(np.maximum),
    "Min": _binary(np.minimum),
    "Floor": _unary(np.floor),
    "Ceil": _unary(np.ceil),
    "Neg": _unary(np.negative),
    "Abs": _unary(np.abs),
    "ReduceProd": _reduce(np.prod),
    "ReduceSum": _reduce(np.sum),
}


def _shape_value(node: onnx.NodeProto, s: tuple) -> Value:
    """Shape (with start/end) or Size of a tensor of shape `s` (None dims: NaN)."""
    if node.op_type == "Size":
        return np.array(float(np.prod([np.nan if d is None else d for d in s]))), np.dtype(np.int64)
    r = len(s)
    lo, hi = int(attr(node, "start", 0)), int(attr(node, "end", r))
    lo, hi = max(0, min(r, lo + r if lo < 0 else lo)), max(0, min(r, hi + r if hi < 0 else hi))
    return np.array([np.nan if d is None else float(d) for d in s[lo:hi]]), np.dtype(np.int64)


def _numel(t: onnx.TensorProto) -> int:
    return int(np.prod([int(d) for d in t.dims], dtype=np.int64)) if t.dims else 1


def fold_shape_values(model: onnx.ModelProto, shapes: dict, inits: dict) -> dict[str, np.ndarray]:
    """The tensors whose value follows from the static shapes (see the module docstring), in their dtypes."""
    vals: dict[str, Value] = {}

    def get(name: str) -> Value | None:
        if name in vals:
            return vals[name]
        t = inits.get(name)
        if t is not None and t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32,
                                             onnx.TensorProto.FLOAT) and _numel(t) <= _SMALL:
            a = numpy_helper.to_array(t)
            vals[name] = (a.astype(np.float64), a.dtype)
            return vals[name]
        return None

    for node in model.graph.node:
        op = node.op_type
        if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
            continue
        try:
            if op in ("Shape", "Size"):
                s = shapes.get(node.input[0])
                if s is not None:
                    vals[node.output[0]] = _shape_value(node, s)
                continue
            fold = FOLDERS.get(op)
            if fold is None:
                continue
            ins = [get(i) if i else None for i in node.input]
            if not ins or ins[0] is None or any(i and x is None for i, x in zip(node.input, ins)):
                continue
            got = fold(node, ins)
            if got is not None:
                vals[node.output[0]] = (np.asarray(got[0], dtype=np.float64), got[1])
        except Exception:  # noqa: BLE001 - anything unusual: just not folded
            continue
    return {name: v.astype(dt) for name, (v, dt) in vals.items() if name not in inits and not np.isnan(v).any()}
