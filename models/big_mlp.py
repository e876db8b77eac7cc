"""A transformer-like MLP stack written directly as ONNX with external data (numpy only, no torch).

    x ─┬─ MatMul(W1 d×f) ─ Add(b1) ─ Relu ─ MatMul(W2 f×d) ─ Add(b2) ─ Add ─┬─ ... ─ MatMul(head d×k) ─ y
       └──────────────────────────── residual ───────────────────────────────┘

Each layer's hidden width f is a prunable group (W1 columns, b1, W2 rows); the residual width d is the graph
input's, so it stays. Weights are written one tensor at a time straight into `<name>.data`, so a model of
several GB is generated with about one tensor in memory. At d=2048, f=8192, 21 layers: 704M parameters,
2.8 GB of float32 (benchmarks/big_model.py); tests use tiny sizes with the same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def build(path: str | Path, *, d: int = 64, f: int = 256, layers: int = 2, k: int = 10, seed: int = 0,
          opset: int = 17) -> int:
    """Write the model to `path` with all weights in `<path name>.data`; returns the number of parameters."""
    path = Path(path)
    data_name = path.name + ".data"
    rng = np.random.default_rng(seed)
    inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    params = 0
    with open(path.parent / data_name, "wb") as fh:

        def weight(name: str, shape: tuple[int, ...], scale: float) -> str:
            nonlocal params
            arr = rng.standard_normal(shape, dtype=np.float32)
            arr *= np.float32(scale)
            off = fh.tell()
            pad = -off % 4096
            fh.write(b"\0" * pad)
            off += pad
            fh.write(arr.tobytes())
            t = helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))  # only for the dtype/dims
            tp = TensorProto()
            tp.name, tp.data_type = name, t.type.tensor_type.elem_type
            tp.dims.extend(shape)
            tp.data_location = TensorProto.EXTERNAL
            for key, val in (("location", data_name), ("offset", str(off)), ("length", str(arr.nbytes))):
                e = tp.external_data.add()
                e.key, e.value = key, val
            inits.append(tp)
            params += arr.size
            return name

        x = "x"
        for i in range(layers):
            w1 = weight(f"l{i}.w1", (d, f), 1 / np.sqrt(d))
            b1 = weight(f"l{i}.b1", (f,), 0.1)
            w2 = weight(f"l{i}.w2", (f, d), 1 / np.sqrt(f))
            b2 = weight(f"l{i}.b2", (d,), 0.1)
            nodes += [
                helper.make_node("MatMul", [x, w1], [f"l{i}.h0"], name=f"l{i}.fc1"),
                helper.make_node("Add", [f"l{i}.h0", b1], [f"l{i}.h1"], name=f"l{i}.bias1"),
                helper.make_node("Relu", [f"l{i}.h1"], [f"l{i}.h2"], name=f"l{i}.act"),
                helper.make_node("MatMul", [f"l{i}.h2", w2], [f"l{i}.h3"], name=f"l{i}.fc2"),
                helper.make_node("Add", [f"l{i}.h3", b2], [f"l{i}.h4"], name=f"l{i}.bias2"),
                helper.make_node("Add", [x, f"l{i}.h4"], [f"l{i}.out"], name=f"l{i}.residual"),
            ]
            x = f"l{i}.out"
        head = weight("head", (d, k), 1 / np.sqrt(d))
        nodes.append(helper.make_node("MatMul", [x, head], ["y"], name="head"))
    g = helper.make_graph(
        nodes, "big_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", k])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="spa-big-mlp")
    m.ir_version = 8
    onnx.save_model(m, str(path))
    return params
