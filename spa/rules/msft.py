"""Fused transformer ops as onnxruntime's transformer optimiser writes them (`onnxruntime.transformers.optimizer`),
plus the opset-23 `Attention` op.

Semantics relied on (onnxruntime's ContribOperators.md / the op schemas, and the ONNX Attention spec):
- Attention heads. Q, K and V are laid out head after head along their hidden axis (`num_heads` blocks of
  `head_size`), or carry the heads on axis 1 in the 4-D (B, N, S, head_size) form; head h of the output comes
  from head h of Q, K and V only (grouped-query attention: output heads g·r .. g·r+r-1 from KV head g, r = q heads
  / kv heads). So a *head* (a *KV group* under GQA) is one channel: all its indices in Q, K, V, the output, the
  packed weight/bias, the KV cache (axis 1, or 2 for the packed `past` of com.microsoft Attention) and per-head
  tensors (attention bias on its head axis, head_sink) are removed together, and the head-count attributes
  shrink. head_size never changes (rotary caches and the 1/sqrt(head_size) scale stay as they are).
- Skip/Embed LayerNormalization: the sum (input + skip + bias, or the embedding lookups) is normalised over the
  hidden axis like LayerNormalization: that axis is a lossy group (see `NodeCtx.lossy`); the zero-group oracle
  masks removed channels out of the statistics (`spa.verify`) using the op's own pre-norm sum output.
- BiasGelu / FastGelu: Gelu(x + bias) element by element, the bias along the last axis; QuickGelu is unary.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx

from .base import BIAS, IN, OUT, SCALE, NodeCtx, RewriteCtx, Rule, norm_axis
from .hooks import StatsMask
from .norm import LayerNorm, masked_norm

MS = "com.microsoft"


def _blocks(n: NodeCtx, t: str | None, axis: int, start: int, count: int, size: int, y: str, ya: int,
            unit: int, per: int = 1) -> None:
    """Indices start + j (j < count) of (t, axis) belong to block j // size; `per` consecutive blocks share one
    channel (KV group), whose representative is index (j // size // per) * unit of (y, ya)."""
    if t is None or count <= 0:
        return
    j = np.arange(count)
    n.link(t, axis, y, ya, start + j, (j // size // per) * unit)


def _unit_self(n: NodeCtx, y: str, ya: int, width: int, unit: int) -> None:
    """All `unit` consecutive indices of (y, ya) are one channel (a head, or a KV group of heads)."""
    j = np.arange(width)
    n.link(y, ya, y, ya, j, (j // unit) * unit)


def _div(a: int | None, b: int) -> int | None:
    return a // b if a is not None and b > 0 and a % b == 0 else None


def _kept_units(n: RewriteCtx, y: str | None, ya: int, unit: int) -> int | None:
    """How many heads (or KV groups) of `unit` indices survive along (y, ya); None if nothing was pruned there."""
    k = n.kept(y, ya)
    return None if k is None else len(k) // unit


class MsAttention(Rule):
    """com.microsoft Attention: output (B, S, v_hidden) = heads of softmax(QKᵀ)V with [Q K V] = input @ weights +
    bias, weights (input_hidden, q_hidden + k_hidden + v_hidden) packed section after section
    (`qkv_hidden_sizes`, default three equal parts); optional past/present (2, B, N, T, head_size) and
    attention_bias (B|1, N|1, S, T)."""

    ops = ("Attention",)
    domain = MS

    def couple(self, n: NodeCtx) -> None:
        x, w, b, y = n.inp(0), n.inp(1), n.inp(2), n.out()
        sw, sy, rx = n.shape(w), n.shape(y), n.rank(x)
        heads = int(n.attr("num_heads", 0))
        if sw is None or sy is None or rx is None or len(sw) != 2 or sw[1] is None or heads <= 0:
            return
        sizes = list(n.attr("qkv_hidden_sizes", []) or [sw[1] // 3] * 3)
        hq, hv = _div(sizes[0], heads), _div(sizes[2], heads)
        if sum(sizes) != sw[1] or hq is None or hv is None or sizes[0] != sizes[1] or sy[-1] != sizes[2]:
            n.bail("packed Q/K/V sizes do not split into num_heads heads")
            return
        n.link(x, rx - 1, w, 0)
        n.role(w, 0, IN)
        ya = len(sy) - 1
        _unit_self(n, y, ya, sizes[2], hv)
        _blocks(n, w, 1, 0, sizes[0], hq, y, ya, hv)
        _blocks(n, w, 1, sizes[0], sizes[1], hq, y, ya, hv)
        _blocks(n, w, 1, sizes[0] + sizes[1], sizes[2], hv, y, ya, hv)
        n.role(w, 1, OUT)
        if b is not None:
            n.link(w, 1, b, 0)
            n.role(b, 0, BIAS)
        n.same(x, y, [(0, 0)])
        for t, axis in ((n.inp(4), 2), (n.out(1), 2), (n.inp(5), 1)):  # past, present, attention_bias
            _head_axis(n, t, axis, heads, y, ya, hv)

    def rewrite(self, n: RewriteCtx) -> None:
        w = n.inp(1)
        kept = n.kept(w, 1)
        if kept is None:
            return
        sw = n.shape(w)
        heads = int(n.attr("num_heads"))
        sizes = list(n.attr("qkv_hidden_sizes", []) or [sw[1] // 3] * 3)
        bounds = np.cumsum([0] + sizes)
        new = [int(np.count_nonzero((kept >= lo) & (kept < hi))) for lo, hi in itertools.pairwise(bounds)]
        n.set_attr("num_heads", new[2] // (sizes[2] // heads))
        if n.attr("qkv_hidden_sizes") is not None:
            n.set_attr("qkv_hidden_sizes", new)


def _head_axis(n: NodeCtx, t: str | None, axis: int, heads: int, y: str, ya: int, unit: int, per: int = 1) -> None:
    """A per-head axis (KV cache, attention bias, head_sink, qk output): index h is head h, i.e. the channel
    (h // per) · unit of (y, ya). A size-1 (broadcast) axis carries no heads."""
    s = n.shape(t)
    if t is None or s is None or axis >= len(s) or s[axis] == 1:
        return
    if s[axis] != heads:
        n.freeze(t, axis, f"per-head axis of size {s[axis]}, expected {heads} heads")
        return
    _blocks(n, t, axis, 0, heads, 1, y, ya, unit, per)


class MultiHeadAttention(Rule):
    """com.microsoft MultiHeadAttention: query (B, S, N·hq), key (B, L, N·hq) or a past key (B, N, L, hq), value
    (B, L, N·hv) or (B, N, L, hv), bias (q + k + v hidden), attention_bias (B|1, N|1, S, T), past_key/past_value
    and present_key/present_value (B, N, T, h), qk (B, N, S, T); output (B, S, N·hv). Packed QKV/KV (5-D) is not
    followed."""

    ops = ("MultiHeadAttention",)
    domain = MS

    def couple(self, n: NodeCtx) -> None:
        q, k, v, bias, y = n.inp(0), n.inp(1), n.inp(2), n.inp(3), n.out()
        heads = int(n.attr("num_heads", 0))
        sq, sk, sv, sy = n.shape(q), n.shape(k), n.shape(v), n.shape(y)
        if None in (sq, sk, sv, sy) or heads <= 0 or len(sq) != 3 or len(sy) != 3:
            n.bail("packed or unknown Q/K/V layout")
            return
        hq, hv = _div(sq[2], heads), _div(sy[2], heads)
        # hidden widths of Q, K, V (0: K/V given per head, (B, N, L, h)); the bias packs the 3-D ones
        widths = [sq[2]] + [s[2] if len(s) == 3 else 0 for s in (sk, sv)]
        sb = n.shape(bias)
        if hq is None or hv is None or any(w is None or w % heads for w in widths) or (
                bias is not None and (sb is None or sb[0] != sum(widths))):
            n.bail("Q/K/V/bias widths do not split into num_heads heads")
            return
        ya = 2
        _unit_self(n, y, ya, sy[2], hv)
        off = 0
        for t, s, w in zip((q, k, v), (sq, sk, sv), widths):
            if w:
                _blocks(n, t, 2, 0, w, w // heads, y, ya, hv)
                if bias is not None:
                    n.link(bias, 0, t, 2, off + np.arange(w), np.arange(w))
            elif len(s) == 4:
                _head_axis(n, t, 1, heads, y, ya, hv)
            else:
                return
            off += w
        if bias is not None:
            n.role(bias, 0, BIAS)
        n.same(q, y, [(0, 0)])
        for t, axis in ((n.inp(5), 1), (n.inp(6), 1), (n.inp(7), 1), (n.out(1), 1), (n.out(2), 1), (n.out(3), 1)):
            _head_axis(n, t, axis, heads, y, ya, hv)

    def rewrite(self, n: RewriteCtx) -> None:
        y = n.out()
        heads = int(n.attr("num_heads"))
        left = _kept_units(n, y, 2, n.shape(y)[2] // heads)
        if left is not None:
            n.set_attr("num_heads", left)


class GroupQueryAttention(Rule):
    """com.microsoft GroupQueryAttention: query (B, S, N·h) or packed QKV (B, S, (N + 2·KV)·h) when key is absent,
    key/value (B, S, KV·h), past/present key and value (B, KV, T, h), attention_bias (B|1, N|1, S, T), head_sink
    (N), output_qk (B, N, S, T); output (B, S, N·h). Query heads g·r .. g·r+r-1 (r = N / KV) attend with KV head g:
    a KV group is the unit. A quantized KV cache (k_scale / v_scale) is not followed."""

    ops = ("GroupQueryAttention",)
    domain = MS

    def couple(self, n: NodeCtx) -> None:
        q, k, v, y = n.inp(0), n.inp(1), n.inp(2), n.out()
        nq, nkv = int(n.attr("num_heads", 0)), int(n.attr("kv_num_heads", 0))
        sq, sy = n.shape(q), n.shape(y)
        if sq is None or sy is None or nq <= 0 or nkv <= 0 or nq % nkv or len(sq) != 3 or sq[2] is None:
            return
        if n.inp(12) is not None or n.inp(13) is not None:
            n.bail("quantized KV cache scales are not followed")
            return
        r = nq // nkv
        h = _div(sq[2], nq if k is not None else nq + 2 * nkv)
        if h is None or sy[2] != nq * h:
            return
        unit, ya = r * h, 2
        _unit_self(n, y, ya, nq * h, unit)
        _blocks(n, q, 2, 0, nq * h, h, y, ya, unit, r)
        if k is None:  # packed: [Q | K | V] along the hidden axis
            _blocks(n, q, 2, nq * h, nkv * h, h, y, ya, unit)
            _blocks(n, q, 2, (nq + nkv) * h, nkv * h, h, y, ya, unit)
        else:
            for t in (k, v):
                s = n.shape(t)
                if s is None or len(s) != 3 or s[2] != nkv * h:
                    return
                _blocks(n, t, 2, 0, nkv * h, h, y, ya, unit)
        n.same(q, y, [(0, 0)])
        for t, axis in ((n.inp(3), 1), (n.inp(4), 1), (n.out(1), 1), (n.out(2), 1)):  # KV cache
            _head_axis(n, t, axis, nkv, y, ya, unit)
        for t, axis in ((n.inp(10), 1), (n.inp(11), 0), (n.out(3), 1)):  # attention_bias, head_sink, output_qk
            _head_axis(n, t, axis, nq, y, ya, unit, r)
        if n.is_param(n.inp(11)):
            n.role(n.inp(11), 0, SCALE)

    def rewrite(self, n: RewriteCtx) -> None:
        y = n.out()
        nq, nkv = int(n.attr("num_heads")), int(n.attr("kv_num_heads"))
        groups = _kept_units(n, y, 2, n.shape(y)[2] // nkv)
        if groups is not None:
            n.set_attr("num_heads", groups * (nq // nkv))
            n.set_attr("kv_num_heads", groups)


class OnnxAttention(Rule):
    """ONNX Attention (opset 23): Q (B, Nq, S, h) / K, V (B, Nkv, L, h|hv), or the 3-D (B, S, heads·h) forms with
    `q_num_heads`/`kv_num_heads`; attn_mask broadcast to (B, Nq, S, T); past/present key and value
    (B, Nkv, T, h); qk_matmul_output (B, Nq, S, T); Y like Q (hv per head). Query heads g·r .. g·r+r-1 use KV head g
    (r = Nq / Nkv): a KV group is the unit."""

    ops = ("Attention",)

    def couple(self, n: NodeCtx) -> None:
        q, k, v, y = n.inp(0), n.inp(1), n.inp(2), n.out()
        sq, sk, sv, sy = n.shape(q), n.shape(k), n.shape(v), n.shape(y)
        if None in (sq, sk, sv, sy) or len({len(sq), len(sk), len(sv), len(sy)}) != 1 or len(sq) not in (3, 4):
            return
        if len(sq) == 4:
            nq, nkv = sq[1], sk[1]
            if nq is None or nkv is None or nkv <= 0 or nq % nkv or sv[1] != nkv or sy[1] != nq:
                return
            r = nq // nkv
            unit, ya = r, 1
            _unit_self(n, y, ya, nq, unit)
            _blocks(n, q, 1, 0, nq, 1, y, ya, unit, r)
            _blocks(n, k, 1, 0, nkv, 1, y, ya, unit)
            _blocks(n, v, 1, 0, nkv, 1, y, ya, unit)
            n.same(q, y, [(0, 0)])
        else:
            nq, nkv = int(n.attr("q_num_heads", 0)), int(n.attr("kv_num_heads", 0))
            if nq <= 0 or nkv <= 0 or nq % nkv:
                return
            r = nq // nkv
            h, hk, hv = _div(sq[2], nq), _div(sk[2], nkv), _div(sv[2], nkv)
            if h is None or hk is None or hv is None or sy[2] != nq * hv:
                return
            unit, ya = r * hv, 2
            _unit_self(n, y, ya, sy[2], unit)
            _blocks(n, q, 2, 0, sq[2], h, y, ya, unit, r)
            _blocks(n, k, 2, 0, sk[2], hk, y, ya, unit)
            _blocks(n, v, 2, 0, sv[2], hv, y, ya, unit)
            n.same(q, y, [(0, 0)])
        mask = n.inp(3)
        rm = n.rank(mask)
        if rm is not None and rm >= 3:
            _head_axis(n, mask, rm - 3, nq, y, ya, unit, r)
        for t in (n.inp(4), n.inp(5), n.out(1), n.out(2)):  # KV cache
            _head_axis(n, t, 1, nkv, y, ya, unit)
        _head_axis(n, n.out(3), 1, nq, y, ya, unit, r)

    def rewrite(self, n: RewriteCtx) -> None:
        y = n.out()
        sy = n.shape(y)
        if sy is None or len(sy) != 3:
            return  # 4-D: the head counts are the tensors' own shapes
        nq, nkv = int(n.attr("q_num_heads")), int(n.attr("kv_num_heads"))
        groups = _kept_units(n, y, 2, sy[2] // nkv)
        if groups is not None:
            n.set_attr("q_num_heads", groups * (nq // nkv))
            n.set_attr("kv_num_heads", groups)


class RotaryEmbedding(Rule):
    """com.microsoft RotaryEmbedding: rotates pairs of indices inside each head of input (B, S, N·h) (N from
    `num_heads`, else h from the cos cache (max_seq, h/2)) or (B, N, S, h); output like input. Whole heads pass
    through; head_size does not (the caches are per head_size)."""

    ops = ("RotaryEmbedding",)
    domain = MS
    cos_input = 2

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        sx, sc = n.shape(x), n.shape(n.inp(self.cos_input))
        if sx is None or n.shape(y) != sx:
            return
        n.same(x, y, [(0, 0)])
        if len(sx) == 4:
            n.same(x, y, [(1, 1)])
            return
        heads, rot = int(n.attr("num_heads", 0)), int(n.attr("rotary_embedding_dim", 0))
        if heads > 0:
            h = _div(sx[2], heads)
        elif rot == 0 and sc is not None and sc[-1] is not None:
            h = 2 * sc[-1]
        else:
            h = None
        if h is None or sx[2] is None or sx[2] % h:
            n.bail("head size unknown")
            return
        _unit_self(n, y, 2, sx[2], h)
        n.link(x, 2, y, 2)

    def rewrite(self, n: RewriteCtx) -> None:
        x = n.inp(0)
        heads = int(n.attr("num_heads", 0))
        sx = n.shape(x)
        if heads > 0 and sx is not None and len(sx) == 3:
            left = _kept_units(n, x, 2, sx[2] // heads)
            if left is not None:
                n.set_attr("num_heads", left)


class OnnxRotaryEmbedding(RotaryEmbedding):
    """ONNX RotaryEmbedding (opset 23): the same rotation, inputs (X, cos_cache, sin_cache, position_ids)."""

    domain = ""
    cos_input = 1


class SkipLayerNorm(Rule):
    """com.microsoft SkipLayerNormalization (input, skip, gamma, beta, bias) / SkipSimplifiedLayerNormalization
    (input, skip, gamma, bias): s = input + skip (+ bias), output = LayerNorm/RMSNorm(s) over the last axis; the
    optional 4th output is s. skip may be (B, S, H), (1, S, H) or (S, H). The hidden axis is lossy; if the
    mean / inv_std_var outputs are used, the statistics themselves leave the node and it stays frozen."""

    ops = ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization")
    domain = MS

    def couple(self, n: NodeCtx) -> None:
        x, skip, y = n.inp(0), n.inp(1), n.out()
        sx = n.shape(x)
        if sx is None:
            return
        r = len(sx)
        k = r - 1
        outs = [o for o in (y, n.out(3)) if o is not None]
        for o in outs:
            n.same(x, o, [(a, a) for a in range(k)])
        rs = n.rank(skip)
        if rs is not None:
            n.same(skip, x, [(a, a + r - rs) for a in range(rs - 1)])
        n.bail(f"{n.op} normalises over axis {k} (statistics would change)")
        if n.out(1) is not None or n.out(2) is not None:
            return
        for o in outs:
            n.same(x, o, [(k, k)])
        if rs is not None:
            n.link(skip, rs - 1, x, k)
        n.lossy(x, k, f"{n.op} statistics over axis {k} are computed from fewer channels")
        params = [(2, SCALE), (3, BIAS), (4, BIAS)] if n.op == "SkipLayerNormalization" else [(2, SCALE), (3, BIAS)]
        for i, role in params:
            p = n.inp(i)
            if p is not None:
                n.link(x, k, p, 0)
                if n.is_param(p):
                    n.role(p, 0, role)

    def mask_statistics(self, node: onnx.NodeProto, m: StatsMask) -> list[onnx.NodeProto]:
        centred = node.op_type == "SkipLayerNormalization"
        return masked_norm(node, m, centred, gamma=2, beta=3 if centred else None, sum_out=3)


class EmbedLayerNorm(Rule):
    """com.microsoft EmbedLayerNormalization: output (B, S, H) = LayerNorm(word[input_ids] + position[position_ids]
    (+ segment[segment_ids])) with gamma, beta (H); optional outputs mask_index (B) and embedding_sum (the
    pre-norm sum). The tables' hidden axis (1) is the output's: a lossy group; their row axis selects."""

    ops = ("EmbedLayerNormalization",)
    domain = MS

    def couple(self, n: NodeCtx) -> None:
        y = n.out()
        if n.rank(y) != 3:
            return
        n.bail("EmbedLayerNormalization selects table rows and normalises over the hidden axis")
        for i, axis, role in ((2, 1, OUT), (3, 1, OUT), (4, 1, OUT), (5, 0, SCALE), (6, 0, BIAS)):
            p = n.inp(i)
            if p is not None:
                n.link(p, axis, y, 2)
                if n.is_param(p):
                    n.role(p, axis, role)
        if n.out(2) is not None:
            n.same(y, n.out(2))
        n.lossy(y, 2, "EmbedLayerNormalization statistics over axis 2 are computed from fewer channels")

    def mask_statistics(self, node: onnx.NodeProto, m: StatsMask) -> list[onnx.NodeProto]:
        return masked_norm(node, m, True, gamma=5, beta=6, sum_out=2)


class BiasGelu(Rule):
    """com.microsoft BiasGelu(A, B) / FastGelu(X[, bias]): Gelu(x + bias) element by element, bias 1-D along the
    last axis."""

    ops = ("BiasGelu", "FastGelu")
    domain = MS

    def couple(self, n: NodeCtx) -> None:
        x, b, y = n.inp(0), n.inp(1), n.out()
        n.same(x, y)
        r = n.rank(x)
        if b is not None and r is not None:
            n.link(x, norm_axis(-1, r), b, 0)  # an unknown or broadcast (1) bias size freezes the axis
            if n.is_param(b):
                n.role(b, 0, BIAS)


class QuickGelu(Rule):
    """com.microsoft QuickGelu: x · sigmoid(alpha · x), element by element (the optimiser's fused SiLU). The
    com.microsoft Gelu has no rule yet: the pattern suite uses it as its op without a rule."""

    ops = ("QuickGelu",)
    domain = MS

    def couple(self, n: NodeCtx) -> None:
        n.same(n.inp(0), n.out())


class OnnxSimplifiedLayerNorm(LayerNorm):
    """SimplifiedLayerNormalization in the default domain: onnxruntime registers its RMSNorm there too, and its
    optimiser writes it so (the com.microsoft one is in `norm.py`)."""

    ops = ("SimplifiedLayerNormalization",)


RULES = (MsAttention, MultiHeadAttention, GroupQueryAttention, OnnxAttention, RotaryEmbedding, OnnxRotaryEmbedding, SkipLayerNorm, EmbedLayerNorm, BiasGelu, QuickGelu, OnnxSimplifiedLayerNorm)
