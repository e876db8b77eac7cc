"""Tiny models whose graph inputs constrain what data criteria may feed them (tests of spa.calib's sources).

    fixed_batch_cnn(batch)  x (batch, 3, 16, 16), every dim static, and a Reshape whose target shape bakes the
                            batch in (as Keras and torch.onnx.export without dynamic_axes write them): batches
                            of any other size fail in onnxruntime and in the ONNX -> torch round trip
    shape_input_cnn()       a second, int64 graph input (1, 2) that is the target shape of a Reshape: random
                            values never make a valid shape, so no data-free source can run the model
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["fixed_batch_cnn", "shape_input_cnn"]


def _conv(nodes: list, inits: list, rng: np.random.Generator, x: str, cin: int, cout: int, name: str,
          stride: int = 1) -> str:
    w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(cin * 9)).astype(np.float32)
    b = (0.1 * rng.standard_normal(cout)).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
    nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [name], kernel_shape=[3, 3],
                                  pads=[1, 1, 1, 1], strides=[stride, stride]))
    nodes.append(helper.make_node("Relu", [name], [f"{name}.r"]))
    return f"{name}.r"


def _gemm(nodes: list, inits: list, rng: np.random.Generator, x: str, cin: int, cout: int, name: str) -> str:
    w = (rng.standard_normal((cout, cin)) / np.sqrt(cin)).astype(np.float32)
    b = (0.1 * rng.standard_normal(cout)).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
    nodes.append(helper.make_node("Gemm", [x, f"{name}.w", f"{name}.b"], [name], transB=1))
    return name


def fixed_batch_cnn(batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """x (batch,3,16,16) → Conv 3→8 → Relu → Conv 8→16 stride 2 → Relu → Reshape [batch, -1] (1024) → Gemm → 32
    → Relu → Gemm → 10. Both conv widths and the hidden width are prunable; the 1024-input Gemm has 64 columns
    per channel (a wide consumer in miniature)."""
    rng = np.random.default_rng(seed)
    nodes: list = []
    inits: list = []
    h = _conv(nodes, inits, rng, "x", 3, 8, "c0")
    h = _conv(nodes, inits, rng, h, 8, 16, "c1", stride=2)
    inits.append(numpy_helper.from_array(np.array([batch, -1], np.int64), "flat_shape"))
    nodes.append(helper.make_node("Reshape", [h, "flat_shape"], ["flat"]))
    h = _gemm(nodes, inits, rng, "flat", 16 * 8 * 8, 32, "fc0")
    nodes.append(helper.make_node("Relu", [h], ["fc0.r"]))
    _gemm(nodes, inits, rng, "fc0.r", 32, 10, "y")
    g = helper.make_graph(nodes, "fixed_batch_cnn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def shape_input_cnn(seed: int = 0) -> onnx.ModelProto:
    """x (1,3,8,8) → Conv 3→8 → Relu → Conv 8→4 → Relu → Reshape(·, Squeeze(shape)) with `shape` an int64
    (1, 2) graph input (real callers pass [[1, 256]])."""
    rng = np.random.default_rng(seed)
    nodes: list = []
    inits: list = []
    h = _conv(nodes, inits, rng, "x", 3, 8, "c0")
    h = _conv(nodes, inits, rng, h, 8, 4, "c1")
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
    nodes.append(helper.make_node("Squeeze", ["shape", "axis0"], ["shape1d"]))
    nodes.append(helper.make_node("Reshape", [h, "shape1d"], ["y"]))
    g = helper.make_graph(nodes, "shape_input_cnn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
                           helper.make_tensor_value_info("shape", TensorProto.INT64, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
