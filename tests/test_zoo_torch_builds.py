"""Smoke tests for models/zoo_torch.py: build, forward, export, onnxruntime parity."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from models import zoo_torch as zoo  # noqa: E402

NAMES = sorted(zoo.ZOO)
RTOL, ATOL = 1e-3, 1e-4

REQUIRED = {
    "resnet18", "resnet50", "resnext", "mobilenet_v2", "mobilenet_v3", "efficientnet", "densenet",
    "googlenet", "squeezenet", "regnet", "unet", "shufflenet_v2", "vgg", "simple_cnn",
}


def _run_ort(path: pathlib.Path, x: torch.Tensor) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    return sess.run(None, {inp.name: x.numpy()})[0]


def test_registry_complete():
    assert REQUIRED <= set(zoo.ZOO)
    for name, spec in zoo.ZOO.items():
        assert spec.name == name
        shape = spec.input_shape("tiny")
        assert len(shape) == 4 and shape[:2] == (1, 3) and shape[2] in (32, 64)
        assert spec.input_shape("full") in ((1, 3, 224, 224), (1, 3, 64, 64))


@pytest.mark.parametrize("name", NAMES)
def test_tiny_build_forward_export_ort(name, tmp_path):
    model = zoo.build(name, "tiny")
    assert not model.training
    n_params = zoo.count_params(model)
    assert 0 < n_params < 1_000_000, n_params

    # BatchNorm layers carry non-trivial statistics / affine params.
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if name != "squeezenet":  # SqueezeNet has no normalisation layers
        assert bns
    for bn in bns:
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))

    x = zoo.example_input(name, "tiny", batch=2)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.isfinite(ref).all()
    assert ref.std() > 1e-3  # not a degenerate (constant) network

    path = zoo.export(name, tmp_path / f"{name}.onnx", size="tiny")
    assert path.exists() and path.stat().st_size > 0
    assert not list(tmp_path.glob("*.data"))  # self-contained
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"

    got = _run_ort(path, x)  # batch 2 with a batch-1 export exercises the dynamic axis
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


def test_build_is_deterministic():
    torch.manual_seed(123)
    before = torch.rand(1)
    a = zoo.build("resnet18")
    b = zoo.build("resnet18")
    after_state = torch.rand(1)
    torch.manual_seed(123)
    torch.rand(1)
    assert torch.equal(after_state, torch.rand(1)), "build() must not disturb the global RNG"
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(zoo.example_input("resnet18"), zoo.example_input("resnet18"))
    del before


def test_keep_batchnorm_export(tmp_path):
    name = "resnet18"
    path = zoo.export(name, tmp_path / "bn.onnx", keep_batchnorm=True)
    proto = onnx.load(str(path))
    assert any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    x = zoo.example_input(name, batch=2)
    with torch.no_grad():
        ref = zoo.build(name)(x).numpy()
    np.testing.assert_allclose(_run_ort(path, x), ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["simple_cnn", "shufflenet_v2"])
def test_dynamo_export_runs_in_ort(name, tmp_path):
    model = zoo.build(name)
    path = zoo.export(name, tmp_path / f"{name}_dynamo.onnx", dynamo=True)
    assert not list(tmp_path.glob("*.data"))
    proto = onnx.load(str(path))
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {17}
    for batch in (1, 3):
        x = zoo.example_input(name, batch=batch)
        with torch.no_grad():
            ref = model(x).numpy()
        np.testing.assert_allclose(_run_ort(path, x), ref, rtol=RTOL, atol=ATOL)


def test_full_resnet50_param_count():
    model = zoo.build("resnet50", "full")
    assert zoo.count_params(model) == 25_557_032
    assert model.fc.out_features == 1000
    assert zoo.ZOO["resnet50"].input_shape("full") == (1, 3, 224, 224)
