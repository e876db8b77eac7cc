"""Layers that mix channels with a weight: Conv, ConvTranspose, Gemm, MatMul.

These are where channels are born (weight rows, role "out") and consumed (weight columns, role "in").
Grouped convolutions couple input block g with output block g; spa prunes them in whole blocks (the
`group` attribute shrinks), depthwise convolutions per channel (with a channel multiplier, per input channel
together with its outputs).
"""

from __future__ import annotations

import numpy as np

from .base import BIAS, IN, OUT, NodeCtx, Rule, RewriteCtx, register


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


def _rewrite_group(n: RewriteCtx) -> None:
    """W axis 0 is pruned in whole group blocks (Conv: output blocks, ConvTranspose: input blocks), so the
    new group count is the number of blocks kept."""
    g = int(n.attr("group", 1))
    kept = n.kept(n.inp(1), 0)
    if g > 1 and kept is not None:
        n.set_attr("group", g * len(kept) // n.shape(n.inp(1))[0])


@register
class Conv(Rule):
    """Y[n, m] = sum_c W[m, c] * X[n, g(m)*C/G + c] (+ B[m]); W is (M, C/G, k...), B is (M,).

    group == 1: X axis 1 ↔ W axis 1 (in), Y axis 1 ↔ W axis 0 ↔ B (out).
    group > 1: input block b ↔ output block b ↔ W rows of block b; pruned in whole blocks."""

    ops = ("Conv",)

    def couple(self, n: NodeCtx) -> None:
        x, w, b, y = n.inp(0), n.inp(1), n.inp(2), n.out()
        g = int(n.attr("group", 1))
        sx, sw = n.shape(x), n.shape(w)
        if sx is None or sw is None or y is None:
            return
        c_in, m = sx[1], sw[0]
        if g == 1:
            n.link(x, 1, w, 1)
            n.role(w, 1, IN)
        elif c_in is not None and m is not None and c_in % g == 0 and m % g == 0:
            _grouped_links(n, x, 1, y, 1, c_in, m, g)
        else:
            return
        n.link(y, 1, w, 0)
        n.role(w, 0, OUT)
        if b is not None:
            n.link(w, 0, b, 0)
            n.role(b, 0, BIAS)

    def rewrite(self, n: RewriteCtx) -> None:
        _rewrite_group(n)


@register
class ConvTranspose(Rule):
    """Transposed conv: W is (C, M/G, k...), Y has M = G * W.shape[1] channels, B is (M,).

    group == 1: X axis 1 ↔ W axis 0 (in), Y axis 1 ↔ W axis 1 ↔ B (out).
    group > 1: blocks as for Conv; W axis 0 follows the input channels."""

    ops = ("ConvTranspose",)

    def couple(self, n: NodeCtx) -> None:
        x, w, b, y = n.inp(0), n.inp(1), n.inp(2), n.out()
        g = int(n.attr("group", 1))
        sx, sw, sy = n.shape(x), n.shape(w), n.shape(y)
        if sx is None or sw is None or sy is None:
            return
        c_in, m = sx[1], sy[1]
        if g == 1:
            n.link(x, 1, w, 0)
            n.role(w, 0, IN)
            n.link(y, 1, w, 1)
            n.role(w, 1, OUT)
        elif c_in is not None and m is not None and c_in % g == 0 and m % g == 0:
            _grouped_links(n, x, 1, y, 1, c_in, m, g)
            n.link(x, 1, w, 0)
            n.role(w, 0, OUT)
        else:
            return
        if b is not None:
            n.link(y, 1, b, 0)
            n.role(b, 0, BIAS)

    def rewrite(self, n: RewriteCtx) -> None:
        _rewrite_group(n)


@register
class Gemm(Rule):
    """Y = alpha * A' B' + beta * C with A' = A or Aᵀ (transA), B' = B or Bᵀ (transB); C broadcasts to (M, N)."""

    ops = ("Gemm",)

    def couple(self, n: NodeCtx) -> None:
        a, b, c, y = n.inp(0), n.inp(1), n.inp(2), n.out()
        ka = 0 if n.attr("transA", 0) else 1
        kb = 1 if n.attr("transB", 0) else 0
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


@register
class MatMul(Rule):
    """numpy matmul: A (..., M, K) @ B (..., K, N) → (..., M, N); batch axes broadcast; a 1-D operand is a
    vector (its axis is K)."""

    ops = ("MatMul",)

    def couple(self, n: NodeCtx) -> None:
        a, b, y = n.inp(0), n.inp(1), n.out()
        sa, sb, sy = n.shape(a), n.shape(b), n.shape(y)
        if sa is None or sb is None or sy is None:
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
