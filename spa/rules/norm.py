"""Normalisation layers.

BatchNormalization / InstanceNormalization normalise each channel on its own (statistics over the batch or
spatial axes), so the channel axis passes straight through and the per-channel parameters are sliced with it.
LayerNormalization mixes the axes it normalises (from `axis` to the end): those are frozen here; the axes
before `axis` pass through.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..onnxutil import attr
from .base import BIAS, SCALE, STAT, NodeCtx, Rule
from .hooks import StatsMask


class BatchNorm(Rule):
    """y = scale * (x - mean) / sqrt(var + eps) + B, per channel (axis 1). Training-mode outputs (running
    mean/var) are per channel too."""

    ops = ("BatchNormalization",)

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        n.same(x, y)
        roles = [(1, SCALE, 0.0), (2, BIAS, 0.0), (3, STAT, 0.0), (4, STAT, 1.0)]
        for i, role, neutral in roles:
            p = n.inp(i)
            if p is not None:
                n.link(x, 1, p, 0)
                if n.is_param(p):
                    n.role(p, 0, role, neutral)
        for extra in n.outputs[1:]:
            n.link(x, 1, extra, 0)


class InstanceNorm(Rule):
    """y = scale * (x - mean_hw) / sqrt(var_hw + eps) + B with statistics per (sample, channel)."""

    ops = ("InstanceNormalization",)

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        n.same(x, y)
        for i, role in ((1, SCALE), (2, BIAS)):
            p = n.inp(i)
            if p is not None:
                n.link(x, 1, p, 0)
                if n.is_param(p):
                    n.role(p, 0, role)


class LayerNorm(Rule):
    """Normalises over axes [axis, rank) (RMSNormalization: no mean; SimplifiedLayerNormalization: the
    com.microsoft RMSNorm). The leading axes pass through; the Mean/InvStdDev outputs keep them. When a single
    axis of size > 1 is normalised (a transformer's hidden width), its channels follow the input to the
    output and the scale/bias: removing some normalises over the rest (lossy, see `NodeCtx.lossy`)."""

    ops = ("LayerNormalization", "RMSNormalization")

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        sx = n.shape(x)
        if sx is None:
            return
        r = len(sx)
        axis = int(n.attr("axis", -1))
        axis = axis + r if axis < 0 else axis
        normed = [k for k in range(axis, r) if sx[k] != 1]
        n.bail(f"{n.op} normalises over axes {list(range(axis, r))} (statistics would change)")
        for out in n.outputs:
            n.same(x, out, [(k, k) for k in range(axis)])
        if len(normed) != 1:
            return
        k = normed[0]
        n.same(x, y, [(k, k)])
        n.lossy(x, k, f"{n.op} statistics over axis {k} are computed from fewer channels")
        for i, role in ((1, SCALE), (2, BIAS)):
            p = n.inp(i)
            sp = n.shape(p)
            if p is None or sp is None:
                continue
            pk = k - (r - len(sp))  # scale/bias broadcast against the normalised axes, right-aligned
            if 0 <= pk < len(sp) and sp[pk] != 1:
                n.link(x, k, p, pk)
                if n.is_param(p):
                    n.role(p, pk, role)

    def mask_statistics(self, node: onnx.NodeProto, m: StatsMask) -> list[onnx.NodeProto]:
        return masked_norm(node, m, centred=node.op_type == "LayerNormalization")


def masked_norm(node: onnx.NodeProto, m: StatsMask, centred: bool, gamma: int | None = 1, beta: int | None = 2,
                sum_out: int | None = None) -> list[onnx.NodeProto]:
    """A normalisation over `m.axis` redone with statistics over the kept channels only, the removed ones masked
    out of the deviations: (x - mean) / sqrt(var + eps) · gamma + beta (RMS norms: not `centred`); the result is
    written to the node's first output. `gamma`/`beta`: input positions of the scale and shift (None: the op has
    none). `sum_out`: for fused ops (com.microsoft Skip/EmbedLayerNormalization) the output holding the pre-norm
    sum they normalise; the fused node is kept to compute it, otherwise input 0 is normalised."""
    H = helper
    eps = m.constant("_eps", np.array(attr(node, "epsilon", 1e-5), np.float32))
    xin = node.input[0]
    nodes = []
    if sum_out is not None:
        fused = onnx.NodeProto()
        fused.CopyFrom(node)
        while len(fused.output) <= sum_out:
            fused.output.append("")
        fused.output[0] = m.name("_unused")
        fused.output[sum_out] = fused.output[sum_out] or m.name("_sum")
        xin = fused.output[sum_out]
        nodes.append(fused)
    if centred:
        nodes += [*m.masked_mean(xin, m.name("_mean")), H.make_node("Sub", [xin, m.name("_mean")], [m.name("_c")])]
        xin = m.name("_c")
    nodes += [H.make_node("Mul", [xin, m.mask], [m.name("_d")]),
              H.make_node("Mul", [m.name("_d"), m.name("_d")], [m.name("_d2")]),
              m.reduce_sum(m.name("_d2"), m.name("_v")),
              H.make_node("Mul", [m.name("_v"), m.inv_kept], [m.name("_var")]),
              H.make_node("Add", [m.name("_var"), eps], [m.name("_ve")]),
              H.make_node("Sqrt", [m.name("_ve")], [m.name("_sd")]),
              H.make_node("Div", [m.name("_d"), m.name("_sd")], [m.name("_n")])]
    last = m.name("_n")
    for k, op, suffix in ((gamma, "Mul", "_y"), (beta, "Add", "_yb")):
        if k is not None and len(node.input) > k and node.input[k]:
            nodes.append(H.make_node(op, [last, node.input[k]], [m.name(suffix)]))
            last = m.name(suffix)
    nodes.append(H.make_node("Identity", [last], [node.output[0]]))
    return nodes


class SimplifiedLayerNorm(LayerNorm):
    """com.microsoft SimplifiedLayerNormalization (RMSNorm, as onnxruntime's transformer optimiser fuses it)."""

    ops = ("SimplifiedLayerNormalization",)
    domain = "com.microsoft"


RULES: tuple[type[Rule], ...] = (BatchNorm, InstanceNorm, LayerNorm, SimplifiedLayerNorm)
