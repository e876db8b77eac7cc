"""Normalisation layers.

BatchNormalization / InstanceNormalization normalise each channel on its own (statistics over the batch or
spatial axes), so the channel axis passes straight through and the per-channel parameters are sliced with it.
LayerNormalization mixes the axes it normalises (from `axis` to the end): those are frozen here; the axes
before `axis` pass through.
"""

from __future__ import annotations

from .base import BIAS, SCALE, STAT, NodeCtx, Rule


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


class SimplifiedLayerNorm(LayerNorm):
    """com.microsoft SimplifiedLayerNormalization (RMSNorm, as onnxruntime's transformer optimiser fuses it)."""

    ops = ("SimplifiedLayerNormalization",)
    domain = "com.microsoft"


RULES: tuple[type[Rule], ...] = (BatchNorm, InstanceNorm, LayerNorm, SimplifiedLayerNorm)
