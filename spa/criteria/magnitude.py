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


def _per_channel(m: Member, w: np.ndarray, size: int, p: int) -> np.ndarray:
    w = w if w.dtype in (np.float32, np.float64) else w.astype(np.float32)
    # where the channel axis cannot be moved first by a view, |w| (or w²) is written in that order straight
    # away, so that the 2-D view below is free (a moved-axis reshape would copy every consumer's weights once
    # more); elsewhere it keeps w's layout, so the sums, and the scores, are exactly what they were
    moved = np.moveaxis(w, m.axis, 0)
    try:
        np.reshape(moved, (w.shape[m.axis], -1), copy=False)
        order = "K"
    except ValueError:
        order = "C"
    a = np.abs(moved, order=order) if p == 1 else np.square(moved, order=order)
    # sum over the other axes in the array's own precision (pairwise summation), via a 2-D view
    a2 = a.reshape(w.shape[m.axis], -1)
    per_index = a2.sum(axis=1).astype(np.float64)
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
