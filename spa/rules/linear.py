"""Layers that mix channels with a weight: Conv, ConvTranspose, Gemm, MatMul.

These are where channels are born (weight rows, role "out") and consumed (weight columns, role "in").
Grouped convolutions are pruned by in-group positions (the same positions removed from every group, the
`group` attribute stays; Torch-Pruning's way) or, with group_conv="groups", in whole blocks (input block g with
output block g; `group` shrinks); depthwise convolutions per channel (with a channel multiplier, per input
channel together with its outputs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from ..onnxutil import attr
from .base import BIAS, IN, OUT, NodeCtx, RewriteCtx, Rule
from .hooks import ConsumerSpec, Shapes, dims, prod

if TYPE_CHECKING:
    from ..view import ModelView, Shape


def _grouped_links(n: NodeCtx, x: str, xa: int, y: str, ya: int, c_in: int, c_out: int, g: int) -> None:
    """Input block b (c_in/g channels) and output block b (c_out/g channels) are one unit."""
    bi, bo = c_in // g, c_out // g
    if bi == 1 and bo == 1:
        n.link(x, xa, y, ya)
        return
    # every input channel of block b ↔ the first output channel of block b; outputs of a block together
    n.link(x, xa, y, ya, np.arange(c_in), (np.arange(c_in) // bi) * bo)
    if bo > 1:
        n.link(y, ya, y, ya, np.arange(c_out), (np.arange(c_out) // bo) * bo)


def _same_positions(n: NodeCtx, t: str, axis: int, c: int, block: int) -> None:
    """Channel k*block + p of every block k is one unit (in-group position p): pruning keeps the block count."""
    if block < c:
        n.link(t, axis, t, axis, np.arange(c), np.arange(c) % block)


def in_group_positions(n: NodeCtx, g: int, c_in: int) -> bool:
    """A grouped conv (1 < g < c_in channels in) is pruned by in-group positions in "positions" mode; depthwise
    convs (one input channel per group) always per channel with their outputs (whole groups)."""
    return g > 1 and c_in // g > 1 and n.group_conv == "positions"


def couple_conv(n: NodeCtx, x: str | None, w: str | None, b: str | None, y: str | None,
                transpose: bool = False) -> None:
    """Conv (W is (M, C/G, k...)) or ConvTranspose (W is (C, M/G, k...)) channel flow, shared with the
    quantized convolutions (QLinearConv, ConvInteger).

    group == 1: X axis 1 ↔ W's input axis (in), Y axis 1 ↔ W's output axis ↔ B (out).
    group > 1, "positions" mode: input channel k·C/G + p of every group k ↔ W input index p (for a Conv) or
    W row k·C/G + p (ConvTranspose), likewise for the outputs: the same in-group positions are removed from
    every group and `group` stays. "groups" mode (and depthwise convs): input block k ↔ output block k ↔ W rows of
    block k, pruned in whole blocks (`group` shrinks)."""
    g = int(n.attr("group", 1))
    sx, sw, sy = n.shape(x), n.shape(w), n.shape(y)
    if x is None or w is None or y is None or sx is None or sw is None or (transpose and sy is None):
        return
    c_in, m = sx[1], (sy[1] if transpose else sw[0])
    w_in, w_out = (0, 1) if transpose else (1, 0)
    if g > 1 and (c_in is None or m is None or c_in % g or m % g):
        return
    if g == 1:
        n.link(x, 1, w, w_in)
        n.role(w, w_in, IN)
        n.link(y, 1, w, w_out)
        n.role(w, w_out, OUT)
    elif in_group_positions(n, g, c_in):
        bi, bo = c_in // g, m // g
        if transpose:  # W rows follow the input channels, W axis 1 is the in-group output position
            n.link(x, 1, w, 0)
            n.role(w, 0, IN)
            _same_positions(n, x, 1, c_in, bi)
            n.link(y, 1, w, 1, np.arange(m), np.arange(m) % bo)
            n.role(w, 1, OUT)
        else:
            n.link(x, 1, w, 1, np.arange(c_in), np.arange(c_in) % bi)
            n.role(w, 1, IN)
            n.link(y, 1, w, 0)
            n.role(w, 0, OUT)
            _same_positions(n, y, 1, m, bo)
    else:
        _grouped_links(n, x, 1, y, 1, c_in, m, g)
        if transpose:
            n.link(x, 1, w, 0)
        else:
            n.link(y, 1, w, 0)
        n.role(w, 0, OUT)
    if b is not None:
        n.link(y, 1, b, 0)
        n.role(b, 0, BIAS)


def rewrite_group(n: RewriteCtx, w: str | None) -> None:
    """In whole-group mode W axis 0 is pruned in whole group blocks (Conv: output blocks, ConvTranspose: input
    blocks), so the new group count is the number of blocks kept. In-group positions keep the count."""
    g = int(n.attr("group", 1))
    kept = n.kept(w, 0)
    sw = n.shape(w)
    if g <= 1 or kept is None or sw is None:
        return
    c_in = g * sw[1] if n.op != "ConvTranspose" else sw[0]
    if n.group_conv == "positions" and c_in // g > 1:
        return
    n.set_attr("group", g * len(kept) // sw[0])


class Conv(Rule):
    """Y[n, m] = sum_c W[m, c] * X[n, g(m)*C/G + c] (+ B[m]); W is (M, C/G, k...), B is (M,). See couple_conv."""

    ops = ("Conv",)

    def couple(self, n: NodeCtx) -> None:
        couple_conv(n, n.inp(0), n.inp(1), n.inp(2), n.out())

    def rewrite(self, n: RewriteCtx) -> None:
        rewrite_group(n, n.inp(1))

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int:
        return conv_macs(shapes, node.input[1], node.output[0])

    def consumer(self, node: onnx.NodeProto, view: ModelView) -> ConsumerSpec | None:
        """Ungrouped, explicitly padded convs: im2col columns (input channel × kernel position)."""
        fw = float_weight(node, view)
        if fw is None or int(attr(node, "group", 1)) != 1 or len(fw[1]) < 3:
            return None
        w, ws = fw
        if attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or view.shape(node.input[0]) is None:
            return None
        nd = len(ws) - 2
        b = node.input[2] if len(node.input) > 2 and node.input[2] else None
        return ConsumerSpec("Conv", node.input[0], w, 1, bias=b if b in view.inits else None, kernel=tuple(ws[2:]),
                            strides=tuple(attr(node, "strides", [1] * nd)),
                            pads=tuple(attr(node, "pads", [0] * 2 * nd)),
                            dilations=tuple(attr(node, "dilations", [1] * nd)))


class ConvTranspose(Rule):
    """Transposed conv: W is (C, M/G, k...), Y has M = G * W.shape[1] channels, B is (M,). See couple_conv."""

    ops = ("ConvTranspose",)

    def couple(self, n: NodeCtx) -> None:
        couple_conv(n, n.inp(0), n.inp(1), n.inp(2), n.out(), transpose=True)

    def rewrite(self, n: RewriteCtx) -> None:
        rewrite_group(n, n.inp(1))

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int:
        """Each input element is multiplied into M/G · k... outputs (its row of W)."""
        w, x = dims(shapes, node.input[1]), dims(shapes, node.input[0])
        return 0 if w is None or x is None else prod(x) * prod(w[1:])


class Gemm(Rule):
    """Y = alpha * A' B' + beta * C with A' = A or Aᵀ (transA), B' = B or Bᵀ (transB); C broadcasts to (M, N)."""

    ops = ("Gemm",)

    def couple(self, n: NodeCtx) -> None:
        couple_gemm(n, n.inp(0), n.inp(1), n.inp(2), n.out())

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int:
        return gemm_macs(node, shapes)

    def consumer(self, node: onnx.NodeProto, view: ModelView) -> ConsumerSpec | None:
        """A 2-D float B; C is its bias when it is a (N,) or (1, N) initializer and beta ≠ 0."""
        fw = float_weight(node, view)
        if fw is None or len(fw[1]) != 2:
            return None
        w, ws = fw
        ax = 1 if attr(node, "transB", 0) else 0
        b = node.input[2] if len(node.input) > 2 and node.input[2] else None
        n_out = ws[1 - ax]
        bias = b in view.inits and view.shape(b) in ((n_out,), (1, n_out)) and float(attr(node, "beta", 1.0)) != 0
        return ConsumerSpec("Gemm", node.input[0], w, ax, bias=b if bias else None,
                            trans_a=bool(attr(node, "transA", 0)))


def float_weight(node: onnx.NodeProto, view: ModelView) -> tuple[str, Shape] | None:
    """Input 1 and its shape when it is a float32/float64 initializer (the weight a consumer matrix is made of)."""
    w = node.input[1] if len(node.input) > 1 else ""
    ws = view.shape(w) if w in view.inits else None
    if ws is None or view.inits[w].data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
        return None
    return w, ws


def matmul_bias(view: ModelView, node: onnx.NodeProto, n_out: int) -> str | None:
    """The 1-D initializer of an Add that alone consumes this MatMul's output (MatMul + Add = a linear layer)."""
    users = view.consumers.get(node.output[0], [])
    if len(users) != 1 or node.output[0] in view.graph_outputs:
        return None
    add = view.model.graph.node[users[0]]
    if add.op_type != "Add":
        return None
    other = [t for t in add.input if t != node.output[0]]
    if len(other) == 1 and other[0] in view.inits and view.shape(other[0]) == (n_out,):
        return other[0]
    return None


def conv_macs(shapes: Shapes, w: str, y: str) -> int:
    """A convolution's MACs (shared with the quantized ones): each output element sums C/G · k... products."""
    wd, yd = dims(shapes, w), dims(shapes, y)
    return 0 if wd is None or yd is None else prod(yd) * prod(wd[1:])


def gemm_macs(node: onnx.NodeProto, shapes: Shapes) -> int:
    """Gemm's MACs (shared with QGemm): each output element sums K products, K from A (transA honoured)."""
    y, a = dims(shapes, node.output[0]), dims(shapes, node.input[0])
    if y is None or a is None:
        return 0
    return prod(y) * (a[0] if attr(node, "transA", 0) else a[1])


def matmul_macs(shapes: Shapes, a: str, y: str) -> int:
    """MatMul's MACs (shared with the quantized ones): each output element sums K (A's last axis) products."""
    yd, ad = dims(shapes, y), dims(shapes, a)
    return 0 if yd is None or ad is None else prod(yd) * ad[-1]


def couple_gemm(n: NodeCtx, a: str | None, b: str | None, c: str | None, y: str | None) -> None:
    """Gemm's channel flow (shared with com.microsoft QGemm)."""
    ka = 0 if n.attr("transA", 0) else 1
    kb = 1 if n.attr("transB", 0) else 0
    if a is None or b is None or y is None:
        return
    n.link(a, ka, b, kb)
    n.link(a, 1 - ka, y, 0)
    n.link(y, 1, b, 1 - kb)
    for t, ax_k, ax_o in ((a, ka, 1 - ka), (b, kb, 1 - kb)):
        if n.is_param(t):
            n.role(t, ax_k, IN)
            n.role(t, ax_o, OUT)
    if c is not None:
        sc = n.shape(c)
        if sc is not None:
            for j, d in enumerate(sc):
                oj = 2 - len(sc) + j
                if d != 1:
                    n.link(c, j, y, oj)
                    if oj == 1:
                        n.role(c, j, BIAS)


class MatMul(Rule):
    """numpy matmul: A (..., M, K) @ B (..., K, N) → (..., M, N); batch axes broadcast; a 1-D operand is a
    vector (its axis is K)."""

    ops = ("MatMul",)

    def couple(self, n: NodeCtx) -> None:
        couple_matmul(n, n.inp(0), n.inp(1), n.out())

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int:
        return matmul_macs(shapes, node.input[0], node.output[0])

    def consumer(self, node: onnx.NodeProto, view: ModelView) -> ConsumerSpec | None:
        """A 2-D float initializer on the right; a following Add of a (N,) initializer is its bias."""
        fw = float_weight(node, view)
        if fw is None or len(fw[1]) != 2:
            return None
        return ConsumerSpec("MatMul", node.input[0], fw[0], 0, bias=matmul_bias(view, node, fw[1][1]))


def couple_matmul(n: NodeCtx, a: str | None, b: str | None, y: str | None) -> None:
    """MatMul's channel flow (shared with QLinearMatMul and MatMulInteger): K of A ↔ K of B (in), N of B ↔ N of
    Y (out), M of A ↔ M of Y, batch axes broadcast."""
    sa, sb, sy = n.shape(a), n.shape(b), n.shape(y)
    if a is None or b is None or y is None or sa is None or sb is None or sy is None:
        return
    ra, rb, ry = len(sa), len(sb), len(sy)
    n.link(a, ra - 1, b, max(rb - 2, 0))  # K
    if n.is_param(b):
        n.role(b, max(rb - 2, 0), IN)
    if n.is_param(a):
        n.role(a, ra - 1, IN)
    if rb >= 2:
        n.link(b, rb - 1, y, ry - 1)  # N
        if n.is_param(b):
            n.role(b, rb - 1, OUT)
    if ra >= 2:
        n.link(a, ra - 2, y, ry - 2 if rb >= 2 else ry - 1)  # M
        if n.is_param(a):
            n.role(a, ra - 2, OUT)
    if ra >= 2 and rb >= 2:  # batch axes broadcast like element-wise ops
        for t, s in ((a, sa), (b, sb)):
            for j in range(len(s) - 2):
                oj = (ry - 2) - (len(s) - 2) + j
                if s[j] != 1:
                    n.link(t, j, y, oj)  # unknown/mismatched sizes freeze both sides


RULES: tuple[type[Rule], ...] = (Conv, ConvTranspose, Gemm, MatMul)
