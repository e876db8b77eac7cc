"""Data-free priors registered in spa.priors, and OBS-cost global allocation (spa.sensitivity)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import spa
from models.patterns import build
from spa import calib
from spa.analysis import analyze
from spa.api import prepare
from spa.criteria.obspa import compensate
from spa.view import ModelView
from spa.plan import keep_mask, make_plan
from spa.priors import PRIORS, mixed_inputs
from spa.report import model_stats
from spa.rewrite import Rewriter
from spa.sensitivity import energy_plan, energy_scores, pruned_macs
from spa.verify import oracle_error

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "models" / "samples" / "simple_cnn.onnx"
TOL = 1e-5


def _view() -> ModelView:
    return ModelView.build(onnx.load(str(ROOT / "models/samples/resnet18_tiny.onnx")))


def test_mix_is_registered_as_a_source():
    assert "mix" in PRIORS and "mix" in calib.SOURCES


def test_mix_holds_both_polarities_continuous_and_noise_samples_deterministically():
    """A quarter each: dark-minority binary, light-minority binary, continuous (structured) and noise; the seed
    decides the samples and their order."""
    view = _view()
    name = view.graph_inputs[0]
    x = mixed_inputs(view, 16, seed=0)[name]
    assert x.shape[0] == 16 and x.dtype == np.float32
    two_level = [set(np.unique(s)) <= {-1.0, 1.0} for s in x]
    dark = np.array([(s == -1).mean() for s in x])
    assert sum(two_level) == 8
    assert (dark[two_level] < 0.51).sum() == 4 and (dark[two_level] > 0.49).sum() == 4
    assert np.array_equal(x, mixed_inputs(view, 16, seed=0)[name])
    assert not np.array_equal(x, mixed_inputs(view, 16, seed=1)[name])
    assert mixed_inputs(view, 3, seed=0)[name].shape[0] == 3  # fewer samples than parts


def test_obspa_with_the_mix_prior_passes_the_oracle():
    _, rep = spa.prune(str(SAMPLE), ratio=0.5, criterion="obspa", calib_source="mix", calib_samples=8, oracle=True)
    assert rep.groups_pruned > 0 and rep.oracle is not None and rep.oracle <= TOL


def test_cli_accepts_mix_and_refuses_an_unknown_prior(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "spa", *args], check=False, capture_output=True, text=True,
                              cwd=ROOT)

    ok = cli("prune", str(SAMPLE), "-o", str(tmp_path / "o.onnx"), "-c", "obspa", "--calib-source", "mix",
             "--calib-samples", "8")
    assert ok.returncode == 0, ok.stderr
    bad = cli("prune", str(SAMPLE), "-o", str(tmp_path / "p.onnx"), "-c", "obspa", "--calib-source", "mixx")
    assert bad.returncode == 2 and "unknown calibration source 'mixx'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "p.onnx").exists()


def test_strokes_is_the_default_dark_strokes_on_a_light_background_deterministically():
    """The default data-free source draws, per image sample, a light background and darker strokes (a minority
    of the pixels) in [-1, 1], the same in every channel; several brightness levels across samples; a seed
    decides the samples; a non-image input gets the same values as from "binary" (both are "noise" there)."""
    from spa.priors import strokes_inputs

    assert calib.DEFAULT_SOURCE == "strokes" and "strokes" in calib.SOURCES
    view = _view()
    name = view.graph_inputs[0]
    x = strokes_inputs(view, 16, seed=0)[name]
    assert x.shape == calib.noise_inputs(view, 16, seed=0)[name].shape and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert np.array_equal(x[:, :1].repeat(x.shape[1], axis=1), x)
    for s in x[:, 0]:
        values, counts = np.unique(s, return_counts=True)
        background = values[counts.argmax()]
        ink = s < background
        assert 0.0 < ink.mean() < 0.6 and not (s > background).any()
    assert np.ptp([np.median(s) for s in x]) > 0.3
    assert np.array_equal(x, strokes_inputs(view, 16, seed=0)[name])
    assert not np.array_equal(x, strokes_inputs(view, 16, seed=1)[name])
    tokens, _ = prepare(_token_model(300))
    assert np.array_equal(strokes_inputs(tokens, 8, seed=0)["ids"], calib.binary_inputs(tokens, 8, seed=0)["ids"])


def test_strokes_draw_one_line_up_to_line_max_and_a_page_of_lines_above():
    """An image at most LINE_MAX high is one band of strokes (the same draws as with pages=False); a taller one
    holds several lines: its ink rows form more than one run, separated by blank rows."""
    from spa.priors import LINE_MAX, _strokes

    for seed in range(4):
        line = _strokes(np.random.default_rng(seed), 1, LINE_MAX, 320)
        assert np.array_equal(line, _strokes(np.random.default_rng(seed), 1, LINE_MAX, 320, pages=False))
    runs = []
    for seed in range(8):
        page = _strokes(np.random.default_rng(seed), 1, 320, 320)[0]
        background = np.max(page)
        rows = (page < background).any(axis=1).astype(int)
        runs.append(int(np.sum(np.diff(rows) == 1) + rows[0]))
    assert min(runs) >= 2 and max(runs) > 3


def test_obspa_with_the_default_strokes_prior_passes_the_oracle():
    _, rep = spa.prune(str(SAMPLE), ratio=0.5, criterion="obspa", calib_samples=8, oracle=True)
    assert rep.groups_pruned > 0 and rep.oracle is not None and rep.oracle <= TOL
    assert rep.calibration["source"] == "strokes"


def _stats(name: str):
    view, _ = prepare(build(name))
    a = analyze(view)
    return a, calib.collect(a, "noise", samples=8, seed=3)


@pytest.mark.parametrize("name", ["two_gemms", "concat_offsets", "flatten_to_gemm"])
def test_energy_plan_matches_local_macs_and_passes_the_oracle(name):
    a, st = _stats(name)
    plan = energy_plan(a, st, 0.5)
    local = spa.api.compute_plan(a, ratio=0.5, criterion="obspa", data=st)
    keep = keep_mask(a, plan)
    pruned = Rewriter(a, keep).apply()
    assert model_stats(ModelView.build(pruned)).macs <= model_stats(ModelView.build(
        Rewriter(a, keep_mask(a, local)).apply())).macs
    over = compensate(a, keep, st)
    pruned = Rewriter(a, keep, overrides=over).apply()
    assert oracle_error(a, keep, pruned, overrides=over, precision="float64") <= TOL


@pytest.mark.parametrize("name", ["grouped_conv", "depthwise_conv", "flatten_to_gemm", "nonlocal_block",
                                  "concat_offsets", "channel_gram_linear", "split_concat_permute"])
def test_pruned_macs_equal_the_rewritten_models(name):
    """energy_plan counts a plan's MACs from the original's shapes (spa.sensitivity.pruned_macs): on random
    plans it must give what model_stats gives for the rewritten model, grouped convs and attention included."""
    view, _ = prepare(build(name))
    a = analyze(view)
    assert a.prunable
    rng = np.random.default_rng(0)
    for ratio in (0.5, 0.6, 0.8):
        scores = {g.id: rng.random(g.size) for g in a.prunable}
        keep = keep_mask(a, make_plan(a, scores, ratio))
        assert not keep.all()
        assert pruned_macs(a, keep) == model_stats(ModelView.build(Rewriter(a, keep).apply())).macs


def test_energy_scores_rank_a_dead_channel_lowest_in_the_whole_network():
    """A channel whose consumer columns are zero costs nothing to remove: ΔL/E = 0, the lowest of every group,
    so the global plan removes it first."""
    model = build("two_gemms")
    a, st = _stats("two_gemms")
    g = next(g for g in a.prunable if any(m.role == "in" and (m.tensor, m.axis) in st for m in g.params))
    m = next(m for m in g.params if m.role == "in" and (m.tensor, m.axis) in st)
    init = next(t for t in model.graph.initializer if t.name == m.tensor)
    w = onnx.numpy_helper.to_array(init).copy()
    np.moveaxis(w, m.axis, 0)[np.nonzero(m.ids == 2)[0]] = 0.0
    init.CopyFrom(onnx.numpy_helper.from_array(w, m.tensor))
    view, _ = prepare(model)
    a = analyze(view)
    st = calib.collect(a, "noise", samples=8, seed=3)
    sc = energy_scores(a, st)
    assert sc[g.id][2] <= 1e-9 * sc[g.id].max()
    assert all(sc[g.id][2] <= s.min() for k, s in sc.items() if k != g.id)
    assert 2 not in next(p for p in energy_plan(a, st, 0.1).groups if p.key == g.key).keep


def test_output_energy_of_blocked_statistics_sums_the_dense_h_over_its_blocks(monkeypatch):
    """A consumer with a blocked H (wide layers, spa.calib.DENSE_COLS) has an output energy: tr(W H Wᵀ) over its
    diagonal blocks, the same sums the dense H gives on those blocks (the same rows); energy allocation then
    prunes such models (it asserted on them before) and the oracle holds."""
    from spa.sensitivity import output_energy

    a, dense = _stats("two_gemms")
    monkeypatch.setenv(calib.DENSE_COLS_ENV, "4")
    monkeypatch.setattr(calib, "BLOCK_COLS", 16)
    blocked = calib.collect(a, "noise", samples=8, seed=3)
    assert {c.kind for c in blocked.values()} == {"blocked"} and max(len(c.parts) for c in blocked.values()) > 1
    for key, c in blocked.items():
        w = a.view.array(c.weight)
        W = c.matrix(w).astype(np.float64)
        d, H = W.shape[1], dense[key].H
        want = sum(float(np.sum((W[:, p[p < d]] @ H[np.ix_(p[p < d], p[p < d])]) * W[:, p[p < d]])) for p in c.parts)
        assert np.isclose(output_energy(c, w), want / dense[key].rows, rtol=1e-6)
        if len(c.parts) > 1:  # the cross-block terms are gone
            assert output_energy(c, w) != pytest.approx(output_energy(dense[key], w), rel=1e-6)
    _, rep = spa.prune(build("two_gemms"), ratio=0.4, criterion="obspa", calib_samples=8, allocation="energy",
                       oracle=True)
    assert rep.plan.mode == "energy" and rep.calibration["consumers"] == {"blocked": len(blocked)}
    assert rep.oracle is not None and rep.oracle <= TOL


@pytest.mark.parametrize("encoding", ["equal", "onehot"])
def test_synthetic_ids_cover_a_one_hot_alphabet(encoding):
    """Integer inputs that a model one-hot encodes (Equal against a constant range, as jax2tf writes Magika's
    byte encoding, or the OneHot op) get synthetic ids over the whole alphabet, not just 0/1."""
    from onnx import TensorProto, helper

    depth = 37
    nodes = [helper.make_node("Unsqueeze", ["ids", "ax"], ["u"])]
    inits = [onnx.numpy_helper.from_array(np.array([2], np.int64), "ax"),
             onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal((depth, 4)).astype(np.float32), "w")]
    if encoding == "equal":
        inits.append(onnx.numpy_helper.from_array(np.arange(depth, dtype=np.int32).reshape(1, 1, depth), "range"))
        nodes += [helper.make_node("Equal", ["u", "range"], ["eq"]), helper.make_node("Cast", ["eq"], ["oh"], to=1)]
    else:
        inits += [onnx.numpy_helper.from_array(np.array(depth, np.int64), "depth"),
                  onnx.numpy_helper.from_array(np.array([0, 1], np.float32), "values")]
        nodes = [helper.make_node("OneHot", ["ids", "depth", "values"], ["oh"])]
    nodes.append(helper.make_node("MatMul", ["oh", "w"], ["y"]))
    g = helper.make_graph(nodes, "onehot", [helper.make_tensor_value_info("ids", TensorProto.INT32, ["N", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    view, _ = prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    ids = calib.noise_inputs(view, 8, seed=0)["ids"]
    assert ids.min() == 0 and ids.max() == depth - 1 and len(np.unique(ids)) == depth


def test_synthetic_attention_masks_are_padding_masks_and_ids_cover_the_vocabulary():
    """Data-free sources: a (batch, length) integer input that indexes nothing (an attention mask) is ones for a
    random length, then zeros, per sample; token ids keep covering their vocabulary; deterministic for a seed."""
    from onnx import TensorProto, helper

    emb = onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32), "emb")
    g = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["e"]), helper.make_node("Cast", ["mask"], ["m"], to=1),
         helper.make_node("Unsqueeze", ["m", "ax"], ["mu"]), helper.make_node("Mul", ["e", "mu"], ["y"])],
        "masked", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 12]),
                   helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [emb, onnx.numpy_helper.from_array(np.array([2], np.int64), "ax")])
    view, _ = prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    f = calib.binary_inputs(view, 16, seed=0)
    mask, ids = f["mask"], f["ids"]
    lengths = mask.sum(1)
    assert np.array_equal(mask, (np.arange(12)[None, :] < lengths[:, None]).astype(mask.dtype))
    assert lengths.min() >= 1 and np.ptp(lengths) > 0
    assert ids.max() > 1 and ids.max() < 50
    assert np.array_equal(mask, calib.binary_inputs(view, 16, seed=0)["mask"])


def _token_model(vocab: int, seed: int = 0) -> onnx.ModelProto:
    """ids (N, 12) → Gather(embedding vocab×16) → MatMul 16×32 → Relu → MatMul 32×8: a prunable width of 32."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    inits = [onnx.numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("emb", (vocab, 16)), ("w1", (16, 32)), ("w2", (32, 8)))]
    g = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["e"]), helper.make_node("MatMul", ["e", "w1"], ["h"]),
         helper.make_node("Relu", ["h"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "tokens", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_common_tokens_are_the_long_rows_along_the_first_component():
    """A table whose first principal component separates 150 planted long rows from 1350 short ones (on either
    sign of the component): exactly the planted rows are chosen, whichever way the SVD orients it."""
    from spa.priors import common_tokens

    rng = np.random.default_rng(0)
    u = rng.standard_normal(24)
    u /= np.linalg.norm(u)
    planted = np.sort(rng.choice(1500, 150, replace=False))
    for sign in (1.0, -1.0):
        t = 0.3 * rng.standard_normal((1500, 24)) - sign * 1.0 * u
        t[planted] = 0.3 * rng.standard_normal((150, 24)) + sign * 4.0 * u
        assert np.array_equal(common_tokens(t, share=0.1), planted)


def test_low_cosine_tokens_are_the_rows_pointing_away_from_the_mean_row():
    """A table of rows sharing a mean direction, 60 planted rows pointing against it: exactly those are the 4 %
    least aligned with the mean row, whatever their length."""
    from spa.priors import low_cosine_tokens

    rng = np.random.default_rng(0)
    u = rng.standard_normal(24)
    u /= np.linalg.norm(u)
    t = 0.3 * rng.standard_normal((1500, 24)) + 2.0 * u
    planted = np.sort(rng.choice(1500, 60, replace=False))
    t[planted] = rng.uniform(0.5, 5.0, (60, 1)) * (0.3 * rng.standard_normal((60, 24)) - 1.0 * u)
    assert np.array_equal(low_cosine_tokens(t, 0.04), planted)


def test_everyday_tokens_add_the_low_cosine_rows_to_the_common_ones():
    """`everyday_tokens` = `common_tokens` ∪ LOW_SHARE of `low_cosine_tokens`: on a table where the two sets differ,
    both are in it and nothing else."""
    from spa.priors import LOW_SHARE, common_tokens, everyday_tokens, low_cosine_tokens

    t = onnx.numpy_helper.to_array(_token_model(1200).graph.initializer[0])  # the embedding table
    common, low = common_tokens(t), low_cosine_tokens(t, LOW_SHARE)
    assert len(np.setdiff1d(low, common)) > 10
    assert np.array_equal(everyday_tokens(t), np.union1d(common, low))


def test_common_prior_draws_ids_from_the_everyday_tokens_of_large_vocabularies_only():
    """Token ids of a vocabulary of at least COMMON_MIN_ROWS rows come from `everyday_tokens` of its table (more
    than one of them, both kinds, deterministic for a seed); a smaller alphabet keeps the default's uniform ids."""
    from spa.priors import COMMON_MIN_ROWS, common_token_inputs, common_tokens, everyday_tokens

    view, _ = prepare(_token_model(COMMON_MIN_ROWS + 100))
    ids = common_token_inputs(view, 16, seed=0)["ids"]
    common = common_tokens(view.array("emb"))
    assert len(common) == round(0.1 * (COMMON_MIN_ROWS + 100))
    assert np.isin(ids, everyday_tokens(view.array("emb"))).all() and len(np.unique(ids)) > 20
    assert not np.isin(ids, common).all()  # the low-cosine rows are drawn too
    assert np.array_equal(ids, common_token_inputs(view, 16, seed=0)["ids"])
    small, _ = prepare(_token_model(300))
    assert np.array_equal(common_token_inputs(small, 16, seed=0)["ids"], calib.binary_inputs(small, 16, seed=0)["ids"])


def test_obspa_with_the_common_prior_passes_the_oracle():
    model = _token_model(1200)
    _, rep = spa.prune(model, ratio=0.5, criterion="obspa", calib_source="common", calib_samples=8, oracle=True)
    assert rep.groups_pruned > 0 and rep.oracle is not None and rep.oracle <= TOL
    assert rep.calibration["source"] == "common"


def _masked_token_model(vocab: int = 60) -> onnx.ModelProto:
    """ids, mask (N, 12) → Gather(embedding) · mask → MatMul 16×32 → Relu → MatMul 32×8."""
    from onnx import TensorProto, helper

    m = _token_model(vocab)
    g = m.graph
    g.input.append(helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", 12]))
    g.initializer.append(onnx.numpy_helper.from_array(np.array([2], np.int64), "ax"))
    g.node[1].input[0] = "em"
    g.node.insert(1, helper.make_node("Cast", ["mask"], ["mf"], to=TensorProto.FLOAT))
    g.node.insert(2, helper.make_node("Unsqueeze", ["mf", "ax"], ["mu"]))
    g.node.insert(3, helper.make_node("Mul", ["e", "mu"], ["em"]))
    return m


def _calib_tokens(n: int = 6) -> dict[str, np.ndarray]:
    """Sentences of 3-9 tokens from ids 40-49, padded with id 0 (which the bag must never draw)."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 10, n)
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int64)
    return {"ids": np.where(mask == 1, rng.integers(40, 50, (n, 12)), 0), "mask": mask}


def test_token_bag_keeps_the_calibration_and_shuffles_its_unpadded_tokens_into_new_sequences():
    from spa.priors import token_bag_inputs

    view, _ = prepare(_masked_token_model())
    c = _calib_tokens()
    f = token_bag_inputs(view, c, 16, seed=0)
    assert f["ids"].shape == (22, 12) and f["mask"].shape == (22, 12)
    assert np.array_equal(f["ids"][:6], c["ids"]) and np.array_equal(f["mask"][:6], c["mask"])
    new = f["ids"][6:]
    assert set(np.unique(new)) <= set(range(40, 50)) and len(np.unique(new)) > 5  # never the padding id 0
    lengths = f["mask"][6:].sum(1)  # the default's padding masks
    assert np.array_equal(f["mask"][6:], (np.arange(12)[None, :] < lengths[:, None]).astype(np.int64))
    assert np.array_equal(new, token_bag_inputs(view, c, 16, seed=0)["ids"][6:])


def test_token_bag_needs_calibration_inputs():
    view, _ = prepare(_masked_token_model())
    a = analyze(view)
    with pytest.raises(spa.errors.BadArgument, match="token-bag.*needs calibration inputs"):
        calib.source_feeds(a, "token-bag", None)


def test_obspa_with_a_token_bag_passes_the_oracle_and_skips_the_refit(monkeypatch):
    """The statistics read the calibration and the shuffled sequences; the sequential re-fit (which fits the
    synthetic part too) does not run unless asked for."""
    import importlib

    obspa_mod = importlib.import_module("spa.criteria.obspa")  # the module (spa.criteria.obspa is also a function)

    def no_refit(*args, **kwargs):
        raise AssertionError("the re-fit ran")

    monkeypatch.setattr(obspa_mod, "refit", no_refit)
    _, rep = spa.prune(_masked_token_model(), ratio=0.5, criterion="obspa", calib=_calib_tokens(),
                       calib_source="token-bag", calib_samples=10, oracle=True)
    assert rep.groups_pruned > 0 and rep.oracle is not None and rep.oracle <= TOL
    assert rep.calibration["samples"] == 16
    with pytest.raises(AssertionError, match="the re-fit ran"):
        spa.prune(_masked_token_model(), ratio=0.5, criterion="obspa", calib=_calib_tokens())


def test_energy_allocation_option_prunes_at_the_local_plans_macs_and_passes_the_oracle():
    """prune(allocation="energy") is spa.sensitivity.energy_plan: groups lose different shares (at most
    ENERGY_CAP x the ratio each), the MACs stay at or under the local plan's, the oracle holds; it needs obspa."""
    from spa.errors import BadArgument

    _, rl = spa.prune(str(SAMPLE), ratio=0.3, criterion="obspa", calib_samples=8)
    _, rep = spa.prune(str(SAMPLE), ratio=0.3, criterion="obspa", calib_samples=8, allocation="energy",
                            oracle=True)
    assert rep.oracle is not None and rep.oracle <= TOL
    assert rep.after.macs <= rl.after.macs
    shares = {g.key: 1 - len(g.keep) / g.size for g in rep.plan.groups}
    assert 0.3 < max(shares.values()) <= 0.45 + 1e-9  # local would remove at most 0.3 of every group
    with pytest.raises(BadArgument, match="--allocate energy needs -c obspa"):
        spa.prune(str(SAMPLE), ratio=0.3, criterion="l1", allocation="energy")
    with pytest.raises(BadArgument, match="unknown allocation"):
        spa.prune(str(SAMPLE), ratio=0.3, criterion="obspa", allocation="fisher")


def test_calibrated_obspa_allocates_by_energy_by_default_at_the_local_macs():
    """With real calibration data (and so the re-fit) obspa's default allocation is energy, each group losing at
    most REFIT_ENERGY_CAP x the ratio, at or under the local plan's MACs, the oracle holding; data-free above
    DATA_FREE_ENERGY_MAX_RATIO, with a target, or asked for, it is local."""
    from spa.sensitivity import REFIT_ENERGY_CAP

    view, _ = prepare(onnx.load(str(SAMPLE)))
    x = calib.noise_inputs(view, 8, seed=2)
    _, rep = spa.prune(str(SAMPLE), ratio=0.4, criterion="obspa", calib=x, oracle=True)
    _, loc = spa.prune(str(SAMPLE), ratio=0.4, criterion="obspa", calib=x, allocation="local")
    assert rep.plan.mode == "energy" and loc.plan.mode == "local"
    assert rep.oracle is not None and rep.oracle <= TOL
    assert rep.after.macs <= loc.after.macs
    shares = [1 - len(g.keep) / g.size for g in rep.plan.groups]
    assert max(shares) <= REFIT_ENERGY_CAP * 0.4 + 1e-9
    assert {round(v, 6) for v in shares} != {round(1 - len(g.keep) / g.size, 6) for g in loc.plan.groups}
    _, free = spa.prune(str(SAMPLE), ratio=0.4, criterion="obspa", calib_samples=8)
    _, tgt = spa.prune(str(SAMPLE), criterion="obspa", calib=x, target_macs=0.6)
    assert free.plan.mode == "local" and tgt.plan.mode == "global"


def test_data_free_obspa_allocates_by_energy_up_to_its_max_ratio_and_locally_above():
    """Data-free obspa with a plain ratio spreads it by the OBS cost at 0.2 (up to DATA_FREE_ENERGY_MAX_RATIO: each
    group at most the cap spa.probe chose x the ratio, where `--allocate energy` goes up to ENERGY_CAP x), at or under the
    local plan's MACs with the oracle holding; locally at 0.5, with --round-to (the energy plan ignores it),
    --global or allocation="local", and on models with id inputs (a token model; a byte model, whose statistics
    only choose channels), which `--allocate energy` still spreads."""
    from spa.sensitivity import DATA_FREE_ENERGY_MAX_RATIO, ENERGY_CAP, REFIT_ENERGY_CAP

    assert 0.2 <= DATA_FREE_ENERGY_MAX_RATIO < 0.5
    _, rep = spa.prune(str(SAMPLE), ratio=0.2, criterion="obspa", calib_samples=8, oracle=True)
    _, loc = spa.prune(str(SAMPLE), ratio=0.2, criterion="obspa", calib_samples=8, allocation="local")
    _, opt = spa.prune(str(SAMPLE), ratio=0.2, criterion="obspa", calib_samples=8, allocation="energy")
    assert rep.plan.mode == "energy" and loc.plan.mode == "local"
    assert rep.oracle is not None and rep.oracle <= TOL
    assert rep.after.macs <= loc.after.macs
    shares = [1 - len(g.keep) / g.size for g in rep.plan.groups]
    cap = rep.calibration["allocation"]["cap"]  # the probed cap (spa.probe; tests/test_probe.py)
    assert cap in (REFIT_ENERGY_CAP, ENERGY_CAP)
    assert max(shares) <= cap * 0.2 + 1e-9
    assert max(shares) <= REFIT_ENERGY_CAP * 0.2 + 1e-9 < max(1 - len(g.keep) / g.size for g in opt.plan.groups) \
        or cap == ENERGY_CAP
    assert {round(v, 6) for v in shares} != {round(1 - len(g.keep) / g.size, 6) for g in loc.plan.groups}
    for kw in ({"ratio": 0.5}, {"ratio": 0.2, "round_to": 2}):
        _, other = spa.prune(str(SAMPLE), criterion="obspa", calib_samples=8, **kw)
        assert other.plan.mode == "local", kw
    _, glob = spa.prune(str(SAMPLE), ratio=0.2, criterion="obspa", calib_samples=8, global_=True)
    assert glob.plan.mode == "global"
    _, byte = spa.prune(_token_model(257), ratio=0.2, criterion="obspa", calib_samples=8)
    _, tokens = spa.prune(_token_model(300), ratio=0.2, criterion="obspa", calib_samples=8)
    _, asked = spa.prune(_token_model(300), ratio=0.2, criterion="obspa", calib_samples=8, allocation="energy")
    assert byte.calibration["rank_only"] and byte.plan.mode == "local" and tokens.plan.mode == "local"
    assert asked.plan.mode == "energy"


def test_cli_allocate_energy_and_a_bad_allocation(tmp_path):
    run = [sys.executable, "-m", "spa", "prune", str(SAMPLE), "-c", "obspa", "--calib-samples", "8", "-r", "0.3"]
    ok = subprocess.run(run + ["-o", str(tmp_path / "e.onnx"), "--allocate", "energy", "-q"], cwd=ROOT,
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "e.onnx").exists()
    bad = subprocess.run(run + ["-o", str(tmp_path / "b.onnx"), "--allocate", "fisher"], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("spa: error: unknown allocation")
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "b.onnx").exists()


def test_token_bag_common_adds_common_token_sequences_and_skips_the_refit_too(monkeypatch):
    import importlib

    from spa.priors import common_tokens, token_bag_inputs

    view, _ = prepare(_masked_token_model(1200))
    c = _calib_tokens()
    f = token_bag_inputs(view, c, 16, seed=0, common=True)
    assert f["ids"].shape == (38, 12)
    assert np.array_equal(f["ids"][:22], token_bag_inputs(view, c, 16, seed=0)["ids"])
    assert np.isin(f["ids"][22:], common_tokens(view.array("emb"))).all()
    assert np.array_equal(f["ids"], calib.source_feeds(analyze(view), "token-bag-common", c, samples=16)["ids"])

    def no_refit(*args, **kwargs):
        raise AssertionError("the re-fit ran")

    monkeypatch.setattr(importlib.import_module("spa.criteria.obspa"), "refit", no_refit)
    _, rep = spa.prune(_masked_token_model(1200), ratio=0.5, criterion="obspa", calib=c,
                       calib_source="token-bag-common", calib_samples=10, oracle=True)
    assert rep.oracle is not None and rep.oracle <= TOL and rep.calibration["samples"] == 26


def _framed_sentences(n: int = 6) -> dict[str, np.ndarray]:
    """Sentences of 8-12 tokens framed as a tokenizer frames them (id 1 first, 2 last, padded with 0), every inner
    token's id its own (10 + 12 · row + position): a run of consecutive ids is a span of one sentence."""
    lengths = np.random.default_rng(2).integers(8, 13, n)
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int64)
    ids = 10 + 12 * np.arange(n)[:, None] + np.arange(12)[None, :]
    ids[:, 0], ids[np.arange(n), lengths - 1] = 1, 2
    return {"ids": np.where(mask == 1, ids, 0), "mask": mask}


def test_token_splice_keeps_the_frames_and_builds_new_sequences_from_contiguous_spans(monkeypatch):
    """Each spliced sequence keeps a calibration sentence's frame (first and last token, padding mask) and fills
    it with spans of at least SPLICE_SPAN[0] consecutive tokens of the sentences' insides (the bag's shuffled ids
    would break every pair); "token-splice-common" adds the common sequences, and neither runs the re-fit."""
    import importlib

    from spa.priors import SPLICE_SPAN, common_tokens, token_bag_inputs

    view, _ = prepare(_masked_token_model(1200))
    c = _framed_sentences()
    f = token_bag_inputs(view, c, 16, seed=0, splice=True)
    assert f["ids"].shape == (22, 12) and np.array_equal(f["ids"][:6], c["ids"])
    ids, mask = f["ids"][6:], f["mask"][6:]
    assert all(any(np.array_equal(m, r) for r in c["mask"]) for m in mask)  # a frame row's padding mask
    lengths = mask.sum(1)
    assert (ids[:, 0] == 1).all() and (ids[np.arange(16), lengths - 1] == 2).all() and (ids[mask == 0] == 0).all()
    inner = set(c["ids"][c["ids"] >= 10])
    spans = 0
    for row, n in zip(ids, lengths):
        t = row[1:n - 1]
        assert set(t) <= inner
        breaks = np.flatnonzero(np.diff(t) != 1) + 1  # where a new span starts
        assert (np.diff(np.concatenate([[0], breaks])) >= SPLICE_SPAN[0]).all()  # every span but the last is long
        spans += len(breaks) + 1
    assert spans > 16  # several spans per sequence, not copies of one sentence
    assert len({tuple(r) for r in ids}) > 10
    # the source: the sentences counted REAL_REPEATS times, then as many spliced sequences and common ones
    k = calib.REAL_REPEATS["token-splice-common"]
    repeated = {name: np.concatenate([v] * k) for name, v in c.items()}
    both = calib.source_feeds(analyze(view), "token-splice-common", c, samples=16)["ids"]
    assert both.shape == (6 * k + 32, 12)
    assert np.array_equal(both[:6 * k + 16], token_bag_inputs(view, repeated, 16, seed=0, splice=True)["ids"])
    assert np.isin(both[6 * k + 16:], common_tokens(view.array("emb"))).all()

    def no_refit(*args, **kwargs):
        raise AssertionError("the re-fit ran")

    monkeypatch.setattr(importlib.import_module("spa.criteria.obspa"), "refit", no_refit)
    _, rep = spa.prune(_masked_token_model(1200), ratio=0.5, criterion="obspa", calib=c,
                       calib_source="token-splice-common", calib_samples=10, oracle=True)
    assert rep.oracle is not None and rep.oracle <= TOL and rep.calibration["samples"] == 6 * k + 20
    # "token-splice-bag-common": the spliced sequences, then the bag's shuffled ones, then the common ones
    k = calib.REAL_REPEATS["token-splice-bag-common"]
    repeated = {name: np.concatenate([v] * k) for name, v in c.items()}
    all3 = calib.source_feeds(analyze(view), "token-splice-bag-common", c, samples=16)["ids"]
    assert all3.shape == (6 * k + 48, 12)
    assert np.array_equal(all3[:6 * k + 16], token_bag_inputs(view, repeated, 16, seed=0, splice=True)["ids"])
    assert np.array_equal(all3[6 * k + 16:6 * k + 32], token_bag_inputs(view, repeated, 16, seed=0)["ids"][6 * k:])
    assert np.array_equal(all3[6 * k + 32:], both[-16:])  # the same common sequences


def test_token_bag_without_a_sample_count_adds_the_data_free_default():
    """`--calib-source token-bag` without --calib-samples crashed (exit 1) once the data-free count became
    per-model: the bag adds calib.DATA_FREE_SAMPLES sequences to the calibration's."""
    _, rep = spa.prune(_masked_token_model(), ratio=0.5, criterion="obspa", calib=_calib_tokens(),
                       calib_source="token-bag", oracle=True)
    assert rep.calibration["samples"] == len(_calib_tokens()["ids"]) + calib.DATA_FREE_SAMPLES
    assert rep.oracle is not None and rep.oracle <= TOL


def test_common_source_takes_more_samples_and_more_damping_within_the_budget():
    """"common" asks for SOURCE_SAMPLES' 512 sequences (a sequence gives one row per token) and SOURCE_DAMP's
    damping; the default source keeps DATA_FREE_SAMPLES; the sample budget still caps both."""
    from spa.criteria.obspa import damping

    a = analyze(prepare(_masked_token_model(1200))[0])
    assert len(calib.source_feeds(a, "common", None)["ids"]) == calib.SOURCE_SAMPLES["common"] == 512
    assert len(calib.source_feeds(a, "binary", None)["ids"]) == calib.DATA_FREE_SAMPLES
    assert calib.data_free_samples(a.view, 12, 10**9) < 10**9  # the budget binds a huge wish
    stats = calib.collect(a, "common", batch=64)
    assert {damping(c) for c in stats.values()} == {calib.SOURCE_DAMP["common"]}


def test_default_source_draws_file_like_byte_streams_for_byte_inputs_only():
    """An integer input that indexes 256-264 values (the bytes and a few symbols such as padding) gets byte
    streams from the default source: zeros, whitespace and printable ASCII far above their uniform share, the
    padding symbol 256 in one run per sample where it occurs, deterministic for a seed. A larger vocabulary
    keeps uniform ids."""
    from spa.priors import byte_alphabet, with_byte_streams

    view, _ = prepare(_token_model(257))
    assert byte_alphabet(view, "ids") == 257
    x = with_byte_streams(view, {"ids": np.zeros((64, 512), np.int64)}, seed=0)["ids"]
    assert x.min() >= 0 and x.max() == 256
    counts = np.bincount(x.ravel(), minlength=257) / x.size
    common = counts[0] + counts[9] + counts[10] + counts[32:127].sum()
    assert common > 0.6  # uniform ids: 98 / 257 = 0.38
    padded = [np.nonzero(row == 256)[0] for row in x if (row == 256).any()]
    assert 10 < len(padded) < 50 and all(np.ptp(p) == len(p) - 1 for p in padded)
    assert np.array_equal(x, with_byte_streams(view, {"ids": np.zeros((64, 512), np.int64)}, seed=0)["ids"])
    a = analyze(view)
    ids = calib.source_feeds(a, calib.DEFAULT_SOURCE, None, samples=16)["ids"]
    assert np.array_equal(ids, with_byte_streams(view, calib.noise_inputs(view, 16, 0, 1), 0)["ids"])
    small, _ = prepare(_token_model(300))
    assert byte_alphabet(small, "ids") is None
    assert np.array_equal(calib.source_feeds(analyze(small), calib.DEFAULT_SOURCE, None, samples=16)["ids"],
                          calib.binary_inputs(small, 16, seed=0)["ids"])


def test_byte_models_choose_channels_by_the_cost_without_update_and_keep_their_weights():
    """With the default's synthetic byte streams obspa only chooses: a channel costs ½ H_cc ‖W_:c‖² (what its
    removal takes without an update), no consumer is updated, and the pruned model passes the oracle. Other
    models keep the OBS cost and update."""
    from spa.criteria.obspa import obspa

    model = _token_model(257)
    view, _ = prepare(model)
    a = analyze(view)
    stats = calib.collect(a, samples=16)
    assert stats and all(c.rank_only for c in stats.values())
    g, c = next((g, stats[(m.tensor, m.axis)]) for g in a.groups if g.prunable for m in g.params
                if m.role == "in" and (m.tensor, m.axis) in stats and stats[(m.tensor, m.axis)].weight == "w2")
    H = np.diag(c.grams[0]) / c.rows
    expected = 0.5 * H[:32] * (view.array("w2") ** 2).sum(axis=1)  # w2: (32 inputs, 8 outputs)
    assert np.allclose(obspa(g, view.array, None, stats), expected + 1e-12, rtol=1e-6)
    keep = keep_mask(a, make_plan(a, {g.id: obspa(g, view.array, None, stats)}, ratio=0.5))
    assert compensate(a, keep, stats) == {}
    _, rep = spa.prune(model, ratio=0.5, criterion="obspa", calib_samples=8, oracle=True)
    assert rep.groups_pruned > 0 and rep.oracle is not None and rep.oracle <= TOL
    assert rep.calibration["rank_only"] == len(stats)
    other, _ = prepare(_token_model(300))
    assert not any(c.rank_only for c in calib.collect(analyze(other), samples=16).values())


def test_byte_models_calibrated_on_real_inputs_also_only_choose_channels():
    """Real calibration inputs of a byte model (spa.calib.BYTE_RANK_ONLY_SOURCES holds "calib") choose channels
    like the data-free byte streams and fit nothing: no OBS update and no re-fit (every kept row of the pruned
    model's weights is an original row), and the pruned model passes the oracle. A larger vocabulary with the same
    inputs keeps the update and the re-fit."""
    rng = np.random.default_rng(3)
    feeds = {"ids": rng.integers(0, 257, (16, 12)).astype(np.int64)}
    model = _token_model(257)
    pruned, rep = spa.prune(model, ratio=0.5, criterion="obspa", calib=feeds, oracle=True)
    assert rep.groups_pruned > 0 and rep.oracle is not None and rep.oracle <= TOL
    assert rep.calibration["source"] == "calib" and rep.calibration["rank_only"] > 0
    orig = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    new = {t.name: onnx.numpy_helper.to_array(t) for t in pruned.graph.initializer}
    assert new["w2"].shape[0] < 32
    assert all(np.isin(new[k], orig[k]).all() for k in ("emb", "w1", "w2"))  # random floats: none fitted anew
    other = _token_model(300)
    pruned, rep = spa.prune(other, ratio=0.5, criterion="obspa", calib=feeds, oracle=True)
    assert "rank_only" not in rep.calibration
    new = {t.name: onnx.numpy_helper.to_array(t) for t in pruned.graph.initializer}
    assert not np.isin(new["w2"], onnx.numpy_helper.to_array(other.graph.initializer[2])).all()


def test_obspa_on_token_id_models_defaults_to_the_token_sources_spread_by_the_obs_cost(monkeypatch):
    """Without --calib-source, obspa on a model whose ids index a vocabulary of at least COMMON_MIN_ROWS rows reads
    "common" data-free and "token-splice-bag-common" with calibration sentences, both with the energy allocation and no
    re-fit (all-MiniLM-L6-v2: spa/calib.py TOKEN_SOURCE's comment); a small alphabet, another criterion or a named
    source keep the default before ("strokes" / "calib" with its re-fit, local data-free)."""
    import importlib

    from spa.priors import COMMON_MIN_ROWS, has_token_inputs

    big, small = _masked_token_model(COMMON_MIN_ROWS + 100), _masked_token_model(300)
    assert has_token_inputs(prepare(big)[0]) and not has_token_inputs(prepare(small)[0])
    _, free = spa.prune(big, ratio=0.5, criterion="obspa", calib_samples=8, oracle=True)
    assert free.calibration["source"] == "common" and free.plan.mode == "energy"
    assert free.oracle is not None and free.oracle <= TOL
    _, old = spa.prune(small, ratio=0.5, criterion="obspa", calib_samples=8)
    assert old.calibration["source"] == "strokes" and old.plan.mode == "local"
    _, named = spa.prune(big, ratio=0.5, criterion="obspa", calib_samples=8, calib_source="strokes")
    assert named.calibration["source"] == "strokes" and named.plan.mode == "local"
    assert calib.default_source(prepare(big)[0], "act", calibrated=False) == calib.DEFAULT_SOURCE

    def no_refit(*args, **kwargs):
        raise AssertionError("the re-fit ran")

    monkeypatch.setattr(importlib.import_module("spa.criteria.obspa"), "refit", no_refit)
    _, cal = spa.prune(big, ratio=0.5, criterion="obspa", calib=_calib_tokens(), calib_samples=10, oracle=True)
    assert cal.calibration["source"] == "token-splice-bag-common" and cal.plan.mode == "energy"
    assert cal.calibration["samples"] == 6 * calib.REAL_REPEATS["token-splice-bag-common"] + 30
    assert cal.oracle is not None and cal.oracle <= TOL
    with pytest.raises(AssertionError, match="the re-fit ran"):  # a small alphabet: the sentences and the re-fit
        spa.prune(small, ratio=0.5, criterion="obspa", calib=_calib_tokens())
