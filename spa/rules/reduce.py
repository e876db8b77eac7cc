"""Pooling, reductions and softmax: ops that combine values along some axes and leave the others alone.

The combined axes mix channels (their slots stay frozen); the untouched axes pass through to the output,
at the same position (keepdims) or shifted left past the removed axes.
"""

from __future__ import annotations

import onnx
from onnx import helper

from ..onnxutil import attr
from .base import NodeCtx, Rule, norm_axis
from .hooks import StatsMask


class Pool(Rule):
    """Pools combine spatial positions only: N and C (axes 0, 1) pass through. MaxPool's optional `Indices`
    output encodes flat positions that include the channel offset, so its presence freezes the channels."""

    ops = tuple("MaxPool AveragePool LpPool GlobalAveragePool GlobalMaxPool GlobalLpPool".split())

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        if n.out(1) is not None:
            n.freeze(x, 1, "MaxPool Indices output depends on the channel count")
            return
        n.same(x, y, [(0, 0), (1, 1)])


def _reduce_axes(n: NodeCtx, r: int) -> list[int] | None:
    """The reduced axes from the `axes` attribute or (newer opsets) the constant second input."""
    if n.op in ("ArgMax", "ArgMin"):
        return [norm_axis(int(n.attr("axis", 0)), r)]
    axes = n.attr("axes")
    if axes is None and n.inp(1) is not None:
        c = n.const(n.inp(1))
        if c is None:
            return None  # dynamic axes: nothing linked, everything frozen
        axes = c.reshape(-1).tolist()
    if axes is None or len(axes) == 0:
        if n.attr("noop_with_empty_axes", 0):
            return []
        return list(range(r))
    return sorted(norm_axis(int(a), r) for a in axes)


class Reduce(Rule):
    """Reduce*/ArgMax/ArgMin over `axes`; other axes pass through (shifted when keepdims=0)."""

    ops = tuple(
        "ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp "
        "ReduceSumSquare ArgMax ArgMin".split()
    )

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        r = n.rank(x)
        if r is None:
            return
        axes = _reduce_axes(n, r)
        if axes is None:
            n.bail("reduction axes are computed at run time")
            return
        n.bail(f"{n.op} combines values along axes {axes}")
        if n.inp(1) is not None:
            n.free(n.inp(1))
        sx = n.shape(x) or ()
        wide = [k for k in axes if sx[k] != 1]
        if n.op == "ReduceMean" and len(wide) == 1:
            # a decomposed LayerNorm/RMSNorm's statistics: the mean over the remaining channels (lossy)
            n.lossy(x, wide[0], f"ReduceMean over axis {wide[0]} averages fewer channels")
        keep = int(n.attr("keepdims", 1))
        pairs, oj = [], 0
        for k in range(r):
            if k in axes:
                oj += keep
                continue
            pairs.append((k, oj))
            oj += 1
        n.same(x, y, pairs)

    def mask_statistics(self, node: onnx.NodeProto, m: StatsMask) -> list[onnx.NodeProto] | None:
        """ReduceMean(x) over the lossy axis becomes ReduceSum(x · mask) / kept (squeezed without keepdims)."""
        if node.op_type != "ReduceMean":
            return None
        out = node.output[0]
        keepdims = attr(node, "keepdims", 1)
        nodes = m.masked_mean(node.input[0], out if keepdims else m.name("_mean"))
        if not keepdims:
            nodes.append(helper.make_node("Squeeze", [m.name("_mean"), m.axes], [out]) if m.opset >= 13
                         else helper.make_node("Squeeze", [m.name("_mean")], [out], axes=[m.axis]))
        return nodes


class Softmax(Rule):
    """Softmax/LogSoftmax/Hardmax normalise along `axis` (opset ≥ 13) or along all axes from `axis` on
    (opset < 13, input coerced to 2-D); the other axes pass through."""

    ops = ("Softmax", "LogSoftmax", "Hardmax")

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        r = n.rank(x)
        if r is None:
            return
        if n.opset >= 13:
            axis = norm_axis(int(n.attr("axis", -1)), r)
            mixed = {axis}
        else:
            axis = norm_axis(int(n.attr("axis", 1)), r)
            mixed = set(range(axis, r))
        n.bail(f"{n.op} normalises along axes {sorted(mixed)}")
        n.same(x, y, [(k, k) for k in range(r) if k not in mixed])


RULES: tuple[type[Rule], ...] = (Pool, Reduce, Softmax)
