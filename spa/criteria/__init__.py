"""Criteria: plug-ins that score the channels of a group (higher = more important).

A criterion is a function `(group, weights, rng) -> np.ndarray` of shape `(group.size,)`; `weights(name)`
returns an initializer's values. Scores are normalised by the group mean, so groups can be ranked together
(global pruning). To add one, write the function and put it in `CRITERIA`. Criteria in `NEEDS_DATA` also get
`stats` (per consumer layer: input statistics, see spa.calib) as a fourth argument; "obspa" additionally
returns weight updates once the plan is known (`obspa.compensate`). Criteria in `NEEDS_GRADS` get gradients
instead (through the ONNX → torch round trip).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..analysis import Group
from .gradient import snip, taylor
from .magnitude import bn_scale, l1, l2, random_scores
from .obspa import act, obspa, wanda

Criterion = Callable[[Group, Callable[[str], np.ndarray], np.random.Generator], np.ndarray]

CRITERIA: dict[str, Criterion] = {
    "l1": l1,
    "l2": l2,
    "random": random_scores,
    "bn": bn_scale,
    "obspa": obspa,
    "act": act,
    "wanda": wanda,
    "taylor": taylor,
    "snip": snip,
}
NEEDS_GRADS = ("taylor", "snip")  # their fourth argument: ∂L/∂w per initializer (spa.criteria.gradient.collect)
NEEDS_DATA = ("obspa", "act", "wanda", *NEEDS_GRADS)


def score(name: str, group: Group, weights: Callable[[str], np.ndarray], rng: np.random.Generator,
          stats=None) -> np.ndarray:
    fn = CRITERIA[name]
    s = np.asarray(fn(group, weights, rng, stats) if name in NEEDS_DATA else fn(group, weights, rng), dtype=np.float64)
    assert s.shape == (group.size,), (name, s.shape, group.size)
    if not np.isfinite(s).all():  # NaN/inf weights would otherwise make every channel look alike
        from ..errors import BadModel

        raise BadModel(f"channel group {group.key} ({', '.join(m.label for m in group.params[:2])}) has NaN or "
                       f"infinite {name} scores: its weights (or statistics) are not finite")
    m = s.mean()
    return s / m if m > 0 else np.ones_like(s)
