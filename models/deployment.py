"""Small models with the quirks of real deployment files: a declared output shape the model does not return,
nothing prunable, a symbolic sequence length that runs at one size only. Used by tests/test_sizes_and_notes.py."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _w(rng: np.random.Generator, name: str, shape) -> onnx.TensorProto:
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def wrong_output_declaration(seed: int = 0) -> onnx.ModelProto:
    """Conv → Relu → Conv → flattened by a computed Reshape, declared [1, seq] while it returns [6·H·W] (as a
    PyTorch 1.9 CRNN declares [1, seqlen] and returns [T, 1, classes]). The inner width (8) is prunable."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["z"]),
        helper.make_node("Shape", ["z"], ["s"]),
        helper.make_node("ReduceProd", ["s"], ["n"], keepdims=1),
        helper.make_node("Reshape", ["z", "n"], ["out"]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", "W"])],
                  [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, "seq"])],
                  [_w(rng, "w1", (8, 3, 3, 3)), _w(rng, "w2", (6, 8, 1, 1))])


def nothing_prunable(seed: int = 0) -> onnx.ModelProto:
    """Conv → Relu → an op without a channel rule (TfIdfVectorizer-like ops are rare; a Hardmax over the
    channels is one): the conv's output channels are frozen, its inputs are the graph input's: nothing to
    prune."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("Hardmax", ["r"], ["out"], axis=1)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                  [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 8, 8, 8])],
                  [_w(rng, "w", (8, 3, 3, 3))])


SEQ = 64


def fixed_length_sequence(seed: int = 0) -> onnx.ModelProto:
    """x [N, 4, S] with S symbolic, but a positional table [1, 16, 64] is added after a Conv1d: the model runs
    at S = 64 only (as a recogniser that runs at height 48 only). MACs at S: 16·4·S (Conv1d k=1) + 8·16·S."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "pos"], ["hp"]),
             helper.make_node("Relu", ["hp"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "S"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, "S"])],
                  [_w(rng, "w1", (16, 4, 1)), _w(rng, "pos", (1, 16, SEQ)), _w(rng, "w2", (8, 16, 1))])


def conv_any_size(seed: int = 0) -> onnx.ModelProto:
    """x [N, 3, H, W] → Conv 3×3 (8) → Relu → Conv 1×1 (4): runs at any size; MACs = H·W·(8·27 + 4·8)."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["out"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                  [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, "H", "W"])],
                  [_w(rng, "w1", (8, 3, 3, 3)), _w(rng, "w2", (4, 8, 1, 1))])
