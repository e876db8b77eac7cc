"""Recurrent test models: hand-built ONNX LSTM/GRU/RNN layers with every optional input, and the graphs torch
(legacy and dynamo exporters) and Keras (tf2onnx) emit for nn.LSTM / nn.GRU / keras.layers.LSTM.

    from models import recurrent
    m = recurrent.layer("LSTM", direction="bidirectional", layout=1, peepholes=True)
    m = recurrent.layer("GRU", dead=(1, 4), dead_inputs=(2,))   # planted dead hidden units / input channels
    m = recurrent.torch_rnn("LSTM", bidirectional=True, num_layers=2, dynamo=False)
    m = recurrent.keras_rnn("LSTM")                              # needs tensorflow + tf2onnx
    m = recurrent.unrolled("Loop")                               # a state carried through a Loop body

`layer` builds x -> MatMul -> Relu -> <layer> -> (Y, Y_h, Y_c) -> per-output Transpose/Reshape -> MatMul heads, so
both the channels feeding the layer and its hidden units have weight consumers on each side.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def layer(
    kind: str = "LSTM",
    *,
    direction: str = "forward",
    layout: int = 0,
    hidden: int = 8,
    inputs: int = 4,
    seq: int = 5,
    batch: int = 2,
    init_states: bool = True,
    peepholes: bool = False,
    linear_before_reset: int = 0,
    seq_lens: bool = False,
    clip: float | None = None,
    activations: list[str] | None = None,
    consume: tuple[str, ...] = ("Y", "Y_h", "Y_c"),
    dead: tuple[int, ...] = (),
    dead_inputs: tuple[int, ...] = (),
    seed: int = 0,
    opset: int = 17,
    batch_first: bool = False,
) -> onnx.ModelProto:
    """One ONNX recurrent layer between two weight layers. `dead`: hidden units whose rows in every gate of W
    and R, whose R columns and whose consumer columns are zero (their biases, peepholes and initial states stay
    non-zero: they run but reach nothing). `dead_inputs`: input channels whose producer column and W columns
    are zero. `batch_first`: the graph input is (N, T, 3) with a symbolic batch N, transposed for the layer
    (as Keras does; spa's calibration samples stack along axis 0)."""
    rng = np.random.default_rng(seed)
    g, h, i = GATES[kind], hidden, inputs
    d = 2 if direction == "bidirectional" else 1
    f32 = np.float32

    def rand(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.5, shape).astype(f32)

    w_in, w, r, b = rand(3, i), rand(d, g * h, i), rand(d, g * h, h), rand(d, 2 * g * h)
    for k in dead:
        w[:, k::h, :] = 0.0
        r[:, k::h, :] = 0.0
        r[:, :, k] = 0.0
    for j in dead_inputs:
        w_in[:, j] = 0.0
        w[:, :, j] = 0.0
    inits = {"w_in": w_in, "W": w, "R": r, "B": b}
    ins = ["u", "W", "R", "B", "", "", "", ""]
    if seq_lens:
        inits["seq_lens"] = np.array([seq, max(1, seq - 2)] + [seq] * (batch - 2), np.int32)[:batch]
        ins[4] = "seq_lens"
    state = (d, batch, h) if layout == 0 else (batch, d, h)
    if init_states:
        inits["h0"] = rand(*state)
        ins[5] = "h0"
        if kind == "LSTM":
            inits["c0"] = rand(*state)
            ins[6] = "c0"
    if peepholes and kind == "LSTM":
        inits["P"] = rand(d, 3 * h)
        ins[7] = "P"
    ins = ins[: max(k for k, t in enumerate(ins) if t) + 1]
    attrs: dict = {"hidden_size": h, "direction": direction}
    if layout:
        attrs["layout"] = layout
    if kind == "GRU":
        attrs["linear_before_reset"] = linear_before_reset
    if clip is not None:
        attrs["clip"] = clip
    if activations is not None:
        attrs["activations"] = activations
    outs = ["Y", "Y_h", "Y_c"][: 3 if kind == "LSTM" else 2]
    outs = [o if o in consume else "" for o in outs]
    xshape: list = [seq, batch, 3] if layout == 0 else [batch, seq, 3]
    nodes = []
    x = "x"
    if batch_first:
        assert layout == 0
        xshape, x = ["N", seq, 3], "x_t"
        nodes.append(helper.make_node("Transpose", ["x"], [x], perm=[1, 0, 2], name="x_transpose"))
    nodes += [
        helper.make_node("MatMul", [x, "w_in"], ["u0"], name="proj"),
        helper.make_node("Relu", ["u0"], ["u"], name="relu"),
        helper.make_node(kind, ins, outs, name="rnn", **attrs),
    ]
    graph_outs = []
    for o in [o for o in outs if o]:
        if o == "Y":  # (T, D, B, H) -> (T, B, D·H); layout 1: (B, T, D, H) -> (B, T, D·H)
            perm, target = ([0, 2, 1, 3], [seq, batch, d * h]) if layout == 0 else (None, [batch, seq, d * h])
        else:  # (D, B, H) -> (B, D·H); layout 1: (B, D, H) -> (B, D·H)
            perm, target = ([1, 0, 2], [batch, d * h]) if layout == 0 else (None, [batch, d * h])
        src = o
        if perm is not None:
            nodes.append(helper.make_node("Transpose", [o], [o + "_t"], perm=perm, name=o + "_transpose"))
            src = o + "_t"
        inits[o + "_shape"] = np.array([-1 if t == batch else t for t in target], np.int64)
        target = ["N" if batch_first and t == batch else t for t in target]
        head = rand(d * h, 3)
        for k in dead:
            head[k::h, :] = 0.0  # feature j·H + k of every direction
        inits[o + "_head"] = head
        nodes += [helper.make_node("Reshape", [src, o + "_shape"], [o + "_flat"], name=o + "_reshape"),
                  helper.make_node("MatMul", [o + "_flat", o + "_head"], [o.lower() + "_out"], name=o + "_head")]
        graph_outs.append(helper.make_tensor_value_info(o.lower() + "_out", TensorProto.FLOAT, target[:-1] + [3]))
    graph = helper.make_graph(
        nodes, f"{kind.lower()}_{direction}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xshape)],
        graph_outs, [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def torch_rnn(kind: str = "LSTM", *, bidirectional: bool = False, num_layers: int = 1, dynamo: bool = False,
              hidden: int = 8, inputs: int = 6, last_hidden: bool = False, seed: int = 0) -> onnx.ModelProto:
    """torch nn.LSTM / nn.GRU / nn.RNN (sequence-first) between two Linear layers, exported with the legacy
    TorchScript exporter (LSTM op, zero initial state from ConstantOfShape sliced per layer, Squeeze or
    Transpose/Reshape after it) or the dynamo exporter (LSTM/GRU op with a zero initializer as state; RNN is
    unrolled into MatMul/Add/Tanh). `last_hidden`: the head reads h_n[-1] (the last layer's final state, a
    classifier's usual input) instead of the sequence."""
    import torch

    torch.manual_seed(seed)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(3, inputs)
            self.rnn = getattr(torch.nn, kind)(inputs, hidden, num_layers=num_layers, bidirectional=bidirectional)
            self.head = torch.nn.Linear(hidden if last_hidden else hidden * (2 if bidirectional else 1), 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y, state = self.rnn(torch.relu(self.proj(x)))
            if last_hidden:
                h = state[0] if isinstance(state, tuple) else state
                return self.head(h[-1])
            return self.head(y)

    net = Net().eval()
    x = torch.randn(5, 2, 3)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            prog = torch.onnx.export(net, (x,), dynamo=True, input_names=["x"], output_names=["y"], verbose=False)
            return prog.model_proto
        torch.onnx.export(net, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"], opset_version=17,
                          dynamic_axes={"x": {1: "batch"}, "y": {1: "batch"}})
    return onnx.load_from_string(buf.getvalue())


def keras_rnn(kind: str = "LSTM", *, bidirectional: bool = False, hidden: int = 6, seed: int = 0) -> onnx.ModelProto:
    """keras.layers.LSTM / GRU / SimpleRNN (return_sequences) before a Dense layer, through tf2onnx: LSTM
    becomes an ONNX LSTM (zero state from Expand), GRU and SimpleRNN a Loop whose body carries the state."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    import tf2onnx

    keras.utils.set_random_seed(seed)
    inp = keras.Input((7, 5), name="input")
    cell = getattr(keras.layers, kind)(hidden, return_sequences=True)
    x = keras.layers.Bidirectional(cell)(inp) if bidirectional else cell(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    spec = (tf.TensorSpec([None, 7, 5], tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    return proto


def unrolled(op: str = "Loop", *, width: int = 6, seq: int = 5, batch: int = 2) -> onnx.ModelProto:
    """A recurrent layer written as control flow, as tf2onnx writes Keras GRU/SimpleRNN: h_t = tanh(h_{t-1} @ Rw
    (+ x_t for Scan)) with Rw read from the outer scope, the state h0 made by a MatMul and read by a MatMul head.
    Loop: `seq` iterations over a carried state. Scan: one carried state and one scanned sequence xs (also made
    by a MatMul)."""
    f, i64, b = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
    state = [batch, width]
    rng = np.random.default_rng(0)
    vals = {"w0": rng.normal(size=(4, width)), "Rw": rng.normal(size=(width, width)), "head": rng.normal(size=(width, 3))}
    inits = {k: v.astype(np.float32) for k, v in vals.items()}
    step = [helper.make_node("MatMul", ["h_in", "Rw"], ["hr"])]
    if op == "Loop":
        step += [helper.make_node("Tanh", ["hr"], ["h_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])]
        body = helper.make_graph(
            step, "body",
            [helper.make_tensor_value_info("i", i64, []), helper.make_tensor_value_info("cond_in", b, []),
             helper.make_tensor_value_info("h_in", f, state)],
            [helper.make_tensor_value_info("cond_out", b, []), helper.make_tensor_value_info("h_out", f, state)])
        inits |= {"trip": np.array(seq, np.int64), "cond": np.array(True)}
        nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"]),
                 helper.make_node("Loop", ["trip", "cond", "h0"], ["h_last"], body=body, name="while_loop")]
        ins = [helper.make_tensor_value_info("x", f, [batch, 4])]
        outs = []
    else:
        step += [helper.make_node("Add", ["hr", "x_in"], ["hs"]), helper.make_node("Tanh", ["hs"], ["h_out"]),
                 helper.make_node("Identity", ["h_out"], ["y_out"])]
        body = helper.make_graph(
            step, "body",
            [helper.make_tensor_value_info("h_in", f, state), helper.make_tensor_value_info("x_in", f, state)],
            [helper.make_tensor_value_info("h_out", f, state), helper.make_tensor_value_info("y_out", f, state)])
        inits["w_h"] = rng.normal(size=(4, width)).astype(np.float32)
        nodes = [helper.make_node("MatMul", ["x", "w0"], ["xs"]), helper.make_node("MatMul", ["x0", "w_h"], ["h0"]),
                 helper.make_node("Scan", ["h0", "xs"], ["h_last", "ys"], body=body, num_scan_inputs=1, name="scan")]
        ins = [helper.make_tensor_value_info("x", f, [seq, batch, 4]), helper.make_tensor_value_info("x0", f, [batch, 4])]
        outs = [helper.make_tensor_value_info("ys", f, [seq, batch, width])]
    nodes.append(helper.make_node("MatMul", ["h_last", "head"], ["y"]))
    graph = helper.make_graph(nodes, op.lower(), ins, [helper.make_tensor_value_info("y", f, [batch, 3]), *outs],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model
