"""`spa finetune --teacher --plan`: intermediate features at the pruned groups' boundaries, matched on the teacher's
channels the plan keeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from test_finetune import assert_one_line_error, spa_cli

import spa
from models import patterns
from spa import modelfile
from spa.analysis import analyze
from spa.api import prepare
from spa.distill import feature_sites
from spa.finetune import finetune
from spa.plan import Plan, keep_mask
from spa.verify import session, zeroed_model


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> tuple[Path, Path, Path, Plan, Path]:
    """two_gemms (x (N,3,8,8) -> conv, conv, GAP, 3 Gemms -> y) pruned by l1 at 0.5 (no weight update): the
    original, the pruned model, 48 unlabelled samples, the plan, and the original with the plan's removed channels
    zeroed (which the pruned model equals exactly: the zero-group oracle)."""
    d = tmp_path_factory.mktemp("feat")
    model = patterns.build("two_gemms")
    src = d / "orig.onnx"
    onnx.save(model, str(src))
    small, rep = spa.prune(str(src), ratio=0.5, criterion="l1")
    student = d / "pruned.onnx"
    modelfile.save_atomic(small, student)
    zeroed = d / "zeroed.onnx"
    onnx.save(zeroed_model(analyze(prepare(model)[0]), keep_mask(analyze(prepare(model)[0]), rep.plan)), str(zeroed))
    x = np.random.default_rng(0).standard_normal((48, 3, 8, 8)).astype(np.float32)
    np.savez(d / "x.npz", x=x)
    return src, student, d / "x.npz", rep.plan, zeroed


def test_sites_are_the_consumed_activations_with_the_kept_channels(pruned):
    src, student, _, plan, _ = pruned
    sites = feature_sites(onnx.load(str(student)), onnx.load(str(src)), plan)
    model = onnx.load(str(src))
    consumers = {i for n in model.graph.node if n.op_type in ("Conv", "Gemm") for i in n.input}
    assert sites and all(s.tensor in consumers for s in sites)  # each one feeds a layer
    kept = {len(g.keep) for g in plan.groups if len(g.keep) < g.size}
    for s in sites:
        assert list(s.kept) == [1]  # the channel axis, of NCHW and of (N, C) alike
        assert len(s.kept[1]) in kept and np.all(np.diff(s.kept[1]) > 0)
    # not a prefix: a site reading the first channels instead of the kept ones would not be caught otherwise
    assert any(not np.array_equal(s.kept[1], np.arange(len(s.kept[1]))) for s in sites)


def test_the_student_equals_the_zeroed_teacher_on_the_kept_channels(pruned, tmp_path):
    """Against the original with the removed channels zeroed, the pruned model is exact: every feature matches
    before any training. The plan of another prune names other channels: the same features then differ."""
    _, student, data, plan, zeroed = pruned
    rep = finetune(student, data, tmp_path / "a.onnx", teacher=zeroed, plan=plan, epochs=0, batch=16)
    feats = next(o for o in rep.outputs if o["output"] == "(features)")
    assert feats["before"] < 1e-9 and rep.outputs[0]["before"] < 1e-9, rep.outputs
    other = Plan.from_json(plan.to_json())
    for g in other.groups:  # the other channels of each pruned group, as many as kept
        g.keep = sorted(set(range(g.size)) - set(g.keep))[: len(g.keep)] if 2 * len(g.keep) <= g.size else g.keep
    assert other.groups != plan.groups
    rep = finetune(student, data, tmp_path / "b.onnx", teacher=zeroed, plan=other, epochs=0, batch=16)
    assert next(o for o in rep.outputs if o["output"] == "(features)")["before"] > 0.1


def test_features_are_distilled_and_the_written_model_is_verified(pruned, tmp_path):
    src, student, data, plan, _ = pruned
    out = tmp_path / "d.onnx"
    seen: list[float] = []
    rep = finetune(student, data, out, teacher=src, plan=plan, epochs=12, lr=1e-2, batch=16,
                   progress=lambda e, n, v, s: seen.append(v))
    by = {o["output"]: o for o in rep.outputs}
    n_sites = len(feature_sites(onnx.load(str(student)), onnx.load(str(src)), plan))
    assert set(by) == {"y", "(features)"} and by["(features)"]["compared"] == f"{n_sites} tensors"
    assert by["(features)"]["after"] < 0.8 * by["(features)"]["before"] and by["y"]["after"] < by["y"]["before"]
    assert seen[-1] < seen[0] and rep.export_error <= 1e-4
    assert rep.loss_after == pytest.approx(by["y"]["after"] + by["(features)"]["after"], rel=1e-5)
    x = np.load(data)["x"]
    assert session(onnx.load(str(out))).run(None, {"x": x})[0].shape == (48, 5)
    # weight 0: the features are not matched (the outputs alone, as without --plan)
    rep0 = finetune(student, data, tmp_path / "z.onnx", teacher=src, plan=plan, feature_weight=0, epochs=1, batch=16)
    assert [o["output"] for o in rep0.outputs] == ["y"]


def test_cli_reports_the_features_and_refuses_a_wrong_plan(pruned, tmp_path):
    src, student, data, plan, _ = pruned
    plan_file = tmp_path / "plan.json"
    plan.save(plan_file)
    out = tmp_path / "d.onnx"
    base = ("finetune", student, "--data", data, "-o", out)
    r = spa_cli(*base, "--teacher", src, "--plan", plan_file, "--epochs", "1", "--batch", "16")
    assert r.returncode == 0, r.stderr
    assert "features: mse on" in r.stdout and "pruned groups' boundaries" in r.stdout
    r = spa_cli(*base, "--teacher", src, "--plan", plan_file, "--epochs", "1", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["outputs"][-1]["output"] == "(features)"

    other = tmp_path / "other.onnx"
    onnx.save(patterns.build("conv_bn_relu"), str(other))
    _, rep = spa.prune(str(other), ratio=0.5)
    other_plan = tmp_path / "other.json"
    rep.plan.save(other_plan)
    o = tmp_path / "o.onnx"
    bad = ("finetune", student, "--data", data, "-o", o)
    assert_one_line_error(spa_cli(*bad, "--teacher", src, "--plan", other_plan), 2, "--plan does not fit the teacher")
    assert_one_line_error(spa_cli(*bad, "--plan", plan_file), 2, "--plan applies to distillation")
    assert_one_line_error(spa_cli(*bad, "--teacher", src, "--plan", tmp_path / "none.json"), 2, "cannot read the plan")
    assert_one_line_error(spa_cli(*bad, "--teacher", src, "--plan", plan_file, "--feature-weight", "-1"), 2,
                          "--feature-weight")
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert_one_line_error(spa_cli(*bad, "--teacher", src, "--plan", tmp_path / "junk.json"), 2, "not a spa plan")
    assert not o.exists()


def test_a_transformer_matches_its_heads_and_mlp_per_token(tmp_path):
    """Tiny BERT pruned at 0.5: the merged attention heads and the MLP activation are (N, T, C) features, compared on
    the kept channels along C and only where attention_mask is 1 (as the per-token output)."""
    pytest.importorskip("transformers")
    from models import zoo_transformers as zt
    from spa.distill import Distillation

    teacher = zt.export("bert", tmp_path / "bert.onnx")
    small, rep = spa.prune(str(teacher), ratio=0.5)
    student = tmp_path / "s.onnx"
    modelfile.save_atomic(small, student)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 512, (32, 16)).astype(np.int64)
    mask = (np.arange(16) < rng.integers(4, 17, 32)[:, None]).astype(np.int64)
    data = {"input_ids": ids * mask, "attention_mask": mask}
    t_proto = onnx.load(str(teacher))
    dist = Distillation(small, t_proto, data, 8, 2.0, {}, rep.plan)
    assert len(dist.sites) >= 2 and all(list(s.kept) == [2] and s.mask == "attention_mask" for s in dist.sites)
    # the scale is the teacher's mean square over the real tokens only
    site = dist.sites[0]
    t = onnx.ModelProto()
    t.CopyFrom(t_proto)
    t.graph.output.append(onnx.ValueInfoProto(name=site.tensor))
    v = site.of_teacher(session(t).run([site.tensor], data)[0]).astype(np.float64)
    real = mask.astype(bool)
    assert site.scale == pytest.approx(np.mean(np.square(v[real])), rel=1e-4)
    assert site.scale != pytest.approx(np.mean(np.square(v)), rel=1e-2)
    out = finetune(student, data, tmp_path / "d.onnx", teacher=teacher, plan=rep.plan, epochs=2, batch=8)
    feats = next(o for o in out.outputs if o["output"] == "(features)")
    assert feats["after"] < feats["before"] and out.export_error <= 1e-4


def test_view_keeps_element_types() -> None:
    """ModelView records each tensor's element type (feature_sites keeps the floating-point ones from it): float
    activations and weights, an int64 Shape output, a bool comparison."""
    from onnx import TensorProto, helper, numpy_helper

    from spa.view import ModelView

    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Shape", ["y"], ["s"]),
             helper.make_node("Greater", ["y", "x0"], ["b"])]
    x0 = numpy_helper.from_array(np.zeros((), np.float32), "x0")
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("s", TensorProto.INT64, None),
                           helper.make_tensor_value_info("b", TensorProto.BOOL, None)], [w, x0])
    types = ModelView.build(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])).elem_types
    assert (types["x"], types["w"], types["y"]) == (TensorProto.FLOAT,) * 3
    assert (types["s"], types["b"]) == (TensorProto.INT64, TensorProto.BOOL)


def test_a_model_pruned_twice_is_distilled_with_the_plans_composed(pruned, tmp_path):
    """Pruned, then pruned again (spa finetune keeps the tensors' names, so the second plan's groups carry the
    original's keys): `Plan.then` gives the plan of the original that removes both, the same model as the two prunes
    in one, and `--plan A --plan B` matches the features on it (exact before training against the zeroed original)."""
    src, _, data, _, _ = pruned
    model = onnx.load(str(src))
    once, rep1 = spa.prune(model, ratio=0.3, criterion="l1")
    twice, rep2 = spa.prune(once, ratio=0.4, criterion="l1")
    both = rep1.plan.then(rep2.plan)
    assert both.removed == rep1.plan.removed + rep2.plan.removed
    direct, _ = spa.prune(model, plan=both)
    x = np.load(data)["x"]
    np.testing.assert_allclose(session(direct).run(None, {"x": x})[0], session(twice).run(None, {"x": x})[0],
                               rtol=1e-5, atol=1e-6)
    a = analyze(prepare(model)[0])
    onnx.save(zeroed_model(a, keep_mask(a, both)), str(tmp_path / "zeroed.onnx"))
    modelfile.save_atomic(twice, tmp_path / "twice.onnx")
    for i, p in enumerate((rep1.plan, rep2.plan)):
        p.save(tmp_path / f"plan{i}.json")
    rep = finetune(tmp_path / "twice.onnx", data, tmp_path / "d.onnx", teacher=tmp_path / "zeroed.onnx",
                   plan=[tmp_path / "plan0.json", tmp_path / "plan1.json"], epochs=0, batch=16)
    assert next(o for o in rep.outputs if o["output"] == "(features)")["before"] < 1e-9
    r = spa_cli("finetune", tmp_path / "twice.onnx", "--data", data, "-o", tmp_path / "c.onnx", "--teacher", src,
                "--plan", tmp_path / "plan0.json", "--plan", tmp_path / "plan1.json", "--epochs", "1", "--batch", "16")
    assert r.returncode == 0 and "features: mse on" in r.stdout, r.stderr
    # the plans in the wrong order: one line, exit 2
    assert_one_line_error(spa_cli("finetune", tmp_path / "twice.onnx", "--data", data, "-o", tmp_path / "w.onnx",
                                  "--teacher", src, "--plan", tmp_path / "plan1.json", "--plan",
                                  tmp_path / "plan0.json"), 2, "in the order they were applied")
