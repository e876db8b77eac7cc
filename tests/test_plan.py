"""Ratio semantics (local, global with cap, round-to), --ignore, criteria, and plans applied to other models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import spa
from spa.api import compute_plan, prepare
from spa.analysis import analyze
from spa.errors import BadArgument
from spa.plan import Plan

SAMPLE = Path(__file__).resolve().parents[1] / "models" / "samples" / "resnet18_tiny.onnx"


@pytest.fixture(scope="module")
def analysis():
    view, _ = prepare(SAMPLE)
    return analyze(view)


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.5, 0.75, 0.99])
def test_local_ratio_per_group(analysis, ratio):
    plan = compute_plan(analysis, ratio=ratio)
    by_key = {g.key: g for g in analysis.prunable}
    for gp in plan.groups:
        n = by_key[gp.key].size
        assert len(gp.keep) == max(1, n - math.floor(ratio * n))
    if ratio == 0.0:
        assert plan.groups == []
    else:
        assert {gp.key for gp in plan.groups} == {g.key for g in analysis.prunable if math.floor(ratio * g.size) > 0}


def test_global_budget_and_cap(analysis):
    total = sum(g.size for g in analysis.prunable)
    plan = compute_plan(analysis, ratio=0.5, global_=True, max_group_ratio=0.6)
    removed = sum(gp.size - len(gp.keep) for gp in plan.groups)
    assert removed == math.floor(0.5 * total)
    for gp in plan.groups:
        assert gp.size - len(gp.keep) <= math.floor(0.6 * gp.size)
    # global ranking differs from uniform local pruning
    local = compute_plan(analysis, ratio=0.5)
    assert sorted(len(g.keep) for g in plan.groups) != sorted(len(g.keep) for g in local.groups)


def test_round_to(analysis):
    plan = compute_plan(analysis, ratio=0.4, round_to=8)
    for gp in plan.groups:
        assert len(gp.keep) % 8 == 0 or len(gp.keep) == gp.size
    _, rep = spa.prune(str(SAMPLE), ratio=0.4, round_to=8, oracle=True)
    assert rep.oracle <= 1e-5


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn", "random"])
def test_criteria_choose_lowest(analysis, criterion):
    plan = compute_plan(analysis, ratio=0.5, criterion=criterion, seed=3)
    assert plan.groups and plan.criterion == criterion


def test_l1_keeps_largest_rows():
    """With a single producer, L1 keeps exactly the rows of largest |W| mass."""
    view, _ = prepare(SAMPLE)
    a = analyze(view)
    g = next(g for g in a.prunable if len([m for m in g.params if m.role == "out"]) == 1)
    plan = compute_plan(a, ratio=0.5, criterion="l1")
    gp = next(p for p in plan.groups if p.key == g.key)
    # recompute independently: mean over voting members of per-channel L1
    per = []
    for m in g.params:
        if m.role in ("out", "in", "scale"):
            w = np.abs(np.moveaxis(view.array(m.tensor), m.axis, 0)).reshape(len(m.ids), -1).sum(1)
            per.append(np.bincount(m.ids[m.ids >= 0], weights=w[m.ids >= 0], minlength=g.size))
    s = np.mean(per, axis=0)
    assert set(gp.keep) == set(np.argsort(-s)[: len(gp.keep)].tolist())


@pytest.mark.parametrize("shape,axis", [((6, 5, 3, 3), 0), ((6, 5, 3, 3), 1), ((7, 4), 0), ((7, 4), 1), ((9,), 0),
                                        ((2, 3, 4, 5), 2), ((3, 1, 1, 1), 1)])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_blocked_lp_sums_match_the_plain_sums(monkeypatch, shape, axis, p, dtype):
    """l1/l2 take |w| a few rows at a time (no weight-sized temporary); with blocks of one or two rows the
    per-index sums must still be the plain ones."""
    from spa.criteria import magnitude

    w = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    want = (np.abs(w.astype(np.float64)) ** p).sum(axis=tuple(i for i in range(w.ndim) if i != axis))
    for chunk in (1, 48, 1 << 18):  # one row, a few rows, the whole weight per block
        monkeypatch.setattr(magnitude, "CHUNK_BYTES", chunk)
        got = magnitude._index_sums(w, axis, p)
        assert got.shape == want.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-3 if dtype == np.float16 else 1e-6)


def test_ignore_freezes_matching_groups():
    _, rep_all = spa.prune(str(SAMPLE), ratio=0.5)
    _, rep_ign = spa.prune(str(SAMPLE), ratio=0.5, ignore=[r"layer1\..*"])
    assert rep_ign.groups_pruned < rep_all.groups_pruned
    assert rep_ign.after.params > rep_all.after.params
    with pytest.raises(BadArgument):
        spa.prune(str(SAMPLE), ratio=0.5, ignore=["("])


def test_plan_applies_to_a_retrained_copy(tmp_path):
    _, rep = spa.prune(str(SAMPLE), ratio=0.5)
    path = tmp_path / "plan.json"
    rep.plan.save(path)
    # a "trained" copy: same graph, different weights
    m = onnx.load(SAMPLE)
    rng = np.random.default_rng(1)
    for i, t in enumerate(m.graph.initializer):
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(a + rng.normal(0, 0.1, a.shape).astype(a.dtype), t.name))
    pruned, rep2 = spa.prune(m, plan=Plan.load(path))
    assert rep2.after.params == rep.after.params
    assert rep2.plan.to_json() == Plan.load(path).to_json()


def test_plan_for_another_graph_is_refused():
    _, rep = spa.prune(str(SAMPLE), ratio=0.5)
    other = Path(__file__).resolve().parents[1] / "models" / "samples" / "simple_cnn.onnx"
    with pytest.raises(BadArgument, match="not in this model"):
        spa.prune(str(other), plan=rep.plan)


def test_ratio_validation():
    for bad in (1.0, -0.01, float("nan")):
        with pytest.raises(BadArgument):
            spa.prune(str(SAMPLE), ratio=bad)
    with pytest.raises(BadArgument):
        spa.prune(str(SAMPLE), ratio=0.5, round_to=0)


def test_large_generated_graph_prunes_exactly():
    """2,500 nodes: analysis, rewrite and the oracle at scale (timing lives in benchmarks/scaling.txt)."""
    from models.synthetic import residual_chain

    m = residual_chain(500)
    _, rep = spa.prune(m, ratio=0.5, oracle=True)
    assert rep.groups_pruned == 501 and rep.oracle <= 1e-5


def test_prune_options_are_one_object_for_the_cli_and_the_api(tmp_path):
    """spa.prune(model, PruneOptions(...)) is spa.prune(model, **fields); keywords override the object."""
    from spa.api import PruneOptions
    from spa.errors import BadArgument

    o = PruneOptions(ratio=0.4, criterion="l2", round_to=4)
    a, rep_a = spa.prune(str(SAMPLE), o)
    b, rep_b = spa.prune(str(SAMPLE), ratio=0.4, criterion="l2", round_to=4)
    assert [list(t.dims) for t in a.graph.initializer] == [list(t.dims) for t in b.graph.initializer]
    assert rep_a.plan.groups == rep_b.plan.groups
    _, rep_c = spa.prune(str(SAMPLE), o, ratio=0.2)  # a keyword wins over the object
    assert rep_c.plan.ratio == 0.2 and rep_c.channels_removed < rep_a.channels_removed
    assert o.ratio == 0.4  # the caller's object is not changed
    with pytest.raises(BadArgument, match="one of --target-macs"):
        spa.prune(str(SAMPLE), target_macs=0.5, target_params=0.5)
    with pytest.raises(TypeError):
        spa.prune(str(SAMPLE), ratios=0.5)
