"""Every spec drawn by ``arch_strategy`` builds, runs, exports (legacy exporter)
and matches onnxruntime; specs round-trip through JSON exactly."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from models.random_arch import (
    MAX_CHANNELS,
    MAX_SPATIAL,
    ArchSpec,
    SpecError,
    arch_strategy,
    build_model,
    catalog_specs,
    example_input,
    export_onnx,
    infer_shapes,
    output_names,
    output_shapes,
    validate,
)

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _as_tuple(y):
    return y if isinstance(y, tuple) else (y,)


def _check_against_ort(spec: ArchSpec, tmp_path, batch: int = 2) -> onnx.ModelProto:
    model = build_model(spec)
    assert not model.training
    x = example_input(spec, batch=batch)
    with torch.no_grad():
        ref = _as_tuple(model(x))
    assert [tuple(t.shape) for t in ref] == output_shapes(spec, batch)
    for t in ref:
        assert torch.isfinite(t).all()

    path = export_onnx(spec, tmp_path / "model.onnx", model=model)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == output_names(spec)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    # the exported batch axis is dynamic: export used batch 1, run with `batch`
    got = sess.run(None, {"input": x.numpy()})
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        r = r.numpy()
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(r).max())))
    return proto


@SETTINGS
@given(spec=arch_strategy(max_blocks=6))
def test_random_arch_builds_exports_and_matches_ort(spec, tmp_path_factory):
    validate(spec)
    assert 1 <= spec.in_ch <= 4 and 8 <= spec.height <= 24 and 8 <= spec.width <= 24
    for c, h, w in infer_shapes(spec):
        assert 1 <= c <= MAX_CHANNELS and 1 <= h <= MAX_SPATIAL and 1 <= w <= MAX_SPATIAL
    _check_against_ort(spec, tmp_path_factory.mktemp("arch"))


@SETTINGS
@given(spec=arch_strategy(max_blocks=6))
def test_spec_json_round_trip_is_exact(spec):
    text = spec.to_json()
    back = ArchSpec.from_json(text)
    assert back == spec
    assert hash(back) == hash(spec)
    assert back.to_json() == text
    assert ArchSpec.from_json(spec.to_json(indent=2)) == spec
    json.loads(text)  # plain JSON
    assert infer_shapes(back) == infer_shapes(spec)


@pytest.mark.parametrize("spec", catalog_specs(), ids=lambda s: f"catalog{s.seed}")
def test_catalog_specs_match_ort(spec, tmp_path):
    assert ArchSpec.from_json(spec.to_json()) == spec
    _check_against_ort(spec, tmp_path)


def test_build_is_deterministic_and_leaves_global_rng_alone():
    spec = catalog_specs()[1]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = build_model(spec), build_model(spec)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(example_input(spec, 3), example_input(spec, 3))


def test_invalid_specs_are_rejected():
    good = catalog_specs()[0]
    d = good.to_dict()
    d["blocks"][1]["groups"] = 5  # 5 divides neither 8 in nor 12 out
    with pytest.raises(SpecError):
        validate(ArchSpec.from_dict(d))
    d = good.to_dict()
    d["blocks"][0]["kind"] = "nope"
    with pytest.raises(SpecError):
        ArchSpec.from_dict(d)
