"""`spa finetune --teacher`: label-free distillation from the original model, and BatchNorm re-estimation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

torch = pytest.importorskip("torch")

from test_finetune import assert_one_line_error, spa_cli

import spa
from models import patterns
from spa import modelfile
from spa.errors import BadArgument
from spa.finetune import finetune, reestimate_bn
from spa.onnx_to_torch import onnx_to_torch
from spa.verify import session


def _prune(model: onnx.ModelProto, d: Path, name: str, n: int = 48) -> tuple[Path, Path, Path]:
    """(teacher, student pruned at 0.5, unlabelled .npz of n samples) under d."""
    teacher, student = d / f"{name}.onnx", d / f"{name}_pruned.onnx"
    onnx.save(model, str(teacher))
    small, rep = spa.prune(str(teacher), ratio=0.5)
    assert rep.groups_pruned >= 1
    modelfile.save_atomic(small, student)
    x = np.random.default_rng(0).standard_normal((n, 3, 8, 8)).astype(np.float32)
    np.savez(d / f"{name}.npz", x=x)
    return teacher, student, d / f"{name}.npz"


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> tuple[Path, Path, Path]:
    """multi_output: x (N,3,8,8) -> y0 (N,4,8,8) and y1 (N,3,1,1)."""
    return _prune(patterns.build("multi_output"), tmp_path_factory.mktemp("multi"), "multi")


def with_softmax() -> onnx.ModelProto:
    """two_gemms whose scores y go through a Softmax into the output 'prob' (a classifier's probabilities)."""
    m = patterns.build("two_gemms")
    out = m.graph.output[0]
    m.graph.node.append(helper.make_node("Softmax", ["y"], ["prob"], axis=-1))
    m.graph.output.remove(out)
    m.graph.output.append(helper.make_tensor_value_info("prob", out.type.tensor_type.elem_type,
                                                        [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]))
    onnx.checker.check_model(m, full_check=True)
    return m


def test_every_output_is_matched_without_targets(multi, tmp_path):
    teacher, student, data = multi
    assert set(np.load(data).files) == {"x"}  # no targets anywhere
    out = tmp_path / "d.onnx"
    seen = []
    rep = finetune(student, data, out, teacher=teacher, epochs=15, lr=1e-2, batch=16,
                   output_loss={"y1": "kl"}, progress=lambda e, n, v, s: seen.append((e, n, v)))
    assert [e for e, _, _ in seen] == list(range(1, 16)) and seen[-1][2] < seen[0][2]
    by = {o["output"]: o for o in rep.outputs}
    assert by["y0"]["loss"] == "mse" and by["y1"]["loss"] == "kl" and by["y1"]["why"] == "--output-loss"
    for o in by.values():  # both outputs contribute and both get closer to the teacher
        assert o["after"] < 0.8 * o["before"], o
    assert rep.loss_after == pytest.approx(by["y0"]["after"] + by["y1"]["after"], rel=1e-5)
    assert rep.export_error <= 1e-4 and rep.loss_name == "distill" and rep.bn == "none"
    # the written model is what was measured: its outputs, recomputed here, are closer to the teacher's
    x = np.load(data)["x"]
    t0 = session(onnx.load(str(teacher))).run(["y0"], {"x": x})[0]
    before = session(onnx.load(str(student))).run(["y0"], {"x": x})[0]
    after = session(onnx.load(str(out))).run(["y0"], {"x": x})[0]
    rel = float(np.mean((after - t0) ** 2) / np.mean(t0**2))
    assert rel == pytest.approx(by["y0"]["after"], rel=1e-3, abs=1e-6)
    assert np.mean((after - t0) ** 2) < np.mean((before - t0) ** 2)


def test_an_output_switched_off_is_not_trained(multi, tmp_path):
    teacher, student, data = multi
    rep = finetune(student, data, tmp_path / "d.onnx", teacher=teacher, epochs=3, lr=1e-2, batch=16,
                   output_loss={"y0": "off"})
    by = {o["output"]: o for o in rep.outputs}
    assert by["y0"]["loss"] == "off" and by["y0"]["after"] is None and by["y1"]["after"] < by["y1"]["before"]


def test_softmax_output_is_distilled_through_its_logits(tmp_path):
    teacher, student, data = _prune(with_softmax(), tmp_path, "sm", n=32)
    rep = finetune(student, data, tmp_path / "d.onnx", teacher=teacher, epochs=10, lr=1e-2, batch=8,
                   temperature=3.0)
    (o,) = rep.outputs
    assert o["loss"] == "kl" and o["compared"] == "y" and o["why"] == "a Softmax output"
    assert o["after"] < o["before"]


def with_ctc_scores() -> onnx.ModelProto:
    """multi_output whose map y0 (N,4,8,8) becomes per-step class scores 'seq' (N,64,4): a CTC recogniser's shape,
    64 steps of 4 classes (blank 0), through a Softmax."""
    m = patterns.build("multi_output")
    out = next(o for o in m.graph.output if o.name == "y0")
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array([0, 4, 64], np.int64), "seq_shape"))
    m.graph.node.extend([helper.make_node("Reshape", ["y0", "seq_shape"], ["y0_flat"]),
                         helper.make_node("Transpose", ["y0_flat"], ["y0_steps"], perm=[0, 2, 1]),
                         helper.make_node("Softmax", ["y0_steps"], ["seq"], axis=-1)])
    vi = helper.make_tensor_value_info("seq", out.type.tensor_type.elem_type, ["N", 64, 4])
    outs = [vi if o.name == "y0" else o for o in m.graph.output]
    del m.graph.output[:]
    m.graph.output.extend(outs)
    onnx.checker.check_model(m, full_check=True)
    return m


def test_ctc_term_reads_the_teachers_greedy_transcription():
    """kl+ctc's CTC term: the teacher's per-step best classes 1 1 0 2 2 0 1 read "1 2 1" (repeats merged, blanks
    dropped), and the student's CTC loss on that text is what torch gives for it, not for the raw path."""
    import torch
    import torch.nn.functional as F

    from spa.distill import Distillation, OutputLoss

    path = torch.tensor([[1, 1, 0, 2, 2, 0, 1]])
    t = F.one_hot(path, 4).float() * 5
    s = torch.randn(1, 7, 4, generator=torch.Generator().manual_seed(0))
    got = Distillation._ctc(OutputLoss("seq", "kl+ctc", "", axis=-1), s, t)
    logp = F.log_softmax(s, -1).transpose(0, 1)
    want = F.ctc_loss(logp, torch.tensor([1, 2, 1]), torch.tensor([7]), torch.tensor([3]), reduction="mean")
    raw = F.ctc_loss(logp, torch.tensor([1, 1, 2, 2, 1]), torch.tensor([7]), torch.tensor([5]), reduction="mean")
    assert torch.isclose(got, want) and not torch.isclose(got, raw)
    with pytest.raises(BadArgument, match="per-step class scores"):
        Distillation._ctc(OutputLoss("p", "kl+ctc", "", axis=1), torch.zeros(2, 4), torch.zeros(2, 4))


def test_ctc_scores_distil_with_kl_plus_ctc(tmp_path):
    teacher, student, data = _prune(with_ctc_scores(), tmp_path, "ctc", n=32)
    rep = finetune(student, data, tmp_path / "d.onnx", teacher=teacher, epochs=8, lr=1e-2, batch=8,
                   output_loss={"seq": "kl+ctc"})
    seq = next(o for o in rep.outputs if o["output"] == "seq")
    assert seq["loss"] == "kl+ctc" and seq["compared"] == "y0_steps"  # the logits the Softmax reads
    assert seq["after"] < seq["before"]


def with_sigmoid_map() -> onnx.ModelProto:
    """multi_output whose map y0 (N,4,8,8) goes through a Sigmoid into the output 'map' (a detector's
    probability map); y1 stays a plain output."""
    m = patterns.build("multi_output")
    out = next(o for o in m.graph.output if o.name == "y0")
    m.graph.node.append(helper.make_node("Sigmoid", ["y0"], ["map"]))
    vi = helper.make_tensor_value_info("map", out.type.tensor_type.elem_type,
                                       [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim])
    outs = [vi if o.name == "y0" else o for o in m.graph.output]
    del m.graph.output[:]
    m.graph.output.extend(outs)
    onnx.checker.check_model(m, full_check=True)
    return m


def test_bce_matches_a_sigmoid_map_through_its_logits(tmp_path):
    """--output-loss NAME=bce: the Bernoulli KL, 0 for the teacher itself, compared through the Sigmoid's input,
    and trained down; without the logits (a probability output) it gives the same value."""
    from spa.distill import Distillation

    teacher, student, data = _prune(with_sigmoid_map(), tmp_path, "sig", n=32)
    t = onnx.load(str(teacher))
    x = {"x": np.load(data)["x"]}
    same = Distillation(t, t, x, 8, 2.0, {"map": "bce"})
    assert [(p.kind, p.value) for p in same.plan] == [("bce", "y0"), ("mse", "y1")]
    module = onnx_to_torch(t)
    module.eval()
    assert float(same.torch_loss(module, [torch.from_numpy(x["x"][:8])], np.arange(8)).detach()) < 1e-6
    rep = finetune(student, data, tmp_path / "d.onnx", teacher=teacher, epochs=10, lr=1e-2, batch=8,
                   output_loss={"map": "bce"})
    by = {o["output"]: o for o in rep.outputs}
    assert by["map"]["loss"] == "bce" and by["map"]["compared"] == "y0" and by["map"]["why"] == "--output-loss"
    assert 0 < by["map"]["after"] < by["map"]["before"]
    # the same loss on the probabilities (a student whose Sigmoid input is named otherwise): equal values
    s = onnx.load(str(student))
    logits = Distillation(s, t, x, 8, 2.0, {"map": "bce"})
    for n in s.graph.node:
        if n.op_type == "Sigmoid":
            n.input[0] = "y0_renamed"
        n.output[:] = ["y0_renamed" if o == "y0" else o for o in n.output]
    probs = Distillation(s, t, x, 8, 2.0, {"map": "bce"})
    assert probs.plan[0].value == "map"
    m_s = onnx_to_torch(s)
    m_s.eval()
    xs = [torch.from_numpy(x["x"][:8])]
    a = float(logits.torch_loss(onnx_to_torch(onnx.load(str(student))).eval(), xs, np.arange(8)).detach())
    b = float(probs.torch_loss(m_s, xs, np.arange(8)).detach())
    assert a > 1e-4 and abs(a - b) < 1e-4 * max(1.0, a)


def test_bce_refuses_values_outside_zero_one(multi):
    from spa.distill import Distillation

    teacher, student, data = multi
    with pytest.raises(BadArgument, match=r"--output-loss y0=bce: .* outside \[0, 1\]"):
        Distillation(onnx.load(str(student)), onnx.load(str(teacher)), {"x": np.load(data)["x"]}, 8, 2.0, {"y0": "bce"})
    assert_one_line_error(spa_cli("finetune", student, "--teacher", teacher, "--data", data, "-o",
                                  Path(data).with_name("o.onnx"), "--output-loss", "y0=bce"), 2, "outside [0, 1]")
    assert_one_line_error(spa_cli("finetune", student, "--teacher", teacher, "--data", data, "-o",
                                  Path(data).with_name("o.onnx"), "--output-loss", "y0=ce"), 2, "NAME=kl|kl+ctc|bce|mse|off")


def test_batchnorm_statistics_are_buffers_reestimated_on_the_data():
    m = patterns.build("conv_bn_relu")
    module = onnx_to_torch(m)
    names = {n for n, _ in module.named_parameters()}
    assert module.param_names["bn.m"] not in names and module.param_names["bn.v"] not in names  # not trained
    assert module.param_names["bn.s"] in names
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((40, 3, 8, 8)).astype(np.float32) * 3 + 1)
    with torch.no_grad():
        _, extra = module.eval().run(x, extra=("t",))  # what reaches the BatchNorm
    t = extra["t"].numpy().astype(np.float64)
    reestimate_bn(module, [(x[:20],), (x[20:],)])
    assert not module.training
    mean = getattr(module, module.param_names["bn.m"]).detach().numpy()
    var = getattr(module, module.param_names["bn.v"]).detach().numpy()
    # the average of the two halves' statistics (torch's unbiased batch variance)
    halves = [t[:20], t[20:]]
    want_mean = np.mean([h.mean(axis=(0, 2, 3)) for h in halves], axis=0)
    want_var = np.mean([h.var(axis=(0, 2, 3), ddof=1) for h in halves], axis=0)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, want_var, rtol=1e-4, atol=1e-5)


def test_bn_reestimation_alone_and_frozen(tmp_path):
    teacher, student, data = _prune(patterns.build("conv_bn_relu"), tmp_path, "bn", n=32)
    x = np.load(data)["x"]
    y_student = session(onnx.load(str(student))).run(None, {"x": x})[0]
    frozen = finetune(student, data, tmp_path / "f.onnx", teacher=teacher, epochs=0, freeze_bn=True)
    assert frozen.bn == "frozen" and frozen.bn_layers == 1
    np.testing.assert_allclose(session(onnx.load(str(tmp_path / "f.onnx"))).run(None, {"x": x})[0], y_student,
                               rtol=1e-5, atol=1e-5)
    rep = finetune(student, data, tmp_path / "r.onnx", teacher=teacher, epochs=0)
    assert rep.bn == "re-estimated" and rep.bn_layers == 1
    y = session(onnx.load(str(tmp_path / "r.onnx"))).run(None, {"x": x})[0]
    assert not np.allclose(y, y_student)  # the statistics changed, nothing was trained
    assert rep.outputs[0]["after"] != rep.outputs[0]["before"]


def _bn_mean(path: Path) -> np.ndarray:
    m = onnx.load(str(path))
    bn = next(n for n in m.graph.node if n.op_type == "BatchNormalization")
    return next(onnx.numpy_helper.to_array(i) for i in m.graph.initializer if i.name == bn.input[3])


def test_bn_reestimated_on_augmented_batches(tmp_path):
    """--bn-augmented: the final statistics are those of the inputs as trained on (here half of them inverted, which
    moves the mean that reaches the BatchNorm), not of the data as given; the training itself is the same."""
    teacher, student, data = _prune(patterns.build("conv_bn_relu"), tmp_path, "bn", n=32)
    common = {"teacher": teacher, "epochs": 1, "lr": 1e-12, "augment": "invert", "batch": 8, "seed": 3}
    plain = finetune(student, data, tmp_path / "p.onnx", **common)
    aug = finetune(student, data, tmp_path / "a.onnx", bn_augmented=True, **common)
    assert plain.bn == "re-estimated" and aug.bn == "re-estimated-augmented"
    assert not np.allclose(_bn_mean(tmp_path / "p.onnx"), _bn_mean(tmp_path / "a.onnx"), atol=1e-3)
    # only the statistics differ: with them set alike, the two models agree
    epoch0 = finetune(student, data, tmp_path / "z.onnx", teacher=teacher, epochs=0)
    np.testing.assert_allclose(_bn_mean(tmp_path / "p.onnx"), _bn_mean(tmp_path / "z.onnx"), rtol=1e-4, atol=1e-5)
    with pytest.raises(BadArgument, match="needs --augment"):
        finetune(student, data, tmp_path / "e.onnx", teacher=teacher, epochs=1, bn_augmented=True)
    with pytest.raises(BadArgument, match="no --freeze-bn"):
        finetune(student, data, tmp_path / "e.onnx", bn_augmented=True, freeze_bn=True, **common)
    assert epoch0.bn == "re-estimated"
    assert_one_line_error(spa_cli("finetune", student, "--teacher", teacher, "--data", data, "-o",
                                  tmp_path / "c.onnx", "--bn-augmented"), 2, "needs --augment")


def test_cli_distils_with_progress_and_rejects_a_mismatched_teacher(multi, tmp_path):
    teacher, student, data = multi
    out = tmp_path / "d.onnx"
    r = spa_cli("finetune", student, "--teacher", teacher, "--data", data, "-o", out, "--epochs", "2",
                "--batch", "16")
    assert r.returncode == 0, r.stderr
    assert [ln.split(":")[0] for ln in r.stderr.splitlines()] == ["epoch 1/2", "epoch 2/2"] and "ETA" in r.stderr
    assert "output y0: mse" in r.stdout and "output y1: mse" in r.stdout and out.is_file()
    r = spa_cli("finetune", student, "--teacher", teacher, "--data", data, "-o", out, "--epochs", "1", "--json")
    assert r.returncode == 0 and not r.stderr.strip() and json.loads(r.stdout)["loss"] == "distill"

    bad = tmp_path / "bad"
    bad.mkdir()
    other_in = bad / "conv1d.onnx"
    onnx.save(patterns.build("conv1d_bn"), str(other_in))  # x is (N, 3, 8)
    other_out = bad / "two_gemms.onnx"
    onnx.save(patterns.build("two_gemms"), str(other_out))  # x (N, 3, 8, 8) -> y
    o = bad / "o.onnx"
    base = ("finetune", student, "--data", data, "-o", o)
    assert_one_line_error(spa_cli(*base, "--teacher", bad / "missing.onnx"), 3, "no such file")
    assert_one_line_error(spa_cli(*base, "--teacher", other_in), 2, "--teacher input 'x'")
    assert_one_line_error(spa_cli(*base, "--teacher", other_out), 2, "--teacher gives outputs ['y']")
    assert_one_line_error(spa_cli(*base, "--teacher", teacher, "--loss", "mse"), 2, "--loss and --target")
    assert_one_line_error(spa_cli(*base, "--teacher", teacher, "--output-loss", "y0=l1"), 2, "NAME=kl|kl+ctc|bce|mse|off")
    assert_one_line_error(spa_cli(*base, "--teacher", teacher, "--output-loss", "z=kl"), 2, "not outputs")
    assert_one_line_error(spa_cli(*base), 2, "--teacher")  # unlabelled data without a teacher
    assert not o.exists()


@pytest.mark.parametrize("name", ["softmax_opset11_last", "softmax_opset11_axis1"])
def test_opset11_softmax_reexports_with_a_symbolic_batch(name, tmp_path):
    """opset < 13 Softmax coerces to 2-D; the round trip must not bake the example's batch into that reshape
    (PP-OCRv4 rec's final Softmax did: the re-export then failed at any other batch size)."""
    p = tmp_path / f"{name}.onnx"
    onnx.save(patterns.build(name), str(p))
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    rep = finetune(p, {"x": x}, tmp_path / "o.onnx", teacher=p, epochs=1, batch=4)
    assert rep.export_error <= 1e-4
    y = session(onnx.load(str(tmp_path / "o.onnx"))).run(None, {"x": x[:5]})[0]
    assert y.shape[0] == 5


def test_single_element_constants_are_not_trained(tmp_path):
    """A Pow's exponent is a float initializer; trained, its gradient x^p ln(x) is NaN for x <= 0 (PP-OCRv4 rec's
    decomposed LayerNorm diverged at the first step).  Scalars stay constants; the weights still train."""
    m = patterns.build("two_gemms")
    out = m.graph.output[0]
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    m.graph.node.append(helper.make_node("Pow", ["y", "two"], ["sq"]))
    m.graph.output.remove(out)
    m.graph.output.append(helper.make_tensor_value_info("sq", out.type.tensor_type.elem_type, ["N", 5]))
    p = tmp_path / "pow.onnx"
    onnx.save(m, str(p))
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    rep = finetune(p, {"x": x, "y": np.random.default_rng(1).standard_normal((16, 5)).astype(np.float32)},
                   tmp_path / "o.onnx", loss="mse", epochs=3, lr=1e-2, batch=8)
    assert np.isfinite(rep.loss_after) and rep.loss_after < rep.loss_before


def test_distillation_reads_a_folder_of_images_like_calib(tmp_path):
    """`--data` takes the folders `--calib` takes (spa.images), with the same preprocessing flags named --data-*."""
    pytest.importorskip("PIL")
    from PIL import Image

    from spa.finetune import load_data

    model = onnx.load(Path(__file__).resolve().parents[1] / "models" / "samples" / "simple_cnn.onnx")
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 256, (dims[2], dims[3], 3), dtype=np.uint8)).save(folder / f"{k}.png")
    arrays = load_data(folder, model, {"mean": "0.5,0.5,0.5", "std": "0.5,0.5,0.5"})
    x = arrays[model.graph.input[0].name]
    assert x.shape == (3, 3, dims[2], dims[3]) and -1.0 <= x.min() and x.max() <= 1.0
    with pytest.raises(BadArgument, match="--data-layout"):
        load_data(folder, model, {"layout": "xyz"})


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """(teacher: transformers' BertModel, tiny, legacy export with a symbolic batch and sequence; the student pruned
    at 0.5; 32 unlabelled 'sentences' whose last positions are padding, as a tokenizer pads them)."""
    pytest.importorskip("transformers")
    from models import zoo_transformers as zt

    d = tmp_path_factory.mktemp("bert")
    teacher = zt.export("bert", d / "bert.onnx")
    small, rep = spa.prune(str(teacher), ratio=0.5)
    assert rep.groups_pruned >= 1
    student = d / "bert_pruned.onnx"
    modelfile.save_atomic(small, student)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 512, (32, 16)).astype(np.int64)
    mask = (np.arange(16) < rng.integers(4, 17, 32)[:, None]).astype(np.int64)
    return teacher, student, {"input_ids": ids * mask, "attention_mask": mask}


def test_tiny_bert_distils_and_reexports_with_a_symbolic_batch(tiny_bert, tmp_path):
    """A BERT graph round-trips, trains and re-exports: its Shape -> Gather -> Concat head reshapes, the mask's
    Range over the batch, a bool ConstantOfShape and IsNaN (all-MiniLM-L6-v2 had each); sizes taken from a Shape
    must stay symbolic in the re-export, not be baked in at the trace's batch size."""
    teacher, student, data = tiny_bert
    out = tmp_path / "d.onnx"
    rep = finetune(student, data, out, teacher=teacher, epochs=2, lr=1e-3, batch=8)
    assert rep.loss_after < 0.8 * rep.loss_before, (rep.loss_before, rep.loss_after)
    assert rep.export_error <= 1e-4
    by = {o["output"]: o for o in rep.outputs}  # per token (N, T, 64) and pooled (N, 64)
    assert by["last_hidden_state"]["loss"] == "mse" and "attention_mask is 0 ignored" in by["last_hidden_state"]["why"]
    assert by["pooler_output"]["loss"] == "mse" and "ignored" not in by["pooler_output"]["why"]
    feeds = {k: v[:5] for k, v in data.items()}  # a batch size the export never saw
    got = session(onnx.load(str(out))).run(None, feeds)[0]
    module = onnx_to_torch(onnx.load(str(out))).eval()
    with torch.no_grad():
        ref = module(*[torch.from_numpy(feeds[k]) for k in module.input_names])[0].numpy()
    assert got.shape == (5, 16, 64) and np.allclose(got, ref, atol=1e-4)


def test_padded_positions_are_not_compared(tiny_bert):
    """The hidden states at padded positions are no part of a sentence's embedding: a student that differs from
    the teacher only there has zero loss, one that differs at a real token does not."""
    from spa.distill import Distillation

    teacher, _, data = tiny_bert
    t_proto = onnx.load(str(teacher))
    obj = Distillation(t_proto, t_proto, data, 8, 2.0, {})
    base = onnx_to_torch(t_proto).eval()
    mask = torch.from_numpy(data["attention_mask"])

    class Shifted:  # the teacher's module, its per-token output moved by 1 where `where` is true
        input_names, output_names = base.input_names, base.output_names

        def __init__(self, where: torch.Tensor) -> None:
            self.where = where

        def run(self, *xs, extra=()):
            (y, pooled), ex = base.run(*xs, extra=extra)
            rows = torch.as_tensor(self.idx)
            return (y + self.where[rows][..., None].float(), pooled), ex

    feed = [torch.from_numpy(data[k]) for k in base.input_names]
    batches = [np.arange(0, 16), np.arange(16, 32)]

    def loss(where: torch.Tensor) -> float:
        m = Shifted(where)
        total = 0.0
        for idx in batches:
            m.idx = idx
            with torch.no_grad():
                total += float(obj.torch_loss(m, [f[idx] for f in feed], idx))
        return total

    assert (mask == 0).any()
    assert loss(mask == 0) < 1e-9
    assert loss(mask != 0) > 1e-3
