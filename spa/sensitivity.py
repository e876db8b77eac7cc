"""Sensitivity-aware global allocation: how many channels each group loses, decided by the OBS cost itself.

Local pruning removes the same fraction of every group. OBSPA already knows what a channel costs: ΔL, the
least-squares error its removal leaves in each consumer's outputs after the optimal re-fit. Divided by the
consumer's output energy E = mean ‖W x‖² (the part of its outputs that its input channels carry), ΔL/E is the fraction of that layer's signal lost,
comparable across layers of any width or scale; summed over a group's consumers it ranks every channel of the
network on one scale. `energy_scores` computes it; `energy_plan` removes the cheapest channels network-wide
until the pruned model's MACs match those of the local plan at the same ratio (so a comparison with local
pruning is at equal cost, not at an equal channel count that a global ranking would fill with cheap channels).
Groups without a supported consumer keep the local ratio.
"""

from __future__ import annotations

import numpy as np

from .analysis import Analysis
from .calib import Consumer
from .criteria import score
from .criteria.obspa import obspa
from .plan import Plan, make_plan

BISECT_STEPS = 12
# `prune(allocation="energy")` lets a group lose at most ENERGY_CAP x the ratio. all-MiniLM-L6-v2 at 0.3, selection
# sentences (benchmarks/generalise_selection.txt): cosine 0.867-0.874 over seeds 0-4 (local 0.823-0.832); on the OCR
# recogniser it lost to local (seeds 0, 1: 0.918, 0.880 vs 0.934, 0.902 at 0.2), so it is not the default.
ENERGY_CAP = 1.5


def output_energy(c: Consumer, w: np.ndarray) -> float:
    """Mean squared output of the consumer's weight (bias left out) under its statistics: tr(W H Wᵀ) / rows."""
    assert c.H is not None
    W = c.matrix(w).astype(np.float64)
    d = W.shape[1]
    return float(np.einsum("ij,jk,ik->", W, c.H[:d, :d], W)) / max(1, c.rows)


def energy_scores(a: Analysis, stats: dict) -> dict[int, np.ndarray]:
    """Per prunable group with at least one consumer in `stats`: Σ over its consumers of ΔL / E (raw, not
    normalised per group, so that groups compare)."""
    view = a.view
    out: dict[int, np.ndarray] = {}
    for g in a.prunable:
        keys = [(m.tensor, m.axis) for m in g.params if m.role == "in" and (m.tensor, m.axis) in stats]
        if not keys:
            continue
        total = np.zeros(g.size)
        for key in dict.fromkeys(keys):
            c = stats[key]
            e = output_energy(c, view.array(c.weight))
            total += obspa(g, view.array, None, {key: c}) / max(e, 1e-30)
        out[g.id] = total
    return out


def energy_plan(a: Analysis, stats: dict, ratio: float, *, max_group_ratio: float = 0.75, seed: int = 0) -> Plan:
    """The global plan by ΔL/E whose MACs match the local OBSPA plan's at `ratio` (bisection on the global
    ratio); groups without consumers pruned locally at `ratio`."""
    from .view import ModelView
    from .plan import keep_mask
    from .report import model_stats
    from .rewrite import Rewriter

    rng = np.random.default_rng(seed)
    raw = energy_scores(a, stats)
    local_scores = {g.id: score("obspa", g, a.view.array, rng, stats) for g in a.prunable}
    rest = {k: v for k, v in local_scores.items() if k not in raw}
    local = make_plan(a, local_scores, ratio, criterion="obspa")

    def macs(plan: Plan) -> int:
        return model_stats(ModelView.build(Rewriter(a, keep_mask(a, plan)).apply())).macs

    def merged(r: float) -> Plan:
        p = make_plan(a, raw, r, global_=True, max_group_ratio=max_group_ratio, criterion="obspa")
        q = make_plan(a, rest, ratio, criterion="obspa")
        return Plan(p.groups + q.groups, "obspa", ratio, "energy")

    want = macs(local)
    lo, hi = 0.0, min(0.99, max_group_ratio)
    best = merged(hi)
    if macs(best) > want:  # the cap binds: as far as it allows
        return best
    for _ in range(BISECT_STEPS):
        mid = (lo + hi) / 2
        p = merged(mid)
        if macs(p) <= want:
            hi, best = mid, p
        else:
            lo = mid
    return best
