"""Criteria: plug-ins that score the channels of a group (higher = more important).

A criterion is a `Criterion`: a name, a function `(group, weights, rng, data) -> np.ndarray` of shape
`(group.size,)`, and what it needs besides the weights (`needs`): nothing, "activations" (per consumer layer:
input statistics, see spa.calib) or "gradients" (∂L/∂w per initializer through the ONNX → torch round trip,
spa.criteria.gradient.collect). `weights(name)` returns an initializer's values; `data` is what `needs` asks
for (None otherwise). Scores are normalised by the group mean, so groups can be ranked together (global
pruning). To add one, write the function and add a `Criterion` to `CRITERIA`. obspa additionally returns
weight updates once the plan is known (`compensates`, spa.criteria.obspa.compensate).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..analysis import Group
from .magnitude import bn_scale, l1, l2, random_scores

Needs = Literal["activations", "gradients"] | None


@dataclass(frozen=True)
class Criterion:
    """One scoring plug-in and what it needs (see the module docstring)."""

    name: str
    fn: Callable[..., np.ndarray]
    needs: Needs = None
    compensates: bool = False  # also updates the kept weights once the plan is known (obspa)

    @property
    def needs_data(self) -> bool:
        return self.needs is not None

    def __call__(self, group: Group, weights: Callable[[str], np.ndarray], rng: np.random.Generator,
                 data=None) -> np.ndarray:
        return np.asarray(self.fn(group, weights, rng, data), dtype=np.float64)


def _lazy(module: str, name: str) -> Callable[..., np.ndarray]:
    """`module.name`, imported on the first call: a plain magnitude prune then never loads the data criteria
    and their statistics machinery (spa.calib, spa.priors: part of `spa prune`'s start-up otherwise)."""

    def fn(*args):
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)(*args)

    fn.__name__ = fn.__qualname__ = name
    return fn


CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    Criterion("l1", l1),
    Criterion("l2", l2),
    Criterion("random", random_scores),
    Criterion("bn", bn_scale),
    Criterion("obspa", _lazy("obspa", "obspa"), "activations", compensates=True),
    Criterion("act", _lazy("obspa", "act"), "activations"),
    Criterion("wanda", _lazy("obspa", "wanda"), "activations"),
    Criterion("taylor", _lazy("gradient", "taylor"), "gradients"),
    Criterion("snip", _lazy("gradient", "snip"), "gradients"),
)}


def get(name: str) -> Criterion:
    """The criterion called `name` (BadArgument naming the choices otherwise)."""
    c = CRITERIA.get(name)
    if c is None:
        from ..errors import BadArgument

        raise BadArgument(f"unknown criterion {name!r} (choose from {', '.join(CRITERIA)})")
    return c


def needs_data(name: str) -> bool:
    """True for criteria that read activations or gradients (False for unknown names: refused elsewhere)."""
    c = CRITERIA.get(name)
    return c is not None and c.needs_data


def score(name: str, group: Group, weights: Callable[[str], np.ndarray], rng: np.random.Generator,
          stats=None) -> np.ndarray:
    s = get(name)(group, weights, rng, stats)
    assert s.shape == (group.size,), (name, s.shape, group.size)
    if not np.isfinite(s).all():  # NaN/inf weights would otherwise make every channel look alike
        from ..errors import BadModel

        raise BadModel(f"channel group {group.key} ({', '.join(m.label for m in group.params[:2])}) has NaN or "
                       f"infinite {name} scores: its weights (or statistics) are not finite")
    m = s.mean()
    return s / m if m > 0 else np.ones_like(s)
