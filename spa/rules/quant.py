"""Quantized graphs: QDQ pairs and the fused integer (QOperator) ops of onnxruntime.quantization.

QuantizeLinear / DequantizeLinear map element by element: y = saturate(round(x / scale) + zero_point) and
y = (x - zero_point) * scale. `scale` and `zero_point` are scalars (per tensor) or 1-D along `axis`
(per channel, opset ≥ 13), in which case they are sliced with that axis. Blocked quantization (opset 21
`block_size`) is not followed.

A DequantizeLinear of an integer initializer is a quantized weight (QDQ form, int8 codes → DequantizeLinear →
Conv): the codes are reported and sliced as the weight, the roles the consuming rule gives the dequantized
tensor (Conv rows "out", columns "in", bias) tag the codes, and a removed channel is made inert in the
zero-group oracle by setting its codes to the zero point. Criteria score the dequantized values
(`dequantized`), never raw codes or scales.

Fused integer ops have the channel flow of their float counterparts (rules.linear): QLinearConv and
ConvInteger are Conv, QLinearMatMul and MatMulInteger are MatMul; their weight scales and zero points are
sliced with the weight's output channels when per channel, and activation scales are per tensor (kept).
DynamicQuantizeLinear computes one scale over the whole tensor from its min and max, a range that always
includes 0: removing channels gives the same scale as zeroing them, so the zero-group oracle stays exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import onnx

from ..onnxutil import attr
from .base import QSCALE, NodeCtx, RewriteCtx, Rule, norm_axis
from .hooks import Shapes
from .linear import conv_macs, couple_conv, couple_gemm, couple_matmul, gemm_macs, matmul_macs, rewrite_group

if TYPE_CHECKING:
    from ..view import ModelView


def _uniform(zp: np.ndarray | None) -> int | None:
    """The zero point shared by every channel (0 when absent); None when per-channel values differ."""
    if zp is None or zp.size == 0:
        return 0
    v = np.unique(zp)
    return int(v[0]) if len(v) == 1 else None


def _code_of(zp: int, scale: np.ndarray | None, dtype: np.dtype) -> Callable[[float], float]:
    """A real value → its code: the zero point for 0 (exact); others via a per-tensor scale, rounded."""
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None

    def code(v: float) -> float:
        if v == 0 or scale is None or scale.size != 1 or float(scale.reshape(-1)[0]) == 0:
            c = zp
        else:
            c = zp + round(v / float(scale.reshape(-1)[0]))
        return float(c if info is None else min(max(c, info.min), info.max))

    return code


def _int_param(n: NodeCtx, name: str | None) -> bool:
    a = n.const(name) if n.is_param(name) else None
    return a is not None and a.dtype.kind in "iu"


def _weight_params(n: NodeCtx, w: str | None, zp: str | None, scales: list[str | None], axis: int) -> int:
    """Tag the quantized weight `w` (integer initializer) with its per-channel scales and zero points along
    `axis` (1-D, linked to that axis; per-tensor ones are left alone). Returns the code of a removed channel:
    the zero point all channels share, or 0 when per-channel zero points differ (they are zeroed with the
    channel's codes); then the weight's other axes freeze, since a removed input column could not be made
    inert with one code."""
    n.quantized(w)
    sw = n.shape(w)
    uz = _uniform(n.const(zp))
    for p in [zp, *scales]:
        sp = n.shape(p)
        if p is None or sp is None or w is None or sw is None:
            continue
        if len(sp) == 1 and sp[0] != 1:
            n.link(w, axis, p, 0)
            # inert: scale 1 and codes at the zero point; a shared zero point stays, differing ones become 0
            # together with the channel's codes (see _code_of)
            n.role(p, 0, QSCALE, 1.0 if p != zp else float(uz or 0))
            n.quantized(p)
    if uz is None and w is not None and sw is not None:
        for ax, d in enumerate(sw):
            if ax != axis and d != 1:
                n.freeze(w, ax, f"per-channel zero points along axis {axis} differ")
    return 0 if uz is None else uz


class QuantizeDequantize(Rule):
    ops = ("QuantizeLinear", "DequantizeLinear")

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        r = n.rank(x)
        if r is None or y is None:
            return
        if n.attr("block_size", 0):
            n.bail("blocked quantization is not followed")
            return
        axis = norm_axis(int(n.attr("axis", 1)), r) if r else 0
        if n.op == "DequantizeLinear" and _int_param(n, x):
            code = _weight_params(n, x, n.inp(2), [n.inp(1)], axis)
            n.dequantizes(y, x, _code_of(code, n.const(n.inp(1)), n.const(x).dtype))
        else:
            if n.op == "DequantizeLinear":  # fake quantization of a float weight: float W -> Q -> DQ -> Conv
                q = n.view.producer.get(x)
                src = n.view.model.graph.node[q] if q is not None else None
                if src is not None and src.op_type == "QuantizeLinear" and n.is_param(src.input[0]):
                    n.dequantizes(y, src.input[0], float)
            for i in (1, 2):
                p = n.inp(i)
                sp = n.shape(p)
                if p is None or sp is None:
                    continue
                if len(sp) == 1 and sp[0] != 1:
                    n.link(x, axis, p, 0)
                    n.role(p, 0, QSCALE, 1.0 if i == 1 else 0.0)
        n.same(x, y)


def _code_roles(n: NodeCtx, w: str | None, code: int, axes: list[int]) -> None:
    """The fused ops read the codes themselves: a removed channel's codes become the zero point."""
    if w is None or not n.is_param(w):
        return
    for ax in axes:
        n.role(w, ax, "in" if ax == axes[-1] else "out", float(code))


class QLinearConv(Rule):
    """QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B): a Conv on codes; w_scale/w_zp per
    output channel (W axis 0) or per tensor; B is int32 with scale x_scale·w_scale."""

    ops = ("QLinearConv",)

    def couple(self, n: NodeCtx) -> None:
        w = n.inp(3)
        code = _weight_params(n, w, n.inp(5), [n.inp(4)], 0)
        _code_roles(n, w, code, [0, 1])
        n.quantized(n.inp(8))
        couple_conv(n, n.inp(0), w, n.inp(8), n.out())

    def rewrite(self, n: RewriteCtx) -> None:
        rewrite_group(n, n.inp(3))

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int:
        return conv_macs(shapes, node.input[3], node.output[0])


class ConvInteger(Rule):
    """ConvInteger(x, w, x_zp, w_zp) → int32: a Conv on codes; w_zp per output channel or per tensor."""

    ops = ("ConvInteger",)

    def couple(self, n: NodeCtx) -> None:
        w = n.inp(1)
        code = _weight_params(n, w, n.inp(3), [], 0)
        _code_roles(n, w, code, [0, 1])
        couple_conv(n, n.inp(0), w, None, n.out())

    def rewrite(self, n: RewriteCtx) -> None:
        rewrite_group(n, n.inp(1))

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int:
        return conv_macs(shapes, node.input[1], node.output[0])


class QLinearMatMul(Rule):
    """QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp): a MatMul on codes; b's scale and zero
    point per output column (its last axis) or per tensor, a's per row (axis -2) or per tensor."""

    ops = ("QLinearMatMul",)

    def couple(self, n: NodeCtx) -> None:
        _quantized_matmul(n, n.inp(0), n.inp(2), [n.inp(1)], n.inp(3), n.inp(5), [n.inp(4)])

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int:
        return matmul_macs(shapes, node.input[0], node.output[0])


class MatMulInteger(Rule):
    """MatMulInteger(A, B, a_zp, b_zp) → int32: a MatMul on codes; b_zp per output column or per tensor."""

    ops = ("MatMulInteger",)

    def couple(self, n: NodeCtx) -> None:
        _quantized_matmul(n, n.inp(0), n.inp(2), [], n.inp(1), n.inp(3), [])

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int:
        return matmul_macs(shapes, node.input[0], node.output[0])


def _quantized_matmul(n: NodeCtx, a: str | None, a_zp: str | None, a_scales: list[str | None],
                      b: str | None, b_zp: str | None, b_scales: list[str | None]) -> None:
    sa, sb = n.shape(a), n.shape(b)
    if a is None or b is None or sa is None or sb is None:
        return
    for t, zp, scales, s, out_axis in ((a, a_zp, a_scales, sa, len(sa) - 2), (b, b_zp, b_scales, sb, len(sb) - 1)):
        if out_axis < 0:
            continue
        if n.is_param(t):
            code = _weight_params(n, t, zp, scales, out_axis)
            in_axis = len(s) - 1 if t == a else max(len(s) - 2, 0)
            _code_roles(n, t, code, [out_axis, in_axis])
        else:  # an activation's zero point per row (a) or column (b): sliced with that axis
            for p in [zp, *scales]:
                sp = n.shape(p)
                if p is not None and sp is not None and len(sp) == 1 and sp[0] != 1:
                    n.link(t, out_axis, p, 0)
                    n.role(p, 0, QSCALE)
    couple_matmul(n, a, b, n.out())


class DynamicQuantizeLinear(Rule):
    """y, y_scale, y_zp = DynamicQuantizeLinear(x): uint8 codes of x element by element, with one scale and zero
    point computed from min(0, min x) and max(0, max x): zeroed channels do not change them."""

    ops = ("DynamicQuantizeLinear",)

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out(0)
        if x is not None and y is not None:
            n.same(x, y)


# ---------------------------------------------------------------- onnxruntime's com.microsoft QOperator ops
class QGemm(Rule):
    """com.microsoft QGemm(A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp): Gemm on codes; B's scale and
    zero point per output column (B axis 0 with transB, else 1) or per tensor; C is an int32 bias."""

    ops = ("QGemm",)
    domain = "com.microsoft"

    def couple(self, n: NodeCtx) -> None:
        b = n.inp(3)
        out_axis = 0 if n.attr("transB", 0) else 1
        if n.is_param(b):
            code = _weight_params(n, b, n.inp(5), [n.inp(4)], out_axis)
            _code_roles(n, b, code, [out_axis, 1 - out_axis])
        n.quantized(n.inp(6))
        couple_gemm(n, n.inp(0), b, n.inp(6), n.out())

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int:
        return gemm_macs(node, shapes)


def _data_inputs(n: NodeCtx, idx: tuple[int, ...]) -> list[str] | None:
    """The data inputs at `idx`; None (the node's channels freeze) when one is a constant with channels: its
    codes would need their own zero point to be made inert."""
    xs = [x for x in (n.inp(i) for i in idx) if x is not None]
    if any(n.is_param(x) and any(d != 1 for d in n.shape(x) or ()) for x in xs):
        n.bail("a quantized constant operand is not followed")
        return None
    return xs


class QLinearBinary(Rule):
    """com.microsoft QLinearAdd / QLinearMul(A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp): element-wise
    with numpy broadcasting on dequantized values, per-tensor scales."""

    ops = ("QLinearAdd", "QLinearMul")
    domain = "com.microsoft"

    def couple(self, n: NodeCtx) -> None:
        y, sy = n.out(), n.shape(n.out())
        xs = _data_inputs(n, (0, 3))
        if y is None or sy is None or xs is None:
            return
        for x in xs:
            sx = n.shape(x)
            if sx is None:
                continue
            for j, d in enumerate(sx):
                if d != 1:
                    n.link(x, j, y, len(sy) - len(sx) + j)


class QLinearUnary(Rule):
    """com.microsoft QLinearSigmoid / QLinearLeakyRelu(X, X_scale, X_zp, Y_scale, Y_zp): element by element."""

    ops = ("QLinearSigmoid", "QLinearLeakyRelu")
    domain = "com.microsoft"

    def couple(self, n: NodeCtx) -> None:
        n.same(n.inp(0), n.out())


class QLinearPool(Rule):
    """com.microsoft QLinearGlobalAveragePool / QLinearAveragePool(X, x_scale, x_zp, y_scale, y_zp): spatial
    pooling; N and the channel axis (1, or the last with channels_last) pass through."""

    ops = ("QLinearGlobalAveragePool", "QLinearAveragePool")
    domain = "com.microsoft"

    def couple(self, n: NodeCtx) -> None:
        x, y, r = n.inp(0), n.out(), n.rank(n.inp(0))
        if x is None or y is None or r is None:
            return
        c = r - 1 if n.attr("channels_last", 0) else 1
        n.same(x, y, [(0, 0), (c, c)])


class QLinearConcat(Rule):
    """com.microsoft QLinearConcat(Y_scale, Y_zp, X1, X1_scale, X1_zp, ...): Concat along `axis` on codes
    requantized to Y's per-tensor scale: input i's channel j is output channel offset_i + j."""

    ops = ("QLinearConcat",)
    domain = "com.microsoft"

    def couple(self, n: NodeCtx) -> None:
        y, sy = n.out(), n.shape(n.out())
        if y is None or sy is None:
            return
        axis = norm_axis(int(n.attr("axis", 0)), len(sy))
        xs = _data_inputs(n, tuple(range(2, len(n.node.input), 3)))
        if xs is None:
            return
        off = 0
        for x in xs:
            sx = n.shape(x)
            if sx is None or sx[axis] is None:
                return  # offsets after this input are unknown: the rest stays frozen
            if sx[axis] > 0:
                n.link(x, axis, y, axis, np.arange(sx[axis]), off + np.arange(sx[axis]))
            n.same(x, y, [(k, k) for k in range(len(sy)) if k != axis])
            off += sx[axis]


# ------------------------------------------------------------------------------------------------ scores
_WEIGHT_INPUTS: dict[str, tuple[int, int | None, int | None, int]] = {
    # op → (weight input, scale input, zero-point input, per-channel axis of the weight: 0, or -1 = last)
    "DequantizeLinear": (0, 1, 2, 0),
    "QLinearConv": (3, 4, 5, 0),
    "ConvInteger": (1, None, 3, 0),
    "QLinearMatMul": (3, 4, 5, -1),
    "MatMulInteger": (1, None, 3, -1),
    "QGemm": (3, 4, 5, -1),  # the axis follows transB (below)
}


def _applied_scale(view: ModelView, node) -> np.ndarray | None:
    """The weight scale of a ConvInteger/MatMulInteger, applied after it as quantize_dynamic writes it:
    out → [Add int32 bias] → Cast → [Reshape] → Mul(·, S) with S = Mul(input scale, weight scale) or the weight
    scale itself, an initializer (per tensor, or 1-D per output channel). None if the chain differs."""
    nodes = view.model.graph.node
    t = node.output[0]
    for _ in range(4):
        users = view.consumers.get(t, [])
        if len(users) != 1:
            return None
        user = nodes[users[0]]
        if user.op_type in ("Cast", "Add", "Reshape"):
            t = user.output[0]
            continue
        if user.op_type != "Mul":
            return None
        other = next((i for i in user.input if i != t), None)
        if other is None:
            return None
        if other in view.inits:
            return view.array(other)
        prod = view.producer.get(other)
        if prod is None or nodes[prod].op_type != "Mul":
            return None
        weights = [view.array(i) for i in nodes[prod].input if i in view.inits]
        return weights[0] if len(weights) == 1 else None
    return None


def dequantized(view: ModelView, name: str) -> np.ndarray | None:
    """The real values of the integer initializer `name` if a node reads it as a quantized weight:
    (code − zero_point) · scale with per-channel scales and zero points broadcast along their axis. Fused
    integer ops without a scale input (ConvInteger, MatMulInteger) take the scale multiplied in after them
    (`_applied_scale`), else give code − zero_point. None if `name` is not read as a quantized weight."""
    nodes = view.model.graph.node
    for i in view.consumers.get(name, []):
        node = nodes[i]
        spec = _WEIGHT_INPUTS.get(node.op_type)
        if spec is None or node.domain not in ("", "ai.onnx", "com.microsoft"):
            continue
        wi, si, zi, axis = spec
        if wi >= len(node.input) or node.input[wi] != name:
            continue
        codes = view.array(name)
        if codes is None:
            return None
        if node.op_type == "DequantizeLinear":
            axis = attr(node, "axis", 1)
        if node.op_type == "QGemm":
            axis = 0 if attr(node, "transB", 0) else 1
        axis = norm_axis(axis, codes.ndim) if codes.ndim else 0
        out = codes.astype(np.float32)
        for k, sub in ((zi, True), (si, False)):
            p = node.input[k] if k is not None and k < len(node.input) and node.input[k] else None
            v = None if p is None else view.array(p)
            if si is None and not sub:
                v = _applied_scale(view, node)
            if v is None or (v.ndim == 1 and v.size not in (1, codes.shape[axis] if codes.ndim else 1)):
                continue
            v = v.astype(np.float32)
            if v.ndim == 1 and v.size > 1:
                v = v.reshape([-1] + [1] * (codes.ndim - 1 - axis))
            out = out - v if sub else out * v
        return out
    return None


RULES: tuple[type[Rule], ...] = (
    QuantizeDequantize, QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger, DynamicQuantizeLinear, QGemm,
    QLinearBinary, QLinearUnary, QLinearPool, QLinearConcat,
)
