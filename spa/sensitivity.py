"""Sensitivity-aware global allocation: how many channels each group loses, decided by the OBS cost itself.

Local pruning removes the same fraction of every group. OBSPA already knows what a channel costs: ΔL, the
least-squares error its removal leaves in each consumer's outputs after the optimal re-fit. Divided by the
consumer's output energy E = mean ‖W x‖² (the part of its outputs that its input channels carry), ΔL/E is the fraction of that layer's signal lost,
comparable across layers of any width or scale; summed over a group's consumers it ranks every channel of the
network on one scale. `energy_scores` computes it; `energy_plan` removes the cheapest channels network-wide
until the pruned model's MACs match those of the local plan at the same ratio (so a comparison with local
pruning is at equal cost, not at an equal channel count that a global ranking would fill with cheap channels).
Groups without a supported consumer keep the local ratio. It is the default allocation of calibrated obspa (with
real inputs and the re-fit), capped at REFIT_ENERGY_CAP x the ratio per group, and of data-free obspa on float
inputs up to DATA_FREE_ENERGY_MAX_RATIO (spa.api._allocation), capped at REFIT_ENERGY_CAP or ENERGY_CAP, whichever
moves the outputs less on fresh prior samples (spa.probe); `--allocate energy` elsewhere, capped at ENERGY_CAP.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import parallel
from .analysis import Analysis
from .calib import Consumer
from .criteria import score
from .criteria.obspa import invert, obspa
from .plan import Plan, make_plan

BISECT_STEPS = 12
# `prune(allocation="energy")` lets a group lose at most ENERGY_CAP x the ratio. all-MiniLM-L6-v2 at 0.3, selection
# sentences (benchmarks/generalise_selection.txt): cosine 0.867-0.874 over seeds 0-4 (local 0.823-0.832). On the OCR
# recogniser with "binary" on the clean lines alone it lost (seeds 0, 1: 0.918, 0.880 vs 0.934, 0.902 at 0.2); with
# "strokes" on the widened OCR selection set it wins at every ratio measured (worst / mean share of the original's
# accuracy, seeds 0-2: 0.941 / 0.973, 0.910 / 0.944, 0.801 / 0.884 at 0.1 / 0.2 / 0.3 against 0.880 / 0.944,
# 0.852 / 0.937, 0.211 / 0.539 local; held out: 0.936 / 0.971, 0.918 / 0.965, 0.893 / 0.932, generalise_ocr_rec.txt).
# Not the data-free default alone: PP-OCRv4 det's selection pages lose with it at 0.2-0.5 and Magika's selection files
# at 0.1, 0.3 and 0.5 (both at 0.5 with a cap of 1.1 too). Since branch selfcheck it is one of the two caps that the
# data-free default on float inputs probes (spa.probe).
ENERGY_CAP = 1.5
# With real calibration data and obspa's re-fit (where the allocation is the default, spa.api._allocation): at most
# 1.1x. PP-OCRv4 rec at 0.5 with 32 lines and their rescaled copies (benchmarks/obspa_calib_fast_choice.txt, choice
# set, seeds 0-2; one copy at 0.9): cap 1.05 / 1.1 / 1.2 / 1.3 kept 92.2 / 92.6 / 91.5 / 86.4 % of the original's
# accuracy on average (local 90.5 %); groups pruned far beyond the ratio are where the re-fit cannot recover.
REFIT_ENERGY_CAP = 1.1
# Data-free obspa (its update, no re-fit) with a plain ratio on a model with floating-point inputs only uses the energy
# allocation at REFIT_ENERGY_CAP by default up to this ratio, the local plan above (spa.api._allocation). Chosen on the
# selection sets only (benchmarks/generalise_selection.txt, worst over seeds, cap 1.1 against local): PP-OCRv4 rec
# (6 distributions x seeds 0-2) 0.935 / 0.905 / 0.732 vs 0.880 / 0.852 / 0.211 at 0.1 / 0.2 / 0.3; PP-OCRv4 det's
# pages 0.895 / 0.804 / 0.752 vs 0.863 / 0.802 / 0.751, but 0.183 vs 0.313 at 0.5. 0.3 is the largest ratio measured
# at which it never lost there (det only ties at 0.2-0.3 and loses at 0.5; nothing between 0.3 and 0.5 measured).
# Models with id inputs keep the local plan: all-MiniLM-L6-v2 (token ids) lost on every seed at 0.1 / 0.2 / 0.3 (worst
# 0.945 / 0.874 / 0.819 vs 0.946 / 0.876 / 0.823; seeds 0-2, 0-2, 0-4); Magika (bytes) lost at 0.3 / 0.5 and only
# chooses channels anyway (spa.api._choice_only). Held out once afterwards (generalise_ocr_rec.txt): the recogniser's
# worst case rose at 0.1 / 0.3 (0.777 -> 0.841, 0.140 -> 0.818) but fell at 0.2 (0.889 -> 0.804, number-only text).
# Since branch selfcheck that default probes both caps, REFIT_ENERGY_CAP and ENERGY_CAP (spa.probe).
DATA_FREE_ENERGY_MAX_RATIO = 0.3


def output_energy(c: Consumer, w: np.ndarray) -> float:
    """Mean squared output of the consumer's weight (bias left out) under its statistics: tr(W H Wᵀ) / rows; with
    blocked statistics the sum over the blocks (the correlations across blocks are not kept)."""
    assert c.grams, "no statistics"
    W = c.matrix(w)
    d = W.shape[1]
    total = 0.0
    for part, h in zip(c.parts or [None], c.grams):
        if part is None:
            Wb, hb = W, h[:d, :d]
        else:
            inside = np.flatnonzero(part < d)  # the block's weight columns (its bias column left out)
            Wb, hb = W[:, part[inside]], h[np.ix_(inside, inside)]
        # two products, not one three-operand einsum: that runs as one naive loop over (outputs, d, d), 25x slower
        # on a 480 x 2880 weight (17.1 s against 0.69 s here, one thread, loaded machine); in H's precision
        Wb = Wb.astype(hb.dtype, copy=False)
        total += float(np.sum((Wb @ hb) * Wb, dtype=np.float64))
    return total / max(1, c.rows)


def energy_scores(a: Analysis, stats: dict) -> dict[int, np.ndarray]:
    """Per prunable group with at least one consumer in `stats`: Σ over its consumers of ΔL / E (raw, not
    normalised per group, so that groups compare)."""
    return {k: v[0] for k, v in _costs(a, stats).items()}


def _costs(a: Analysis, stats: dict) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per prunable group with at least one consumer in `stats`: (Σ ΔL / E, Σ ΔL) over its consumers, the
    second being obspa's own score of the group (so that energy_plan's local plan does not solve again)."""
    view = a.view
    invert(stats)  # each inverse once, before the groups that share consumers ask for it
    scored = [(g, list(dict.fromkeys(keys))) for g in a.prunable
              if (keys := [(m.tensor, m.axis) for m in g.params if m.role == "in" and (m.tensor, m.axis) in stats])]

    def group_costs(item: tuple) -> tuple[np.ndarray, np.ndarray]:
        g, keys = item
        total, cost = np.zeros(g.size), np.zeros(g.size)
        for key in keys:
            c = stats[key]
            e = output_energy(c, view.array(c.weight))
            dl = obspa(g, view.array, None, {key: c})
            total += dl / max(e, 1e-30)
            cost += dl
        return total, cost

    # groups side by side (the same numbers as one after the other), the widest first so that the last ones are
    # short: the inverses and solves were 0.3 s of PP-OCRv4 rec's calibrated prune on one core
    widest = sorted(scored, key=lambda gk: -sum(stats[k].inverse_work for k in gk[1]))
    costs = dict(zip((g.id for g, _ in widest), parallel.ordered_map(group_costs, widest, parallel.workers())))
    return {g.id: costs[g.id] for g, _ in scored}


def energy_plan(a: Analysis, stats: dict, ratio: float, *, max_group_ratio: float = 0.75, seed: int = 0) -> Plan:
    """The global plan by ΔL/E whose MACs match the local OBSPA plan's at `ratio` (bisection on the global
    ratio); groups without consumers pruned locally at `ratio`."""
    return energy_plans(a, stats, ratio, (max_group_ratio,), seed=seed)[0]


def energy_plans(a: Analysis, stats: dict, ratio: float, max_group_ratios, *, seed: int = 0) -> list[Plan]:
    """`energy_plan` at each of several caps, the costs computed once (spa.probe compares them)."""
    from .plan import keep_mask

    rng = np.random.default_rng(seed)
    costs = _costs(a, stats)
    raw = {k: v[0] for k, v in costs.items()}
    local_scores = {g.id: costs[g.id][1] if g.id in costs else score("obspa", g, a.view.array, rng, stats)
                    for g in a.prunable}
    rest = {k: v for k, v in local_scores.items() if k not in raw}
    local = make_plan(a, local_scores, ratio, criterion="obspa")

    count = mac_counter(a)

    def macs(plan: Plan) -> int:
        return count(keep_mask(a, plan))

    want = macs(local)

    rest_plan = make_plan(a, rest, ratio, criterion="obspa")  # the groups without consumers: local, whatever the cap

    def at_cap(max_group_ratio: float) -> Plan:
        def merged(r: float) -> Plan:
            p = make_plan(a, raw, r, global_=True, max_group_ratio=max_group_ratio, criterion="obspa")
            return Plan(p.groups + rest_plan.groups, "obspa", ratio, "energy")

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

    return [at_cap(c) for c in max_group_ratios]


def pruned_macs(a: Analysis, keep: np.ndarray) -> int:
    """MACs per sample of the model pruned to `keep`, without rewriting it (`mac_counter`)."""
    return mac_counter(a)(keep)


def mac_counter(a: Analysis) -> Callable[[np.ndarray], int]:
    """keep mask → MACs per sample of the model pruned to it, without rewriting it: the original's shapes with
    every channel axis (each slot of the analysis) shrunk to its kept channels, counted by each node's rule as
    `spa.report.model_stats` counts the rewritten model's (the rewrite only slices channel axes). The nodes that
    count MACs and the slots of their tensors are found once: energy_plan's bisection asks 14 times, and on
    PP-OCRv4 rec a rewrite with shape inference took 0.14 s CPU per step (2 s per prune, a quarter of the rest
    of a calibrated prune), this 0.001 s, to the same count."""
    from .report import node_macs

    nodes = [n for n in a.view.model.graph.node if node_macs(a.view.shapes, n, a.rules)]
    tensors = {t for n in nodes for t in (*n.input, *n.output) if t}
    slots = [(name, axis, comps) for (name, axis), comps in a.slot_comps.items() if name in tensors]

    def count(keep: np.ndarray) -> int:
        shapes = dict(a.view.shapes)
        for name, axis, comps in slots:
            s = shapes.get(name)
            if s is not None and axis < len(s) and s[axis] is not None:
                shapes[name] = (*s[:axis], int(np.count_nonzero(keep[comps])), *s[axis + 1 :])
        return sum(node_macs(shapes, n, a.rules) for n in nodes)

    return count
