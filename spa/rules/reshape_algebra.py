"""Reshape algebra: how the axes of a reshape (Reshape, Flatten, Squeeze/Unsqueeze) correspond, and how a
reshape target is written as a constant again after pruning. Pure functions of shapes and symbols, used by the
shape rules (rules.shape); no channel is linked here.

A dim is a *term* (constant, power of the batch): 8 → (8, 0), batch → (1, 1), 4·batch → (4, 1). Two shapes of
one reshape split into consecutive *blocks* of equal element count (`align`); within a block, axes are merged
or split, and the rules follow a channel axis through them by factorisation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx

from ..view import Shape, batch_multiple
from ..onnxutil import attr

if TYPE_CHECKING:
    from ..view import ModelView


Term = tuple[int, int]  # a dim as (constant, power of the batch): 8 → (8, 0), batch → (1, 1), batch*4 → (4, 1)


def terms(view: ModelView, t: str) -> list[Term | None] | None:
    """The dims of `t` as terms; None for a dynamic dim that is not a known multiple of the batch."""
    s = view.shape(t)
    if s is None:
        return None
    syms = view.symbols.get(t, ())
    out: list[Term | None] = []
    for a, d in enumerate(s):
        if d is not None:
            out.append((d, 0))
        else:
            k = batch_multiple(syms, a, view.batch_symbol)
            out.append(None if k is None else (k, 1))
    return out


def align(sx: Shape, sy: Shape, tx: list[Term | None] | None = None,
          ty: list[Term | None] | None = None) -> list[tuple[list[int], list[int]]] | None:
    """Split two shapes of one reshape into consecutive axis blocks of equal element count.

    Size-1 axes form blocks of their own. A dim that is k·batch (terms `tx`/`ty`, from the shape probe) must be
    the first (outermost) axis of its block on both sides: the batch folded in front of k other elements
    (heads folded into the batch, Swin windows). Any other unknown axis must face an unknown axis.
    Returns None when the shapes cannot be aligned."""
    tx = tx if tx is not None else [None if d is None else (d, 0) for d in sx]
    ty = ty if ty is not None else [None if d is None else (d, 0) for d in sy]
    blocks: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(tx) or j < len(ty):
        if i < len(tx) and tx[i] == (1, 0):
            blocks.append(([i], []))
            i += 1
            continue
        if j < len(ty) and ty[j] == (1, 0):
            blocks.append(([], [j]))
            j += 1
            continue
        if i == len(tx) or j == len(ty):
            return None
        if tx[i] is None or ty[j] is None:
            other = ty[j] if tx[i] is None else tx[i]
            if other is None or other[1] == 1:
                blocks.append(([i], [j]))
                i, j = i + 1, j + 1
                continue
            return None
        px, py, xs, ys = tx[i], ty[j], [i], [j]
        i, j = i + 1, j + 1
        while px != py:
            grow_x = px[1] < py[1] or (px[1] == py[1] and px[0] < py[0])
            t, k = (tx, i) if grow_x else (ty, j)
            if k == len(t) or t[k] is None:
                return None  # unknown
            if grow_x:
                px = (px[0] * t[k][0], px[1] + t[k][1])
                xs.append(i)
                i += 1
            else:
                py = (py[0] * t[k][0], py[1] + t[k][1])
                ys.append(j)
                j += 1
            if px[1] > 1 or py[1] > 1:
                return None
        blocks.append((xs, ys))
    return blocks


def folded_target(view: ModelView, node: onnx.NodeProto, dims: list[int | None]) -> list[int] | None:
    """A constant reshape target for `dims` (None = symbolic): 0 copies the input's axis of the same name
    (allowzero = 0), at most one -1. None if the target cannot be written as a constant."""
    x, y = node.input[0], node.output[0]
    sym_x = view.symbols.get(x, ())
    sym_y = view.symbols.get(y, ())
    allowzero = attr(node, "allowzero", 0)
    out, minus = [], 0
    for m, d in enumerate(dims):
        if d is not None:
            out.append(int(d))
        elif not allowzero and m < len(sym_x) and m < len(sym_y) and sym_y[m] and sym_x[m] == sym_y[m]:
            out.append(0)
        else:
            out.append(-1)
            minus += 1
    return out if minus <= 1 else None


def foldable(view: ModelView, node: onnx.NodeProto) -> bool:
    s = view.shape(node.output[0])
    return s is not None and folded_target(view, node, list(s)) is not None


def target_rewritable(view: ModelView, node: onnx.NodeProto) -> bool:
    """Can the Reshape rule rewrite this node's target: a constant, a computed target that folds, or one of
    known length (its static entries are then patched at run time, see Reshape.rewrite)."""
    if view.array(node.input[1]) is not None or foldable(view, node):
        return True
    st = view.shape(node.input[1])
    return st is not None and st[0] is not None and view.shape(node.output[0]) is not None
