"""The OBSPA re-fit runs the network once, segment by segment: it gives what re-running the whole pruned model
before every consumer gives, builds one session per segment (not per consumer), and its model passes the
zero-group oracle."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

import spa
from models.patterns import build
from spa import calib, segments
from spa.analysis import analyze
from spa.api import prepare
from spa.plan import keep_mask
from spa.priors import strokes_inputs
from spa.verify import zeroed_model

obspa = importlib.import_module("spa.criteria.obspa")  # the package re-exports the obspa function

ROOT = Path(__file__).resolve().parents[1]


def _setup(model, ratio: float = 0.5):
    view, _ = prepare(model)
    a = analyze(view)
    feeds = calib.noise_inputs(view, 6, seed=3)
    stats = calib.collect(a, "calib", feeds, batch=3)
    plan = spa.api.compute_plan(a, ratio=ratio, criterion="obspa", data=stats)
    keep = keep_mask(a, plan)
    return a, feeds, stats, keep, obspa.compensate(a, keep, stats)


def _quadratic_refit(a, keep, stats, overrides, feeds, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The re-fit as it was first written: the whole zeroed model re-run (a new session) before each consumer,
    in graph order, with every earlier consumer re-fitted. The reference the segmented pass must match."""
    out = dict(overrides)
    n = len(next(iter(feeds.values())))
    batches = [{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
    orig = [dict(zip(*_run(a.view.model, sorted({c.x for c in stats.values()}), b))) for b in batches]
    for key, c in sorted(stats.items(), key=lambda kv: kv[1].node):
        if key not in a.slot_comps:
            continue
        kept = keep[a.slot_comps[key]]
        K = np.setdiff1d(np.arange(c.H.shape[0]), c.columns(np.nonzero(~kept)[0]))
        C = Hn = 0
        for bi, b in enumerate(batches):
            x1 = _run(zeroed_model(a, keep, out), [c.x], b)[1][0]
            r0 = c.rows_of(orig[bi][c.x], np.random.default_rng((seed, bi, c.node)))
            r1 = c.rows_of(x1, np.random.default_rng((seed, bi, c.node)))[:, K]
            C, Hn = C + (r0.T @ r1).astype(np.float64), Hn + (r1.T @ r1).astype(np.float64)
        obspa._refit_one(c, a.view, K, obspa._augmented(c, a.view) @ C, Hn, out)
    return out


def _run(model, names, feeds):
    sess = calib.session_with_outputs(model, names)
    return names, sess.run(names, feeds)


@pytest.mark.parametrize("model", ["residual_add_chain", "concat_offsets", "split_concat_permute", "layernorm_spatial",
                                   "two_gemms", "matmul_init_right", "channel_attention_softmax"])
def test_segmented_refit_equals_the_per_consumer_rerun(model):
    a, feeds, stats, keep, over = _setup(build(model))
    got = obspa.refit(a, keep, stats, over, feeds, batch=3)
    want = _quadratic_refit(a, keep, stats, over, feeds, batch=3)
    assert got.keys() == want.keys()
    for k in want:
        scale = float(np.abs(want[k]).max()) or 1.0
        assert np.abs(got[k] - want[k]).max() <= 1e-4 * scale, k
    assert any(not np.allclose(got[k], over[k]) for k in over), "the re-fit changed nothing: the test proves nothing"


def _count_sessions(monkeypatch) -> list[int]:
    """The node count of every model spa.verify.session is asked to build from now on."""
    built: list[int] = []
    real = spa.verify.session

    def counting(m, *args, **kw):
        built.append(len(m.graph.node))
        return real(m, *args, **kw)

    monkeypatch.setattr(spa.verify, "session", counting)
    return built


@pytest.mark.parametrize("model", ["residual_add_chain", "concat_offsets"])
def test_refit_runs_every_node_once_per_model_in_one_session_per_segment(model, monkeypatch):
    """Linear in depth: over all the sessions the re-fit builds, each node of the original and of the zeroed
    model runs once (the quadratic re-fit ran consumers × nodes), and parallel consumers share a segment."""
    a, feeds, stats, keep, over = _setup(build(model))
    built = _count_sessions(monkeypatch)
    obspa.refit(a, keep, stats, over, feeds, batch=3)
    consumers = {c.node for k, c in stats.items() if k in a.slot_comps}
    nodes = len(a.view.model.graph.node)
    zeroed = len(zeroed_model(a, keep, over).graph.node)
    assert built and sum(built) <= nodes + zeroed, built
    run = segments.SegmentedRun(a.view.model, {c.node: c.x for c in stats.values()}, [])
    assert len(built) <= 2 * len(run.segments)
    if model == "concat_offsets":  # two convs read the same tensor: one segment serves both
        assert len(run.segments) < len(consumers)


def test_refit_model_passes_the_oracle_and_fits_better():
    """With calibration inputs the re-fit runs by default; the pruned model still equals the zeroed original with
    the same weights, and reproduces the original's outputs better than the per-layer update alone."""
    m = build("residual_add_chain")
    view, _ = prepare(m)
    x = calib.noise_inputs(view, 16, seed=1)
    test = calib.noise_inputs(view, 16, seed=2)
    y = spa.verify.run(m, test)[0]
    err = {}
    for refit in (False, True):
        pruned, rep = spa.prune(m, ratio=0.5, criterion="obspa", calib=x, refit=refit, oracle=True)
        assert rep.oracle is not None and rep.oracle < 1e-4
        err[refit] = float(np.linalg.norm(spa.verify.run(pruned, test)[0] - y) / np.linalg.norm(y))
    assert err[True] < err[False], err


@pytest.mark.parametrize("model", ["residual_add_chain", "concat_offsets", "two_gemms", "channel_attention_softmax"])
def test_rows_kept_by_the_calibration_pass_give_the_same_refit_without_running_the_original(model, monkeypatch):
    """The original's rows kept while calibrating (OriginalRows, collect's on_batch) are those the re-fit would
    sample from its own run of the original (the same random positions: fewer rows than there are, so that a
    mismatch shows): the same result up to float rounding (both runs are optimised by onnxruntime, the whole graph
    and the segments fused differently), and only the pruned model's segments run."""
    monkeypatch.setattr(obspa, "REFIT_ROWS", 5)
    view, _ = prepare(build(model))
    a = analyze(view)
    feeds = calib.noise_inputs(view, 6, seed=3)
    kept = obspa.OriginalRows(seed=0)
    stats = calib.collect(a, "calib", feeds, batch=3, on_batch=kept)
    keep = keep_mask(a, spa.api.compute_plan(a, ratio=0.5, criterion="obspa", data=stats))
    over = obspa.compensate(a, keep, stats)
    want = obspa.refit(a, keep, stats, over, feeds, batch=3)
    built = _count_sessions(monkeypatch)
    got = obspa.refit(a, keep, stats, over, feeds, batch=3, original=kept)
    assert got.keys() == want.keys()
    for k in want:
        assert np.allclose(got[k], want[k], rtol=1e-3, atol=1e-5), k
    assert built and sum(built) <= len(zeroed_model(a, keep, over).graph.node), built


def test_rows_beyond_the_budget_are_let_go_and_the_refit_runs_the_original(monkeypatch):
    view, _ = prepare(build("residual_add_chain"))
    a = analyze(view)
    feeds = calib.noise_inputs(view, 6, seed=3)
    monkeypatch.setattr(obspa, "CAPTURE_BYTES", 1)
    kept = obspa.OriginalRows(seed=0)
    stats = calib.collect(a, "calib", feeds, batch=3, on_batch=kept)
    assert kept.rows is None
    keep = keep_mask(a, spa.api.compute_plan(a, ratio=0.5, criterion="obspa", data=stats))
    over = obspa.compensate(a, keep, stats)
    got = obspa.refit(a, keep, stats, over, feeds, batch=3, original=kept)
    want = obspa.refit(a, keep, stats, over, feeds, batch=3)
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_kept_rows_of_other_batches_are_refused():
    view, _ = prepare(build("residual_add_chain"))
    a = analyze(view)
    feeds = calib.noise_inputs(view, 6, seed=3)
    kept = obspa.OriginalRows(seed=0)
    stats = calib.collect(a, "calib", feeds, batch=3, on_batch=kept)
    keep = keep_mask(a, spa.api.compute_plan(a, ratio=0.5, criterion="obspa", data=stats))
    with pytest.raises(AssertionError, match="kept rows"):
        obspa.refit(a, keep, stats, obspa.compensate(a, keep, stats), feeds, batch=2, original=kept)


@pytest.mark.parametrize("model", ["residual_add_chain", "two_gemms"])
def test_calibration_session_stops_at_the_consumer_inputs(model, monkeypatch):
    """The calibration pass's session computes the consumers' inputs and leaves out what only the model's outputs
    need (a classifier head): fewer nodes, the same values as the whole model with them as extra outputs."""
    import onnx

    m = build(model)
    view, _ = prepare(m)
    cons = calib.find_consumers(analyze(view))
    first = min(cons.values(), key=lambda c: c.node)  # the first consumer's input: most of the graph comes after
    feeds = calib.noise_inputs(view, 4, seed=0)
    built = _count_sessions(monkeypatch)
    got = calib.session_with_outputs(m, [first.x]).run([first.x], feeds)[0]
    assert built and built[0] < len(m.graph.node), built
    whole = onnx.ModelProto()
    whole.CopyFrom(m)
    whole.graph.output.extend([onnx.ValueInfoProto(name=first.x)])
    want = spa.verify.session(whole, optimize=True).run([first.x], feeds)[0]
    np.testing.assert_array_equal(got, want)


def test_calibration_and_refit_sessions_have_no_arena_of_their_own(monkeypatch):
    """The calibration pass and every re-fit segment build their sessions without onnxruntime's memory arena (a
    fresh arena per session is fresh memory, every page a fault: spa.verify.session), and such a session gives the
    same values as one with the arena."""
    kinds: list[bool] = []
    real = spa.verify.session

    def recording(m, *args, **kw):
        kinds.append(kw.get("arena", True))
        return real(m, *args, **kw)

    monkeypatch.setattr(spa.verify, "session", recording)
    a, feeds, stats, keep, over = _setup(build("residual_add_chain"))
    obspa.refit(a, keep, stats, over, feeds, batch=3)
    assert len(kinds) > 2 and not any(kinds), kinds
    m = build("residual_add_chain")
    with_arena = real(m, optimize=True).run(None, feeds)
    without = real(m, optimize=True, arena=False)
    assert not without.get_session_options().enable_cpu_mem_arena
    for x, y in zip(with_arena, without.run(None, feeds)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("fit", ["both", "real"])
def test_calib_prior_adds_prior_images_after_the_real_ones_and_refits_on_what_it_says(fit, monkeypatch):
    """`--calib-source calib-prior`: the calibration images and their rescaled copies, then `calib_samples` images
    of the data-free prior ("strokes") of their shape; the re-fit reads all of them ("both") or the real ones and
    their copies only ("real", with the original's rows of those batches, not a second run of the original), and
    the pruned model passes the oracle either way. It is obspa's --calib default on images up to
    IMAGE_CALIB_PRIOR_MAX_RATIO (CALIB_PRIOR_SAMPLES prior images); `--calib-source calib`, and the default
    beyond that ratio, give the calibration images and their copies alone."""
    m = build("residual_add_chain")
    view, _ = prepare(m)
    x = calib.noise_inputs(view, 16, seed=1)
    extra = calib.prior_samples(view, x, 8, seed=0)
    assert extra is not None and extra["x"].shape == (8, 3, 8, 8)
    assert np.array_equal(extra["x"], strokes_inputs(view, 8, 0, 8)["x"])
    seen = []
    real_refit = obspa.refit

    def spy(a, keep, layers, overrides, feeds, **kw):
        kept = kw["original"]
        seen.append((feeds["x"], None if kept is None or kept.rows is None else {len(r) for r in kept.rows.values()}))
        return real_refit(a, keep, layers, overrides, feeds, **kw)

    monkeypatch.setattr(obspa, "refit", spy)
    monkeypatch.setattr(calib, "CALIB_PRIOR_REFIT", fit)
    _, rep = spa.prune(m, ratio=0.5, criterion="obspa", calib=x, calib_source="calib-prior", calib_samples=8,
                       oracle=True)
    assert rep.calibration["source"] == "calib-prior" and rep.calibration["samples"] == 16 * 3 + 8
    assert rep.oracle is not None and rep.oracle < 1e-4
    (feeds, original), = seen
    assert np.array_equal(feeds[:16], x["x"])
    assert len(feeds) == (56 if fit == "both" else 48)
    assert original == {len(feeds) // 8}  # the original's rows of the batches re-fitted
    if fit == "both":
        assert np.array_equal(feeds[48:], extra["x"])
        _, default = spa.prune(m, ratio=0.3, criterion="obspa", calib=x)
        assert default.calibration["source"] == "calib-prior"
        assert default.calibration["samples"] == 16 * 3 + calib.CALIB_PRIOR_SAMPLES
        _, plain = spa.prune(m, ratio=0.3, criterion="obspa", calib=x, calib_source="calib")
        assert plain.calibration["source"] == "calib" and plain.calibration["samples"] == 16 * 3
        _, beyond = spa.prune(m, ratio=0.5, criterion="obspa", calib=x)  # past IMAGE_CALIB_PRIOR_MAX_RATIO
        assert beyond.calibration["source"] == "calib" and beyond.calibration["samples"] == 16 * 3


def test_calib_default_adds_prior_images_for_obspa_on_images_only():
    """obspa's --calib default mixes in prior images only where every calibration input is an image the prior
    draws (N, C, H, W), at a ratio up to IMAGE_CALIB_PRIOR_MAX_RATIO; a vector input, another data criterion, a
    larger ratio or none (a target or plan) keep the calibration inputs alone."""
    images = prepare(build("residual_add_chain"))[0]
    x = calib.noise_inputs(images, 4, seed=1)
    top = calib.IMAGE_CALIB_PRIOR_MAX_RATIO
    assert calib.default_source(images, "obspa", True, x, 0.1) == calib.IMAGE_CALIB_SOURCE == "calib-prior"
    assert calib.default_source(images, "obspa", True, x, top) == "calib-prior"
    assert calib.default_source(images, "obspa", True, x, top + 0.01) == calib.DEFAULT_SOURCE
    assert calib.default_source(images, "obspa", True, x) == calib.DEFAULT_SOURCE  # no ratio
    assert calib.default_source(images, "act", True, x, 0.1) == calib.DEFAULT_SOURCE
    assert calib.default_source(images, "obspa", False, None, 0.1) == calib.DEFAULT_SOURCE
    nhwc = {"x": np.transpose(x["x"], (0, 2, 3, 1))[..., :3]}  # channels last: (N, 8, 8, 3)
    assert calib.default_source(images, "obspa", True, nhwc, 0.1) == calib.DEFAULT_SOURCE
    vectors = {"x": np.zeros((4, 16), np.float32)}
    assert calib.default_source(images, "obspa", True, vectors, 0.1) == calib.DEFAULT_SOURCE


def test_calib_prior_draws_its_images_at_the_calibration_images_shape():
    """Calibration images wider than high for a model whose height and width are both free: the prior's images
    come at that shape too (the --calib default's guard is not silently dropped), and the prune passes the oracle."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 8, 3, 3)).astype(np.float32), "w2")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["b"]),
         helper.make_node("Conv", ["b", "w2"], ["y"], pads=[1, 1, 1, 1])], "free_sides",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = {"x": rng.standard_normal((6, 3, 16, 24)).astype(np.float32)}
    extra = calib.prior_samples(prepare(m)[0], x, 5, seed=2)
    assert extra is not None and extra["x"].shape == (5, 3, 16, 24)
    _, rep = spa.prune(m, ratio=0.25, criterion="obspa", calib=x, oracle=True)
    assert rep.calibration["source"] == "calib-prior"
    assert rep.calibration["samples"] == 6 * 3 + calib.CALIB_PRIOR_SAMPLES
    assert rep.calibration["prior_images"] == calib.CALIB_PRIOR_SAMPLES
    assert rep.oracle is not None and rep.oracle < 1e-4


def test_run_next_hands_each_batch_to_after_in_its_worker_and_the_results_to_take_in_order(monkeypatch):
    """SegmentedRun.run_next(after, take): `after` sees each batch's index and the segment's outputs for it (the
    values the run keeps), on the worker threads when there are several; `take` gets its results on the calling
    thread in batch order."""
    import threading

    monkeypatch.setattr(spa.parallel, "workers", lambda: 2)
    a, feeds, stats, _, _ = _setup(build("residual_add_chain"))
    batches = list(calib.batches_of(feeds, 1))  # six batches of one sample
    run = segments.SegmentedRun(a.view.model, {c.node: c.x for c in stats.values()}, batches)
    seen, taken, threads = {}, [], set()

    def after(b, values):
        threads.add(threading.get_ident())
        seen[b] = {k: v.copy() for k, v in values.items()}
        return b

    while run.done < len(run):
        seen.clear()
        run.run_next(after, taken.append)
        if not seen:  # a segment with no node
            continue
        assert sorted(seen) == list(range(len(batches)))
        for name, per_batch in ((k, run.values.get(k)) for k in seen[0]):
            if per_batch is not None:  # still read later: the values the run kept are those after saw
                assert all(np.array_equal(seen[b][name], per_batch[b]) for b in range(len(batches)))
    assert taken == list(range(len(batches))) * (len(taken) // len(batches)) and taken
    assert threading.get_ident() not in threads  # beside the calling thread, in the run's workers
