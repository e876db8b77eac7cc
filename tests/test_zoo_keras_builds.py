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
                          "k_inception", "k_unet", "k_separable",
                          "k_resnet50", "k_resnext", "k_mobilenet_v3", "k_efficientnet",
                          "k_squeezenet", "k_regnet", "k_shufflenet_v2"}
    for name in NAMES:
        for size in ("tiny", "full"):
            shp = zoo_keras.input_shape(name, size)
            assert len(shp) == 4 and shp[0] == 1 and shp[3] == 3
        assert zoo_keras.input_shape(name, "tiny")[1] in (32, 64)
    with pytest.raises(ValueError):
        zoo_keras.input_shape("k_resnet", "huge")
    with pytest.raises(KeyError):
        zoo_keras.input_shape("nope")


def _conv_groups(proto):
    """[(group, C_in)] of every Conv (C_in from the weight: C_in/group * group)."""
    from onnx import helper

    inits = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    out = []
    for n in proto.graph.node:
        if n.op_type != "Conv":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        g = int(attrs.get("group", 1))
        w = inits.get(n.input[1])
        out.append((g, None if w is None else w[1] * g))
    return out


def _check_signature_ops(name, proto):
    """The ONNX pattern each of the second-batch architectures exists for."""
    from onnx import helper

    nodes = list(proto.graph.node)
    ops = [n.op_type for n in nodes]
    if name in ("k_resnext", "k_regnet"):
        grouped = [(g, c) for g, c in _conv_groups(proto) if 1 < g and c is not None and g < c]
        assert grouped, "expected grouped (non-depthwise) Conv nodes"
    if name == "k_resnext":
        assert {g for g, _ in _conv_groups(proto) if g > 1} == {4}
    if name == "k_resnet50":
        assert all(g == 1 for g, _ in _conv_groups(proto))
        assert ops.count("Add") >= 5  # one residual add per bottleneck block
    if name in ("k_mobilenet_v3", "k_efficientnet", "k_shufflenet_v2"):
        assert any(g > 1 and g == c for g, c in _conv_groups(proto)), "expected depthwise Conv"
    if name == "k_mobilenet_v3":
        assert "Clip" in ops and "Mul" in ops  # hard_swish / hard_sigmoid
    if name in ("k_efficientnet", "k_regnet"):
        assert "Sigmoid" in ops and "Mul" in ops  # swish and/or sigmoid SE gates
    if name == "k_squeezenet":
        assert "Concat" in ops and "MatMul" not in ops and "Gemm" not in ops
    if name == "k_shufflenet_v2":
        assert "Split" in ops and "Concat" in ops
        perms = [helper.get_attribute_value(a) for n in nodes if n.op_type == "Transpose"
                 for a in n.attribute if a.name == "perm"]
        assert any(len(p) == 5 for p in perms), "expected the 5-D channel-shuffle Transpose"


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
    assert "StatefulPartitionedCall" not in ops  # every TF function was converted
    _check_signature_ops(name, proto)

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


def test_grouped_conv_patch_is_scoped(_tf_stack):
    from keras.src import backend as kbackend

    from converters.keras_export import plain_grouped_conv

    before = kbackend.nn.conv
    with plain_grouped_conv():
        assert kbackend.nn.conv is not before
    assert kbackend.nn.conv is before


def test_full_sizes_are_realistic(_tf_stack):
    """Full variants of the second batch build at 224x224 with torchvision's widths.

    Build only, no export.  Trainable weights are compared (``count_params`` also
    counts the BN moving statistics); the numbers are torchvision's parameter counts.
    """
    expected = {
        "k_resnet50": 25_557_032,        # resnet50
        "k_resnext": 25_028_904,         # resnext50_32x4d
        "k_mobilenet_v3": 2_542_856,     # mobilenet_v3_small
        "k_efficientnet": 5_288_548,     # efficientnet_b0
        "k_squeezenet": 1_235_496,       # squeezenet1_1
        "k_regnet": 4_344_144,           # regnet_y_400mf
        "k_shufflenet_v2": 2_278_604,    # shufflenet_v2_x1_0
    }
    for name, trainable in expected.items():
        model = zoo_keras.build(name, "full")
        assert tuple(model.inputs[0].shape[1:]) == (224, 224, 3)
        n = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert n == trainable, (name, n)
