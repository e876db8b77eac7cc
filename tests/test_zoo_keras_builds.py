"""Keras zoo: every tiny model builds, exports with tf2onnx and matches onnxruntime."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from models import zoo_keras

pytestmark = pytest.mark.keras

NAMES = sorted(zoo_keras.KERAS_ZOO)
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def _tf_stack():
    """Import TF / tf2onnx / onnxruntime once for the whole module (skip if absent)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    return onnx, ort


def test_import_is_lazy():
    code = "import sys, models.zoo_keras; assert 'tensorflow' not in sys.modules; " \
           "assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_registry_and_shapes():
    assert set(NAMES) == {"k_simple_cnn", "k_resnet", "k_mobilenet_v2", "k_densenet",
                          "k_inception", "k_unet", "k_separable"}
    for name in NAMES:
        for size in ("tiny", "full"):
            shp = zoo_keras.input_shape(name, size)
            assert len(shp) == 4 and shp[0] == 1 and shp[3] == 3
        assert zoo_keras.input_shape(name, "tiny")[1] in (32, 64)
    with pytest.raises(ValueError):
        zoo_keras.input_shape("k_resnet", "huge")
    with pytest.raises(KeyError):
        zoo_keras.input_shape("nope")


@pytest.mark.parametrize("name", NAMES)
def test_tiny_build_export_matches_ort(name, tmp_path, _tf_stack):
    onnx, ort = _tf_stack
    model = zoo_keras.build(name, "tiny")
    assert model.count_params() < 300_000
    shp = zoo_keras.input_shape(name, "tiny")
    assert tuple(model.inputs[0].shape[1:]) == shp[1:]

    path = zoo_keras.export(name, tmp_path, size="tiny", model=model)
    assert path.exists() and path.suffix == ".onnx"
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output"]
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert not batch_dim.HasField("dim_value")  # dynamic batch
    ops = {n.op_type for n in proto.graph.node}
    assert "Conv" in ops and "Transpose" in ops

    # batch 2 exercises the dynamic batch dimension
    x = np.random.default_rng(123).standard_normal((2, *shp[1:])).astype(np.float32)
    ref = np.asarray(model(x, training=False))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": x})
    assert out.shape == ref.shape
    assert np.all(np.isfinite(ref))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_build_is_deterministic_and_bn_randomized(_tf_stack):
    import keras

    a = zoo_keras.build("k_mobilenet_v2", "tiny")
    b = zoo_keras.build("k_mobilenet_v2", "tiny")
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        np.testing.assert_array_equal(u, v)
    bns = [l for l in a.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns
    for bn in bns:
        gamma = np.asarray(bn.gamma)
        var = np.asarray(bn.moving_variance)
        assert gamma.min() >= 0.5 and gamma.max() <= 1.5 and gamma.std() > 0
        assert var.min() >= 0.5 and var.max() <= 1.5 and var.std() > 0
        assert np.abs(np.asarray(bn.moving_mean)).max() > 0
        assert np.abs(np.asarray(bn.beta)).max() > 0


def test_export_to_explicit_file(tmp_path, _tf_stack):
    onnx, _ = _tf_stack
    target = tmp_path / "sub" / "cnn.onnx"
    p = zoo_keras.export("k_simple_cnn", target, opset=13)
    assert p == target and p.exists()
    proto = onnx.load(str(p))
    assert any(o.domain in ("", "ai.onnx") and o.version == 13 for o in proto.opset_import)
