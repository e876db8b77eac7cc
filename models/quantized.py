"""Quantized models as deployment pipelines make them, with onnxruntime.quantization, for tests and benchmarks.

    from models import quantized as Q
    m = Q.zoo("resnet18")                       # float32 ONNX export of a tiny zoo model (random init)
    dead, keep = Q.plant_dead(m, 0.25)          # the same with ⌊0.25·n⌋ channels of every prunable group dead
    q = Q.quantize(dead, "qdq", per_channel=True)       # QDQ: int8 weights -> DequantizeLinear -> Conv
    q = Q.quantize(dead, "qoperator")                   # QLinearConv / QLinearMatMul
    q = Q.quantize(dead, "dynamic")                     # ConvInteger / MatMulInteger + DynamicQuantizeLinear

Dead channels are planted with spa's own zero-group oracle model (every weight, bias and norm parameter of
the channel zeroed, producers and consumers alike), so a dead channel outputs exactly 0. Quantization keeps
it dead: weights are quantized symmetrically (zero point 0 maps 0.0 exactly) and a zero activation is the
activation's zero point. Pruning exactly those channels must leave the quantized model's outputs unchanged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

FORMATS = ("qdq", "qoperator", "dynamic")


def zoo(name: str, opset: int = 17) -> onnx.ModelProto:
    """The tiny float32 zoo model `name` (models.zoo_torch, TorchScript exporter, batch "N")."""
    from models import zoo_torch

    with tempfile.TemporaryDirectory() as d:
        p = zoo_torch.export(name, Path(d) / f"{name}.onnx", opset=opset)
        return onnx.load(str(p))


def plant_dead(model: onnx.ModelProto, ratio: float = 0.25, seed: int = 0,
               group_conv: str | None = None) -> tuple[onnx.ModelProto, np.ndarray]:
    """`model` with ⌊ratio·n⌋ random channels of every prunable group zeroed everywhere they live (spa's
    zero-group oracle model). Returns it and the keep mask over spa's channel ids (False = dead)."""
    from spa.analysis import analyze
    from spa.api import compute_plan, prepare
    from spa.plan import keep_mask
    from spa.verify import zeroed_model

    view, _ = prepare(model)
    a = analyze(view) if group_conv is None else analyze(view, group_conv=group_conv)
    plan = compute_plan(a, ratio=ratio, criterion="random", seed=seed)
    keep = keep_mask(a, plan)
    return zeroed_model(a, keep), keep


class _Reader:
    """Calibration data: a few standard-normal batches for every graph input."""

    def __init__(self, model: onnx.ModelProto, n: int = 4, seed: int = 0) -> None:
        from spa.verify import random_inputs

        self.batches = [random_inputs(model, seed=seed + k) for k in range(n)]

    def get_next(self):
        return self.batches.pop() if self.batches else None


def quantize(model: onnx.ModelProto, fmt: str = "qdq", per_channel: bool = False) -> onnx.ModelProto:
    """`model` quantized by onnxruntime.quantization: "qdq" and "qoperator" with `quant_pre_process` +
    `quantize_static` (int8 weights, uint8 activations, defaults otherwise), "dynamic" with
    `quantize_dynamic` (int8 weights)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    with tempfile.TemporaryDirectory() as d:
        src, pre, out = Path(d) / "f.onnx", Path(d) / "pre.onnx", Path(d) / "q.onnx"
        onnx.save(model, str(src))
        if fmt == "dynamic":
            quantize_dynamic(str(src), str(out), per_channel=per_channel, weight_type=QuantType.QInt8)
        else:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(out), _Reader(model),
                            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                            per_channel=per_channel)
        return onnx.load(str(out))
