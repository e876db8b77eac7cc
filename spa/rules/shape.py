"""Ops that move data between positions without arithmetic: Concat, Split, Slice, Pad, Resize/Upsample,
Transpose, Flatten/Reshape, Squeeze/Unsqueeze, Expand, Shape/Size.

Their channel maps are offsets (Concat), ranges (Split, Slice), permutations (Transpose) and factorisations
(Flatten/Reshape merging a channel axis with others: feature f ↔ channel (f // inner) % C; splitting one axis
into several, e.g. a channel shuffle's (C) → (g, C/g): channel c ↔ inner index c % (C/g), so a unit is
"position j of every block" and every block keeps the same positions).
Rewrites keep the counts in attributes and shape constants in step with the pruned channels. The axis algebra
of reshapes (aligning two shapes, folding a target to a constant) is in rules.reshape_algebra.
"""

from __future__ import annotations

import numpy as np

from ..view import shape_sources
from ..onnxutil import attr
from .base import OUT, NodeCtx, RewriteCtx, Rule, norm_axis
from .elementwise import BROADCAST, UNARY
from .reshape_algebra import Term, align, folded_target, target_rewritable, terms


class Concat(Rule):
    """Inputs are laid end to end along `axis`: input i's channel j is output channel offset_i + j."""

    ops = ("Concat",)

    def couple(self, n: NodeCtx) -> None:
        y = n.out()
        sy = n.shape(y)
        if sy is None:
            return
        axis = norm_axis(int(n.attr("axis", 0)), len(sy))
        off = 0
        for x in n.node.input:
            sx = n.shape(x)
            if not x or sx is None or sx[axis] is None:
                return  # offsets after this input are unknown: the rest stays frozen
            d = sx[axis]
            if d > 0:
                n.link(x, axis, y, axis, np.arange(d), off + np.arange(d))
            n.same(x, y, [(k, k) for k in range(len(sy)) if k != axis])
            off += d


def _split_sizes(n: NodeCtx) -> list[int] | None:
    sizes = []
    axis = int(n.attr("axis", 0))
    for o in n.node.output:
        s = n.shape(o)
        if s is None or s[axis] is None:
            return None
        sizes.append(s[axis])
    return sizes


class Split(Rule):
    """Output k is the input range [offset_k, offset_k + size_k) along `axis` (sizes from the `split`
    attribute, the second input, or equal parts)."""

    ops = ("Split",)

    def couple(self, n: NodeCtx) -> None:
        x = n.inp(0)
        sx = n.shape(x)
        if sx is None:
            return
        axis = norm_axis(int(n.attr("axis", 0)), len(sx))
        sizes = _split_sizes(n)
        if sizes is None or sum(sizes) != sx[axis]:
            n.bail("split sizes unknown")
            return
        if n.inp(1) is not None:
            if n.const(n.inp(1)) is None:
                n.bail("split sizes are computed at run time")
                return
            n.free(n.inp(1))
        off = 0
        for y, d in zip(n.node.output, sizes):
            if d > 0:
                n.link(x, axis, y, axis, off + np.arange(d), np.arange(d))
            n.same(x, y, [(k, k) for k in range(len(sx)) if k != axis])
            off += d

    def rewrite(self, n: RewriteCtx) -> None:
        x = n.inp(0)
        if n.shape(x) is None:
            return
        axis = norm_axis(int(n.attr("axis", 0)), len(n.shape(x)))
        kept = n.kept(x, axis)
        sizes = _split_sizes(n)  # type: ignore[arg-type]
        if kept is None or sizes is None:
            return
        bounds = np.cumsum([0] + sizes)
        new = [int(np.count_nonzero((kept >= lo) & (kept < hi))) for lo, hi in zip(bounds[:-1], bounds[1:])]
        if n.opset < 13:
            n.set_attr("split", new)
        else:
            n.del_attr("num_outputs")
            n.set_input_const(1, np.array(new, dtype=np.int64))


def _slice_params(n: NodeCtx | RewriteCtx) -> tuple[list[int], list[int], list[int], list[int]] | None:
    r = len(n.shape(n.inp(0)) or ())
    if n.opset < 10:
        starts, ends = n.attr("starts"), n.attr("ends")
        axes = n.attr("axes", list(range(len(starts or []))))
        steps = [1] * len(starts or [])
    else:
        vals = [n.const(n.inp(i)) if n.inp(i) is not None else None for i in (1, 2, 3, 4)]
        if vals[0] is None or vals[1] is None:
            return None
        if n.inp(3) is not None and vals[2] is None or n.inp(4) is not None and vals[3] is None:
            return None
        starts, ends = vals[0].reshape(-1).tolist(), vals[1].reshape(-1).tolist()
        axes = vals[2].reshape(-1).tolist() if vals[2] is not None else list(range(len(starts)))
        steps = vals[3].reshape(-1).tolist() if vals[3] is not None else [1] * len(starts)
    if starts is None or ends is None:
        return None
    return list(starts), list(ends), [norm_axis(int(a), r) for a in axes], list(steps)


def _clamp(v: int, d: int) -> int:
    v = v + d if v < 0 else v
    return max(0, min(d, v))


class Slice(Rule):
    """Output axis k is input range [start, end) of axis k (step 1); strided slices are not followed."""

    ops = ("Slice",)

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        sx = n.shape(x)
        p = _slice_params(n)
        if sx is None or p is None:
            n.bail("starts/ends/axes/steps are computed at run time" if p is None else "input shape unknown")
            return
        starts, ends, axes, steps = p
        for i in (1, 2, 3, 4):
            if n.inp(i) is not None:
                n.free(n.inp(i))
        for k, d in enumerate(sx):
            if k not in axes:
                n.same(x, y, [(k, k)])
                continue
            j = axes.index(k)
            if steps[j] != 1 or d is None:
                n.bail(f"strided slice (step {steps[j]}) along axis {k}" if steps[j] != 1 else "size unknown")
                continue
            st, en = _clamp(int(starts[j]), d), _clamp(int(ends[j]), d)
            if en > st:
                n.link(x, k, y, k, np.arange(st, en), np.arange(en - st))

    def rewrite(self, n: RewriteCtx) -> None:
        x = n.inp(0)
        sx = n.shape(x)
        p = _slice_params(n)
        if p is None:
            return
        starts, ends, axes, steps = p
        changed = False
        new_st, new_en = list(starts), list(ends)
        for j, k in enumerate(axes):
            kept = n.kept(x, k)
            if kept is None:
                continue
            d = sx[k]
            st, en = _clamp(int(starts[j]), d), _clamp(int(ends[j]), d)
            new_st[j] = int(np.searchsorted(kept, st))
            new_en[j] = int(np.searchsorted(kept, en))
            changed = True
        if not changed:
            return
        if n.opset < 10:
            n.set_attr("starts", new_st)
            n.set_attr("ends", new_en)
        else:
            dt = n.const(n.inp(1)).dtype
            n.set_input_const(1, np.array(new_st, dtype=dt))
            n.set_input_const(2, np.array(new_en, dtype=dt))


class Gather(Rule):
    """Gather(data, indices, axis): out = data[:axis] + indices.shape + data[axis+1:]. The other data axes
    pass through (shifted by rank(indices) - 1), the indices' axes become the output's middle axes; the
    gathered axis selects, so it stays frozen (an embedding table's vocabulary, qkv[0] of a fused QKV)."""

    ops = ("Gather",)

    def couple(self, n: NodeCtx) -> None:
        x, idx, y = n.inp(0), n.inp(1), n.out()
        r, ri = n.rank(x), n.rank(idx)
        if r is None or ri is None:
            return
        g = norm_axis(int(n.attr("axis", 0)), r)
        n.bail(f"Gather selects along axis {g}")
        n.same(x, y, [(k, k if k < g else k + ri - 1) for k in range(r) if k != g])
        n.same(idx, y, [(j, g + j) for j in range(ri)])
        if n.is_param(x):
            for k in range(r):
                if k != g:
                    n.role(x, k, OUT)


class Pad(Rule):
    """Axes with zero padding at both ends pass through; padded axes are not followed."""

    ops = ("Pad",)

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        r = n.rank(x)
        if r is None:
            return
        if n.opset < 11:
            pads = n.attr("pads", n.attr("paddings"))
        else:
            c = n.const(n.inp(1))
            pads = None if c is None else c.reshape(-1).tolist()
        if pads is None:
            n.bail("pads are computed at run time")
            return
        axes = list(range(r))
        if n.inp(3) is not None:
            c = n.const(n.inp(3))
            if c is None:
                return
            axes = [norm_axis(int(a), r) for a in c.reshape(-1)]
        for i in (1, 2, 3):
            if n.inp(i) is not None:
                n.free(n.inp(i))
        m = len(axes)
        padded = {axes[j] for j in range(m) if pads[j] != 0 or pads[j + m] != 0}
        if padded:
            n.bail(f"padded along axes {sorted(padded)}")
        n.same(x, y, [(k, k) for k in range(r) if k not in padded])


class Resize(Rule):
    """Resize/Upsample interpolate along axes whose scale ≠ 1; axes of equal input and output size pass
    through. A constant `sizes` input is rewritten; a computed one freezes those axes."""

    ops = ("Resize", "Upsample")

    def _sizes_input(self, n: NodeCtx | RewriteCtx) -> str | None:
        return n.inp(3) if n.op == "Resize" and n.opset >= 11 else None

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        sx, sy = n.shape(x), n.shape(y)
        if sx is None or sy is None or n.attr("coordinate_transformation_mode", b"") == b"tf_crop_and_resize":
            return
        sizes = self._sizes_input(n)
        if sizes is not None:
            c = n.const(sizes)
            if c is None:
                n.bail("output sizes are computed at run time")
                return
            if c.size == 0:
                sizes = None
        for i in range(1, len(n.node.input)):
            if n.inp(i) is not None:
                n.free(n.inp(i))
        n.same(x, y, [(k, k) for k in range(len(sx)) if sx[k] is not None and sx[k] == sy[k]])

    def rewrite(self, n: RewriteCtx) -> None:
        sizes = self._sizes_input(n)
        c = n.const(sizes) if sizes is not None else None
        if c is None or c.size == 0:
            return
        x = n.inp(0)
        if n.shape(x) is None:
            return
        r = len(n.shape(x))
        axes = [norm_axis(int(a), r) for a in n.attr("axes", list(range(r)))]
        new = c.copy()
        changed = False
        for j, k in enumerate(axes):
            kept = n.kept(x, k)
            if kept is not None:
                new[j] = len(kept)
                changed = True
        if changed:
            n.set_input_const(3, new)


class Transpose(Rule):
    """Output axis i is input axis perm[i] (default: reversed)."""

    ops = ("Transpose",)

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        r = n.rank(x)
        if r is None:
            return
        perm = n.attr("perm", list(range(r))[::-1])
        n.same(x, y, [(int(p), i) for i, p in enumerate(perm)])


def reshape_links(n: NodeCtx, x: str, y: str) -> bool:
    """Link the axes a reshape keeps, a merged channel axis (feature f ↔ channel (f // inner) % C) and a split
    one (channel c ↔ part (c // inner) % size). Sizes are periods (`ModelView.period`): a k·batch axis is
    indexed modulo k, the batch folded in front of k elements, so within a block the batch drops out and its
    k counts as the outermost part (heads folded into the batch: (B, C) ↔ (B·H, D))."""
    sx, sy = n.shape(x), n.shape(y)
    if sx is None or sy is None:
        return False
    tx, ty = terms(n.view, x), terms(n.view, y)
    blocks = align(sx, sy, tx, ty)
    if blocks is None:
        return False
    px = [n.view.period(x, k) for k in range(len(sx))]
    py = [n.view.period(y, m) for m in range(len(sy))]
    for xs, ys in blocks:
        xs1 = [k for k in xs if sx[k] != 1]
        ys1 = [m for m in ys if sy[m] != 1]
        if not (_batch_outermost(xs1, tx) and _batch_outermost(ys1, ty)):
            continue  # the batch inside a block (e.g. (L, B) -> L·B): not followed, frozen
        if any(px[k] is None for k in xs1) or any(py[m] is None for m in ys1):
            continue
        xp = [k for k in xs1 if px[k] > 1]  # the parts that carry elements besides the batch
        yp = [m for m in ys1 if py[m] > 1]
        if len(xp) == 1 and len(yp) == 1:
            n.link(x, xp[0], y, yp[0])
        elif len(xp) == 1 and len(yp) > 1:
            # one axis split into several, e.g. (C) -> (g, C/g) for a channel shuffle or (C) -> (heads, d):
            # follow one part m; input index c ↔ (c // inner) % size[m]. Attention heads (a part that becomes
            # a batch axis of an activation @ activation MatMul) are followed as whole heads; otherwise the
            # innermost part: a channel is then "index j in every block", removed from all blocks at once.
            # The parts not followed stay frozen.
            k, m = xp[0], _split_part(n, y, yp)
            inner = int(np.prod([py[j] for j in yp if j > m], dtype=np.int64))
            c = np.arange(px[k])
            n.link(x, k, y, m, c, (c // inner) % py[m])
        elif len(yp) == 1 and len(xp) > 1:
            chan = [k for k in xp if n.c.is_channel((x, k))]
            if not chan:
                continue
            k, m = chan[0], yp[0]
            inner = int(np.prod([px[j] for j in xp if j > k], dtype=np.int64))
            f = np.arange(py[m])
            n.link(x, k, y, m, (f // inner) % px[k], f)
        elif len(xp) > 1 and len(yp) > 1:
            # several parts on both sides, e.g. (positions 2048, C 64) -> (512, 256): the innermost axes share
            # their inner factor, so when one last axis divides the other, the smaller one is followed into the
            # larger modulo its size (feature f ↔ channel f % C); the other axes stay frozen
            k, m = xp[-1], yp[-1]
            if py[m] % px[k] == 0 and n.c.is_channel((x, k)):
                f = np.arange(py[m])
                n.link(x, k, y, m, f % px[k], f)
            elif px[k] % py[m] == 0 and px[k] != py[m]:
                c = np.arange(px[k])
                n.link(x, k, y, m, c, c % py[m])
    return True


def _batch_outermost(axes: list[int], t: list[Term | None] | None) -> bool:
    """At most one k·batch axis in the block, and it comes first."""
    if t is None:
        return True
    b = [i for i, a in enumerate(axes) if t[a] is not None and t[a][1] == 1]
    return not b or b == [0]


_PASS_SAME = frozenset(UNARY) | frozenset(BROADCAST) | {"CastLike", "Expand", "RotaryEmbedding"}


def _split_part(n: NodeCtx, y: str, parts: list[int]) -> int:
    """Which part of a split axis to follow: the innermost part that is a head axis, else the innermost."""
    for m in reversed(parts[:-1]):
        if feeds_batched_matmul(n.view, y, m):
            return m
    return parts[-1]


def feeds_batched_matmul(view, t: str, ax: int, depth: int = 0) -> bool:
    """Does axis `ax` of `t` reach a MatMul of two activations as a batch axis (the head axis of attention
    scores Q @ Kᵀ or of probabilities @ V), through ops that only move or broadcast it? A look-ahead used only
    to choose which part of a split axis to follow: any answer gives a correct analysis."""
    if depth > 16:
        return False
    for i in view.consumers.get(t, []):
        node = view.model.graph.node[i]
        op = node.op_type
        sx = view.shape(t)
        outs = [o for o in node.output if o]
        if sx is None or not outs:
            continue
        if op == "MatMul":
            if ax < len(sx) - 2 and not any(v in view.inits for v in node.input):
                return True
            continue
        if op == "Attention" and node.domain in ("", "ai.onnx") and len(sx) == 4:
            return ax == 1  # the opset-23 op on (B, N, S, h): axis 1 is its head axis
        nxt: list[tuple[str, int]] = []
        y = outs[0]
        sy = view.shape(y)
        if sy is None:
            continue
        if op == "Transpose":
            perm = attr(node, "perm")
            perm = list(perm) if perm is not None else list(range(len(sx)))[::-1]
            nxt.append((y, perm.index(ax)))
        elif op in _PASS_SAME or (op in ("Softmax", "LogSoftmax") and norm_axis(
                int(attr(node, "axis", -1)), len(sx)) != ax):
            nxt.append((y, ax + len(sy) - len(sx)))
        elif op == "Gather":
            g = norm_axis(int(attr(node, "axis", 0)), len(sx))
            si = view.shape(node.input[1]) if len(node.input) > 1 else None
            if g != ax and si is not None and node.input[0] == t:
                nxt.append((y, ax if ax < g else ax + len(si) - 1))
        elif op in ("Split", "Slice"):
            nxt.extend((o, ax) for o in outs)  # along another axis or not, the axis keeps its position
        elif op in ("Reshape", "Squeeze", "Unsqueeze", "Flatten") and node.input[0] == t:
            blocks = align(sx, sy, terms(view, t), terms(view, y))
            for xs, ys in blocks or []:
                if ax in xs:
                    # the axis must be the outermost known axis of its block (only the batch may precede it)
                    xs1 = [k for k in xs if sx[k] != 1]
                    xs_known = [k for k in xs1 if sx[k] is not None]
                    ys1 = [m for m in ys if sy[m] != 1]
                    ys_known = [m for m in ys1 if sy[m] is not None]
                    if len(ys1) == 1 and xs_known and xs_known[0] == ax:
                        nxt.append((y, ys1[0]))  # kept, or merged (into the batch: heads folded into it)
                    elif xs1 == [ax] and len(ys_known) == 1:
                        nxt.append((y, ys_known[0]))  # split off the batch again
        for o, oa in nxt:
            if feeds_batched_matmul(view, o, oa, depth + 1):
                return True
    return False


class Flatten(Rule):
    """Flatten to 2-D at `axis`: a factorised reshape with no shape constant to rewrite."""

    ops = ("Flatten",)

    def couple(self, n: NodeCtx) -> None:
        reshape_links(n, n.inp(0), n.out())


class SqueezeLike(Rule):
    """Squeeze/Unsqueeze add or drop size-1 axes: the other axes keep their order."""

    ops = ("Squeeze", "Unsqueeze")

    def couple(self, n: NodeCtx) -> None:
        if n.inp(1) is not None:
            n.free(n.inp(1))
        reshape_links(n, n.inp(0), n.out())


class Reshape(Rule):
    """Reshape to the target shape (second input). Kept axes pass through; a channel axis merged with
    others is factorised; the target is rewritten (a computed target is folded to a constant then)."""

    ops = ("Reshape",)
    always_rewrite = True

    def couple(self, n: NodeCtx) -> None:
        x, t, y = n.inp(0), n.inp(1), n.out()
        if not target_rewritable(n.view, n.node):
            n.bail("target shape is computed and its length is unknown")
            return
        n.free(t)
        reshape_links(n, x, y)

    def rewrite(self, n: RewriteCtx) -> None:
        y = n.out()
        sy = n.shape(y)
        if sy is None:
            return
        changed = [m for m in range(len(sy)) if n.kept(y, m) is not None]
        t = n.const(n.inp(1))
        if t is None and not changed:
            # a computed target whose Shape sources were pruned must be folded too
            changed_src = any(n.rw.changed_tensor(s) for s in shape_sources(n.view, n.inp(1)))
            if not changed_src:
                return
        elif not changed:
            return
        new_dims = [n.new_dim(y, m) for m in range(len(sy))]
        if t is None:
            target = folded_target(n.view, n.node, new_dims)
            if target is not None:
                n.set_input_const(1, np.array(target, dtype=np.int64))
            else:
                # computed from several dynamic dims: every static entry becomes its new constant at run time
                # (also those computed from a pruned Shape that must not follow it); dynamic entries (batch,
                # sequence, batch·heads) keep following the shapes they are computed from
                n.patch_input(1, {m: int(d) for m, d in enumerate(new_dims) if d is not None})
            return
        target = t.copy().reshape(-1)
        allowzero = int(n.attr("allowzero", 0))
        x = n.inp(0)
        rx = len(n.shape(x) or ())
        for m in range(len(target)):
            if target[m] == 0 and not allowzero:
                # 0 copies input axis m: keep it only if that still gives the new output size
                if m < rx and n.new_dim(x, m) == new_dims[m]:
                    continue
                assert new_dims[m] is not None
                target[m] = new_dims[m]
            elif m in changed and target[m] != -1:
                target[m] = new_dims[m]
        n.set_input_const(1, target.astype(t.dtype))


class Tile(Rule):
    """Tile repeats the input `repeats[k]` times along axis k: axes repeated once pass through."""

    ops = ("Tile",)

    def couple(self, n: NodeCtx) -> None:
        x, y = n.inp(0), n.out()
        reps = n.const(n.inp(1))
        r = n.rank(x)
        if reps is None or r is None:
            return
        n.free(n.inp(1))
        n.same(x, y, [(k, k) for k in range(r) if int(reps.reshape(-1)[k]) == 1])


class Expand(Rule):
    """Broadcast the input to `shape` (bidirectional): input axes of the output's size pass through; a
    constant shape entry equal to the channel count is rewritten."""

    ops = ("Expand",)

    def couple(self, n: NodeCtx) -> None:
        x, s, y = n.inp(0), n.inp(1), n.out()
        sx, sy, ss = n.shape(x), n.shape(y), n.shape(s)
        if sx is None or sy is None or (n.const(s) is None and (ss is None or ss[0] != len(sy))):
            n.bail("target shape is computed at run time and its length is unknown")
            return
        n.free(s)
        off = len(sy) - len(sx)
        n.same(x, y, [(j, j + off) for j, d in enumerate(sx) if d is not None and d == sy[j + off]])

    def rewrite(self, n: RewriteCtx) -> None:
        x, s = n.inp(0), n.inp(1)
        sx = n.shape(x)
        if sx is None:
            return
        if n.const(s) is None:  # computed target: a passed-through axis may always be asked for as 1
            ss = n.shape(s)
            off = (ss[0] if ss and ss[0] else len(sx)) - len(sx)
            patch = {j + off: 1 for j in range(len(sx)) if n.kept(x, j) is not None and j + off >= 0}
            if patch:
                n.patch_input(1, patch)
            return
        shp = n.const(s).copy()
        off = len(shp) - len(sx)
        changed = False
        for j in range(len(sx)):
            kept = n.kept(x, j)
            if kept is not None and j + off >= 0 and shp[j + off] not in (1,):
                shp[j + off] = len(kept)
                changed = True
        if changed:
            n.set_input_const(1, shp)


_SHAPE_MATH = {"Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Mul", "Add", "Sub", "Div", "Identity", "ReduceProd", "Neg", "Abs"}


def shape_dependents(n: NodeCtx, start: str) -> tuple[set[int], list[str]]:
    """Follow a Shape output through shape arithmetic. Returns the indices of the Shape vector whose values
    reach something other than a Reshape target (a constant `Gather` narrows them) and the names of the
    nodes where they do."""
    view = n.view
    nodes = view.model.graph.node
    r = len(n.shape(n.inp(0)) or ())
    lo = int(n.attr("start", 0))
    hi = int(n.attr("end", r))
    lo = max(0, min(r, lo + r if lo < 0 else lo))
    hi = max(0, min(r, hi + r if hi < 0 else hi))
    reads: set[int] = set()
    sinks: list[str] = []
    stack: list[tuple[str, frozenset[int]]] = [(start, frozenset(range(lo, hi)))]
    seen: set[str] = set()
    while stack:
        t, axes = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in view.folded:
            continue  # a value known from static dims: the rewriter writes it as a constant
        if t in view.graph_outputs:
            reads |= axes
            sinks.append(f"graph output '{t}'")
        for i in view.consumers.get(t, []):
            node = nodes[i]
            if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] == t and \
                    target_rewritable(view, node):
                continue  # the rewriter folds or patches computed Reshape targets
            narrowed = axes
            if node.op_type == "Gather" and node.input[0] == t and t == start:
                idx = view.array(node.input[1]) if len(node.input) > 1 else None
                if idx is not None:
                    narrowed = frozenset(lo + (int(v) % max(1, hi - lo)) for v in idx.reshape(-1))
            if node.op_type in _SHAPE_MATH:
                for o in node.output:
                    if o:
                        stack.append((o, narrowed))
            else:
                reads |= narrowed
                sinks.append(f"{node.op_type} '{node.name}'")
    return reads, sinks


class ShapeOf(Rule):
    """Shape/Size read only the input's dimensions, never its values. A dimension whose value flows into
    anything but a Reshape target (which the rewriter folds to the pruned constant) is frozen."""

    ops = ("Shape", "Size")

    def couple(self, n: NodeCtx) -> None:
        x = n.inp(0)
        n.free(x)
        r = n.rank(x)
        if r is None:
            return
        if n.op == "Size":
            reads, sinks = set(range(r)), [f"Size '{n.name}'"]
        else:
            reads, sinks = shape_dependents(n, n.out())
        for k in sorted(reads):
            n.freeze(x, k, f"its size is used as a value by {sinks[0]}")


RULES: tuple[type[Rule], ...] = (
    Concat, Split, Slice, Gather, Pad, Resize, Transpose, Flatten, SqueezeLike, Reshape, Tile, Expand, ShapeOf,
)
