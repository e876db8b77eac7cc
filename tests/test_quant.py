"""Quantized models made by onnxruntime.quantization: QDQ (int8 weights -> DequantizeLinear -> Conv), QOperator
(QLinearConv, QLinearMatMul/QGemm, QLinearAdd...) and dynamic int8 (DynamicQuantizeLinear -> ConvInteger /
MatMulInteger).

The lossless oracle: a float model with planted dead channels (every weight of the channel zero), quantized,
then pruned with `--ratio 0.25 -c l1`, must keep the quantized model's outputs unchanged: the scores are taken
on the dequantized weights, so exactly the dead channels go. The zero-group oracle on the QDQ/QOperator
patterns runs in tests/test_rules.py (models/patterns.py: qdq_*, qoperator_*, dynamic_*).
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

import spa
from models import patterns as P
from models import quantized as Q
from spa.analysis import analyze
from spa.api import compute_scores, prepare
from spa.verify import random_inputs, run

logging.getLogger("onnxruntime").setLevel(logging.ERROR)
CASES = [("qdq", False), ("qdq", True), ("qoperator", False), ("qoperator", True), ("dynamic", False), ("dynamic", True)]


@functools.cache
def planted(name: str = "resnet18") -> tuple[onnx.ModelProto, int]:
    dead, keep = Q.plant_dead(Q.zoo(name), 0.25, seed=1)
    return dead, int((~keep).sum())


@functools.cache
def quantized(fmt: str, per_channel: bool, name: str = "resnet18") -> onnx.ModelProto:
    return Q.quantize(planted(name)[0], fmt, per_channel=per_channel)


def rel_change(m: onnx.ModelProto, pm: onnx.ModelProto) -> float:
    f = random_inputs(m, seed=5, batch=2)
    y0, y1 = run(m, f)[0], run(pm, f)[0]
    return float(np.abs(y0 - y1).max() / np.abs(y0).max())


def int_inits(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer
            if t.data_type in (TensorProto.INT8, TensorProto.UINT8) and len(t.dims) > 1}


@pytest.mark.parametrize("fmt,per_channel", CASES)
def test_planted_dead_removed_exactly(fmt, per_channel):
    q = quantized(fmt, per_channel)
    ops = {n.op_type for n in q.graph.node}
    assert ops & {"DequantizeLinear", "QLinearConv", "ConvInteger"}
    pm, rep = spa.prune(q, ratio=0.25, criterion="l1", oracle=True)
    assert rep.plan.removed == planted()[1]
    assert rel_change(q, pm) < 1e-6  # outputs unchanged: only dead channels went
    assert rep.oracle <= 1e-5
    assert rep.after.params < 0.75 * rep.before.params
    before, after = int_inits(q), int_inits(pm)
    assert after and all(after[k].dtype == before[k].dtype for k in after)  # still int8 codes, sliced
    assert any(after[k].shape != before[k].shape for k in after)


@pytest.mark.parametrize("fmt,per_channel", [("qdq", True), ("qoperator", True), ("dynamic", False)])
def test_random_plan_changes_outputs(fmt, per_channel):
    """The check above can fail: a plan that removes live channels changes the outputs (the oracle still holds)."""
    q = quantized(fmt, per_channel)
    pm, rep = spa.prune(q, ratio=0.25, criterion="random", oracle=True)
    assert rep.oracle <= 1e-5 and rel_change(q, pm) > 1e-3


@pytest.mark.slow
def test_qdq_resnet50_per_tensor_is_prunable():
    """The issue's case: quant_pre_process + quantize_static per-tensor defaults analysed as 0 groups."""
    q = quantized("qdq", False, "resnet50")
    a = spa.analyze(q).analysis
    assert len(a.prunable) >= 10
    pm, rep = spa.prune(q, ratio=0.25, criterion="l1", oracle=True)
    assert rep.plan.removed == planted("resnet50")[1] and rel_change(q, pm) < 1e-6


def test_scores_dequantized():
    """A channel with the largest codes but a tiny per-channel scale is the weakest: l1 is taken on
    (code − zp) · scale, not on codes or scales."""
    m = P.qdq_int32_bias()
    inits = {t.name: t for t in m.graph.initializer}

    def put(name: str, arr: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(arr, name))

    w = numpy_helper.to_array(inits["qw"]).copy()
    s = numpy_helper.to_array(inits["qw.s"]).copy()
    w[0], s[0], s[1:] = 255, 1e-6, 0.01  # channel 0: codes 252 above the zero point, real values 2.5e-4
    put("qw", w)
    put("qw.s", s)
    yw = numpy_helper.to_array(inits["y.w"]).copy()
    yw[:, 0] = 0  # its consumer columns too, so only the dequantized rows decide
    put("y.w", yw)
    a = analyze(prepare(m)[0])
    g = next(g for g in a.prunable if any(x.tensor == "qw" and x.axis == 0 for x in g.members))
    sc = compute_scores(a, "l1")[g.id]
    assert int(np.argmin(sc)) == 0 and sc[0] < 0.01 * np.median(sc)
    pm, rep = spa.prune(m, ratio=0.125, criterion="l1", oracle=True)
    after = {t.name: numpy_helper.to_array(t) for t in pm.graph.initializer}
    assert not (after["qw"] == 255).all(axis=(1, 2, 3)).any()  # the row of 255s (channel 0) is the one removed
    assert after["qw"].shape[0] == 7 and after["qb"].shape == (7,) and rep.oracle <= 1e-5


def test_per_channel_choice_on_hidden_group():
    """Per-channel QDQ: the hidden group's weight scales differ by channel; the dequantized scores still find the
    planted dead channels (raw codes or scales would not: all codes of a dead channel are 0 but so is its max)."""
    q = quantized("qdq", True)
    pm, _ = spa.prune(q, ratio=0.25, criterion="l2", oracle=True)
    assert rel_change(q, pm) < 1e-6


def test_nonuniform_zero_points_freeze_columns():
    """uint8 weights with per-channel zero points that differ: a removed input column could not be made inert
    with one code, so the weight's input axis freezes (fails closed) while its output channels still prune."""
    b = P._B(13)
    t = P._head(b)
    b.op("Relu", [t], "t_r")
    b.const("qw", b.rng.integers(0, 256, (4, 8, 3, 3)).astype(np.uint8))
    b.op("DequantizeLinear", ["qw", b.f32("qw.s", np.full(4, 0.01)), b.const("qw.z", np.arange(4).astype(np.uint8))],
         "w_dq", axis=0)
    b.op("Conv", ["t_r", "w_dq"], "q", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.op("Relu", ["q"], "q_r")
    P._tail(b, "q_r", 4)
    m = b.model(["y"])
    a = spa.analyze(m).analysis
    frozen = [g for g in a.groups if any(x.tensor == "qw" and x.axis == 1 for x in g.members)]
    assert frozen and "zero points" in frozen[0].why
    pm, rep = spa.prune(m, ratio=0.5, oracle=True)
    assert rep.oracle <= 1e-5
    assert numpy_helper.to_array(next(t for t in pm.graph.initializer if t.name == "qw")).shape == (2, 8, 3, 3)


def test_dynamic_quantize_linear_is_elementwise():
    """DynamicQuantizeLinear's scale comes from min/max over the whole tensor (range including 0): pruning
    equals zeroing, and the oracle is exact on a dynamic-int8 MatMulInteger chain."""
    m = P.dynamic_matmul_integer()
    assert any(n.op_type == "DynamicQuantizeLinear" for n in m.graph.node)
    for seed in range(3):
        _, rep = spa.prune(m, ratio=0.5, criterion="random", seed=seed, oracle=True)
        assert rep.oracle <= 1e-5


def test_qlinear_matmul():
    """QLinearMatMul (ONNX standard, activations @ int8 weights with per-column scales) prunes its columns."""
    b = P._B(13)
    f = P._gap_flatten(b, P._head(b))
    b.op("QuantizeLinear", [f, b.f32("f.s", 0.05), b.const("f.z", np.uint8(128))], "f_q")
    b.const("qm", b.rng.integers(-60, 60, (8, 6)).astype(np.int8))
    b.op("QLinearMatMul", ["f_q", "f.s", "f.z", "qm", b.f32("qm.s", np.full(6, 0.01)),
                           b.const("qm.z", np.zeros(6, np.int8)), b.f32("o.s", 0.05), b.const("o.z", np.uint8(128))],
         "mm_q")
    b.op("DequantizeLinear", ["mm_q", "o.s", "o.z"], "mm")
    b.op("Relu", ["mm"], "mm_r")
    b.op("Gemm", ["mm_r", b.rand("y.w", (5, 6)), b.rand("y.b", (5,), scale=0.1)], "y", transB=1)
    m = b.model(["y"])
    pm, rep = spa.prune(m, ratio=0.5, oracle=True)
    w = {t.name: numpy_helper.to_array(t) for t in pm.graph.initializer}
    assert w["qm"].shape == (4, 3) and w["qm.s"].shape == (3,) and w["qm.z"].shape == (3,)
    assert w["qm"].dtype == np.int8 and rep.oracle <= 1e-5


def test_unquantized_int_constants_not_weights():
    """Integer initializers that are no quantized weight (shape constants, Gather indices) stay out of groups."""
    m = P.reshape_to_matmul()
    a = spa.analyze(m).analysis
    assert all(onnx.helper.tensor_dtype_to_np_dtype(a.view.inits[x.tensor].data_type).kind == "f"
               for g in a.groups for x in g.params)


def test_fake_quant_weight_votes():
    """float W -> QuantizeLinear -> DequantizeLinear -> Conv: the float weight carries the Conv's roles (rows
    "out", columns "in"), so it is scored like a plain Conv weight."""
    a = spa.analyze(P.qdq_fake_quant_weight()).analysis
    roles = {(x.tensor, x.axis): x.role for g in a.groups for x in g.members}
    assert roles[("fw", 0)] == "out" and roles[("fw", 1)] == "in" and roles[("fw.s", 0)] == "qscale"


def test_dynamic_per_channel_scale_applied_after():
    """quantize_dynamic per channel: MatMulInteger's per-column weight scale is multiplied in after it
    (Cast -> Mul); the scores use it. A column with the largest codes but a tiny scale scores lowest."""
    m = Q.quantize(P.two_gemms(), "dynamic", per_channel=True)
    inits = {t.name: t for t in m.graph.initializer}

    def edit(name: str, fn) -> np.ndarray:
        arr = numpy_helper.to_array(inits[name]).copy()
        fn(arr)
        inits[name].CopyFrom(numpy_helper.from_array(arr, name))
        return arr

    edit("g2.w_quantized", lambda w: w.__setitem__((slice(None), 0), 127))
    edit("g2.w_scale", lambda s: s.__setitem__(0, 1e-7))
    consumer = next(n for n in m.graph.node if n.op_type == "MatMulInteger" and n.input[0].startswith("g2_r"))
    edit(consumer.input[1], lambda w: w.__setitem__(0, 0))  # the next layer's row for that channel: zero codes
    a = analyze(prepare(m)[0])
    g = next(g for g in a.prunable if any(x.tensor == "g2.w_quantized" and x.axis == 1 for x in g.members))
    sc = compute_scores(a, "l1")[g.id]
    assert int(np.argmin(sc)) == 0 and sc[0] < 0.01 * np.median(sc)
