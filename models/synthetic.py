"""Large synthetic graphs for scaling measurements (analysis time vs node count)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def residual_chain(blocks: int, channels: int = 16, size: int = 8, seed: int = 0) -> onnx.ModelProto:
    """x → stem conv → `blocks` × [Conv 3×3 → Relu → Conv 1×1 → Add(residual) → Relu] → head conv.
    5 nodes per block; every block's inner width is its own prunable group, the residual stream one more."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(x: str, cin: int, cout: int, k: int, name: str) -> str:
        w = numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32), f"{name}.w")
        b = numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"{name}.b")
        inits.extend([w, b])
        nodes.append(helper.make_node("Conv", [x, w.name, b.name], [name], name=name, kernel_shape=[k, k],
                                      pads=[k // 2] * 4))
        return name

    h = conv("x", 3, channels, 3, "stem")
    for i in range(blocks):
        a = conv(h, channels, channels, 3, f"b{i}.c1")
        nodes.append(helper.make_node("Relu", [a], [f"b{i}.r1"], name=f"b{i}.r1"))
        c = conv(f"b{i}.r1", channels, channels, 1, f"b{i}.c2")
        nodes.append(helper.make_node("Add", [c, h], [f"b{i}.add"], name=f"b{i}.add"))
        nodes.append(helper.make_node("Relu", [f"b{i}.add"], [f"b{i}.out"], name=f"b{i}.out"))
        h = f"b{i}.out"
    conv(h, channels, 4, 1, "y")
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, size, size])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
