"""`spa finetune`: prune → fine-tune through the ONNX → torch round trip → ONNX again (CI-cheap: a tiny model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

pytest.importorskip("torch")

import spa
from models import patterns
from spa import modelfile
from spa import finetune as finetune_mod
from spa.finetune import _train, finetune, lr_factor
from spa.verify import session

ROOT = Path(__file__).resolve().parents[1]


def spa_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spa", *map(str, args)], check=False, capture_output=True, text=True,
                          cwd=ROOT)


def assert_one_line_error(r: subprocess.CompletedProcess, code: int, needle: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("spa: error: ") and needle in lines[0], r.stderr


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> tuple[Path, Path]:
    """two_gemms (conv, conv, GAP, 3 Gemms; input x (N,3,8,8), output y (N,5)) pruned at 0.5, and 32 samples."""
    d = tmp_path_factory.mktemp("ft")
    src = d / "two_gemms.onnx"
    onnx.save(patterns.build("two_gemms"), str(src))
    small, rep = spa.prune(str(src), ratio=0.5)
    assert rep.groups_pruned >= 2
    modelfile.save_atomic(small, d / "pruned.onnx")
    rng = np.random.default_rng(0)
    np.savez(d / "train.npz", x=rng.standard_normal((32, 3, 8, 8)).astype(np.float32), y=rng.integers(0, 5, 32))
    return d / "pruned.onnx", d / "train.npz"


def test_finetune_lowers_the_loss_and_writes_a_valid_dynamic_batch_model(pruned, tmp_path):
    model, data = pruned
    out = tmp_path / "tuned.onnx"
    rep = finetune(model, data, out, epochs=10, lr=1e-2, batch=8)
    assert rep.loss_after < rep.loss_before and rep.accuracy_after is not None
    assert rep.export_error <= 1e-4 and rep.samples == 32
    tuned, orig = onnx.load(str(out)), onnx.load(str(model))
    onnx.checker.check_model(tuned, full_check=True)
    assert [i.name for i in tuned.graph.input] == ["x"] and [o.name for o in tuned.graph.output] == ["y"]
    assert tuned.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # batch stays symbolic
    x = np.random.default_rng(1).standard_normal((7, 3, 8, 8)).astype(np.float32)
    y_new, y_old = session(tuned).run(None, {"x": x})[0], session(orig).run(None, {"x": x})[0]
    assert y_new.shape == y_old.shape == (7, 5)
    assert not np.allclose(y_new, y_old)  # the weights did change
    # the reported loss is the written model's, recomputed here
    z = np.load(data)
    logits = session(tuned).run(None, {"x": z["x"]})[0].astype(np.float64)
    logits -= logits.max(1, keepdims=True)
    nll = -(logits - np.log(np.exp(logits).sum(1, keepdims=True)))[np.arange(32), z["y"]]
    assert abs(nll.mean() - rep.loss_after) < 1e-5


def test_finetune_mse_and_input_key(pruned, tmp_path):
    model, _ = pruned
    rng = np.random.default_rng(2)
    arrays = {"images": rng.standard_normal((16, 3, 8, 8)).astype(np.float32),
              "target": rng.standard_normal((16, 5)).astype(np.float32)}
    rep = finetune(model, arrays, tmp_path / "t.onnx", epochs=5, lr=1e-2, batch=4, loss="mse", input_key="images")
    assert rep.loss_after < rep.loss_before and rep.accuracy_after is None


def test_warmup_rises_linearly_then_follows_the_cosine():
    steps = 100
    plain = [lr_factor(k, steps) for k in range(steps)]
    warm = [lr_factor(k, steps, 0.1) for k in range(steps)]
    assert plain[0] == 1.0 and warm[0] == pytest.approx(0.1) and warm[4] == pytest.approx(0.5 * plain[4])
    assert warm[9:] == plain[9:]  # from step 10 (the 10th factor) on, the cosine alone
    assert all(a < b for a, b in zip(warm[:9], warm[1:10]))  # rising over the warm-up
    assert lr_factor(0, 5, 0.05) == 1.0  # under one step of warm-up: none


def test_finetune_with_warmup_differs_and_lowers_the_loss(pruned, tmp_path):
    model, data = pruned
    plain = finetune(model, data, tmp_path / "a.onnx", epochs=4, lr=1e-2, batch=8)
    warm = finetune(model, data, tmp_path / "b.onnx", epochs=4, lr=1e-2, batch=8, warmup=0.5)
    assert warm.loss_after < warm.loss_before and warm.loss_after != plain.loss_after


def test_average_holds_the_learning_rate_over_its_last_share():
    steps = 100
    plain = [lr_factor(k, steps) for k in range(steps)]
    avg = [lr_factor(k, steps, 0.0, 0.25) for k in range(steps)]
    assert avg[:76] == plain[:76] and set(avg[75:]) == {plain[75]} and 0 < plain[75] < 1
    assert lr_factor(99, steps, 0.1, 0.25) == lr_factor(75, steps, 0.1)  # after a warm-up too


def test_average_is_the_mean_of_the_weights_after_the_last_steps():
    """One batch per epoch: `progress` sees the weights after every step; the result is their mean over the last
    round(0.5 * 6) = 3 steps, not the last step's weights."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    x, y = torch.randn(4, 3), torch.randn(4, 2)

    class Obj:
        def torch_loss(self, m, xs, idx):
            return torch.nn.functional.mse_loss(m(*xs), y)

    seen = []
    _train(torch, module, Obj(), lambda idx: [x], [np.arange(4)], 4, 4, 0, 6, 0.1, 0, "none",
           lambda *a: seen.append(module.weight.detach().clone()), 0.0, average=0.5)
    assert len(seen) == 6 and not torch.allclose(seen[-1], seen[-2])
    assert torch.allclose(module.weight, torch.stack(seen[3:]).mean(0), atol=1e-6)
    assert not torch.allclose(module.weight, seen[-1])


def test_finetune_with_average_differs_and_lowers_the_loss(pruned, tmp_path):
    model, data = pruned
    plain = finetune(model, data, tmp_path / "a.onnx", epochs=4, lr=1e-2, batch=8)
    avg = finetune(model, data, tmp_path / "b.onnx", epochs=4, lr=1e-2, batch=8, average=0.5)
    assert avg.loss_after < avg.loss_before and avg.loss_after != plain.loss_after


def test_cli_finetune_prints_before_and_after(pruned, tmp_path):
    model, data = pruned
    out = tmp_path / "tuned.onnx"
    r = spa_cli("finetune", model, "--data", data, "-o", out, "--epochs", "2", "--lr", "0.01", "--batch", "8",
                "--target", "y", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["loss"] == "ce" and d["epochs"] == 2 and d["accuracy_before"] is not None and out.is_file()


def test_cli_finetune_bad_inputs_exit_2_with_one_line(pruned, tmp_path):
    model, data = pruned
    out = tmp_path / "o.onnx"
    assert_one_line_error(spa_cli("finetune", model, "--data", tmp_path / "nope.npz", "-o", out), 2, "no such file")
    assert_one_line_error(spa_cli("finetune", model, "--data", data, "-o", out, "--target", "labels"), 2,
                          "no array 'labels'")
    assert_one_line_error(spa_cli("finetune", model, "--data", data, "-o", out, "--loss", "hinge"), 2, "unknown loss")
    assert_one_line_error(spa_cli("finetune", model, "--data", data, "-o", out, "--loss", "mse"), 2, "--loss mse")
    assert_one_line_error(spa_cli("finetune", model, "--data", data, "-o", model), 2, "is the input")
    assert_one_line_error(spa_cli("finetune", model, "--data", data, "-o", out, "--warmup", "1"), 2, "--warmup")
    assert_one_line_error(spa_cli("finetune", model, "--data", data, "-o", out, "--warmup", "0.5", "--average",
                                  "0.6"), 2, "--average")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 3, 9, 9), np.float32), y=np.zeros(4, np.int64))
    assert_one_line_error(spa_cli("finetune", model, "--data", bad, "-o", out), 2, "has shape")
    assert not out.exists()


def test_unsupported_op_is_named(tmp_path):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])
    w = onnx.numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Hardmax", ["h"], ["y"])],
                          "g", [x], [y], [w])
    p = tmp_path / "hm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    np.savez(tmp_path / "d.npz", x=np.ones((4, 4), np.float32), y=np.zeros(4, np.int64))
    r = spa_cli("finetune", p, "--data", tmp_path / "d.npz", "-o", tmp_path / "o.onnx")
    assert_one_line_error(r, 3, "Hardmax")


def test_missing_torch_says_how_to_install(pruned, tmp_path):
    model, data = pruned
    code = ("import sys; sys.modules['torch'] = None; from spa.cli import main; "
            f"sys.argv = ['spa', 'finetune', {str(model)!r}, '--data', {str(data)!r}, '-o', {str(tmp_path / 'o.onnx')!r}]; "
            "main()")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT)
    assert_one_line_error(r, 2, "pip install 'spa[torch]'")


def test_reshape_to_a_computed_shape_keeps_the_batch_free(tmp_path):
    """A Reshape whose shape comes from Shape -> Slice -> Concat (PP-OCRv4 rec's flatten, kept so by spa at 0.3) and
    one with a 0 (copy the input's size): the re-exported model must run at every batch, not only the example's."""
    f32 = onnx.TensorProto.FLOAT
    nodes = [helper.make_node("Mul", ["x", "w"], ["h"]), helper.make_node("Shape", ["h"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "two"], ["nc"]), helper.make_node("Concat", ["nc", "minus1"], ["t"],
                                                                                    axis=0),
             helper.make_node("Reshape", ["h", "t"], ["f"]), helper.make_node("Reshape", ["f", "copy"], ["y"])]
    inits = [onnx.numpy_helper.from_array(np.linspace(0.5, 1.5, 4, dtype=np.float32).reshape(1, 4, 1, 1), "w"),
             *(onnx.numpy_helper.from_array(np.array(v, np.int64), n)
               for n, v in (("zero", [0]), ("two", [2]), ("minus1", [-1]), ("copy", [0, -1])))]
    graph = helper.make_graph(nodes, "computed_reshape", [helper.make_tensor_value_info("x", f32, ["N", 4, 2, 3])],
                              [helper.make_tensor_value_info("y", f32, ["N", 24])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    x = np.random.default_rng(0).standard_normal((8, 4, 2, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    # the re-export is checked at batches 2 and 3; before, the example's batch 2 was baked into the first Reshape
    # (the TorchScript re-export is finetune's fallback since the weights are written back into the graph: forced)
    import torch

    from spa.onnx_to_torch import onnx_to_torch

    module = onnx_to_torch(model).eval()
    exported = finetune_mod._export(torch, module, model, {"x": x}, True, 0)
    assert finetune_mod._check_export(torch, module, exported, {"x": x}, True, 0) <= 1e-4
    got = session(exported).run(None, {"x": x[:5]})[0]
    np.testing.assert_allclose(got, session(model).run(None, {"x": x[:5]})[0], rtol=1e-6)


def test_the_trained_weights_are_written_into_the_input_graph(pruned, tmp_path, monkeypatch):
    """The output is the input graph (nodes, names, opset) with new initializer values, so a later prune or --plan
    sees the same tensors; where the copy would not reproduce the trained module the re-export is written."""
    model, data = pruned
    finetune(model, data, tmp_path / "tuned.onnx", epochs=2, lr=1e-2, batch=8)
    tuned, orig = onnx.load(str(tmp_path / "tuned.onnx")), onnx.load(str(model))
    assert tuned.graph.node == orig.graph.node and tuned.opset_import == orig.opset_import
    assert [i.name for i in tuned.graph.initializer] == [i.name for i in orig.graph.initializer]
    new = {i.name: onnx.numpy_helper.to_array(i) for i in tuned.graph.initializer}
    old = {i.name: onnx.numpy_helper.to_array(i) for i in orig.graph.initializer}
    assert all(new[k].shape == old[k].shape and new[k].dtype == old[k].dtype for k in old)
    assert any(not np.array_equal(new[k], old[k]) for k in old)

    def wrong(module, proto):  # a copy that does not reproduce the module: the check must catch it
        return onnx.ModelProto.FromString(proto.SerializeToString())

    monkeypatch.setattr(finetune_mod, "write_back", wrong)
    rep = finetune(model, data, tmp_path / "exported.onnx", epochs=2, lr=1e-2, batch=8)
    exported = onnx.load(str(tmp_path / "exported.onnx"))
    assert rep.export_error <= 1e-4 and exported.graph.node != orig.graph.node  # the TorchScript re-export
