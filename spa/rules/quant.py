"""Quantize/dequantize (QDQ) pairs.

QuantizeLinear / DequantizeLinear map element by element: y = saturate(round(x / scale) + zero_point) and
y = (x - zero_point) * scale. `scale` and `zero_point` are scalars (per tensor) or 1-D along `axis`
(per channel, opset ≥ 13), in which case they are sliced with that axis. Blocked quantization (opset 21
`block_size`) is not followed. Fused integer ops (QLinearConv, QLinearMatMul, ConvInteger, ...) have no rule
and freeze their channels.
"""

from __future__ import annotations

from .base import SCALE, NodeCtx, Rule, norm_axis, register


@register
class QuantizeDequantize(Rule):
    ops = ("QuantizeLinear", "DequantizeLinear")

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        r = n.rank(x)
        if r is None:
            return
        if n.attr("block_size", 0):
            n.bail("blocked quantization is not followed")
            return
        axis = norm_axis(int(n.attr("axis", 1)), r) if r else 0
        for i in (1, 2):
            p = n.inp(i)
            sp = n.shape(p)
            if p is None or sp is None:
                continue
            if len(sp) == 1 and sp[0] != 1:
                n.link(x, axis, p, 0)
                if n.is_param(p) and i == 1:
                    n.role(p, 0, SCALE)
        n.same(x, y)
