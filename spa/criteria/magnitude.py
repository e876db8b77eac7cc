"""Magnitude criteria, aggregated over every weight member of a group.

For each initializer member (producer rows "out", consumer columns "in", norm/affine "scale") the L_p norm of
each index's slice is summed per channel (a channel may own several indices: grouped-conv blocks, flattened
features), then the members are averaged. Biases and statistics do not vote.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..analysis import Group, Member

VOTING = ("out", "in", "scale")


CHUNK_BYTES = 1 << 18  # |w| is taken this much at a time, in one reused buffer that stays in the CPU cache


def _index_sums(w: np.ndarray, axis: int, p: int) -> np.ndarray:
    """Per index along `axis`: the sum of |w| (p=1) or w² (p=2) over the other axes, in float64.

    |w| is written a block of rows at a time into one small buffer and summed straight away, instead of into a
    temporary as large as the weight: a fresh process would otherwise take a page fault on every page of that
    temporary (on ResNet-50 the first l1 scoring took 0.06-0.08 s, later ones 0.03 s)."""
    w = w if w.dtype in (np.float32, np.float64) else w.astype(np.float32)
    if w.ndim == 0 or axis > 1:  # not a Conv/Gemm/MatMul weight layout: one whole temporary
        a = np.abs(w) if p == 1 else np.square(w)
        return np.moveaxis(a, axis, 0).reshape(w.shape[axis], -1).sum(axis=1).astype(np.float64)
    w2 = np.ascontiguousarray(w).reshape(w.shape[0], -1)
    rows = max(1, CHUNK_BYTES // max(1, w2[0].nbytes))
    buf = np.empty((min(rows, w2.shape[0]), w2.shape[1]), w2.dtype)
    out = np.zeros(w2.shape[0] if axis == 0 else w2.shape[1])  # axis 1: per (column, kernel position) first
    for start in range(0, w2.shape[0], rows):
        blk = buf[: min(rows, w2.shape[0] - start)]
        (np.abs if p == 1 else np.square)(w2[start:start + len(blk)], out=blk)
        if axis == 0:
            out[start:start + len(blk)] = blk.sum(axis=1)
        else:
            out += blk.sum(axis=0)
    return out if axis == 0 else out.reshape(w.shape[1], -1).sum(axis=1)


def _per_channel(m: Member, w: np.ndarray, size: int, p: int) -> np.ndarray:
    per_index = _index_sums(w, m.axis, p)
    sel = m.ids >= 0
    return np.bincount(m.ids[sel], weights=per_index[sel], minlength=size)


def _lp(group: Group, weights: Callable[[str], np.ndarray], p: int, roles=VOTING) -> np.ndarray | None:
    total = np.zeros(group.size)
    count = 0
    for m in group.params:
        if m.role not in roles:
            continue
        w = weights(m.tensor)
        if w.dtype.kind != "f":
            continue
        total += _per_channel(m, w, group.size, p)
        count += 1
    if count == 0:
        return None
    s = total / count
    return np.sqrt(s) if p == 2 else s


def l1(group: Group, weights, rng, data=None) -> np.ndarray:
    s = _lp(group, weights, 1)
    return np.ones(group.size) if s is None else s


def l2(group: Group, weights, rng, data=None) -> np.ndarray:
    s = _lp(group, weights, 2)
    return np.ones(group.size) if s is None else s


def random_scores(group: Group, weights, rng: np.random.Generator, data=None) -> np.ndarray:
    return rng.random(group.size) + 1e-3


def bn_scale(group: Group, weights, rng, data=None) -> np.ndarray:
    """|gamma| of the group's norm scales (BatchNorm/InstanceNorm, per-channel Mul); L1 where it has none."""
    s = _lp(group, weights, 1, roles=("scale",))
    return l1(group, weights, rng) if s is None else s
