"""What the optional `Rule` hooks hand to the stages outside the rule layer, so that no other module has to
special-case an op type: a layer's MACs (spa.report), its weight as a consumer matrix (spa.calib, for the
data-driven criteria) and its statistics redone over the kept channels only (spa.verify, for lossy groups).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

Shapes = dict[str, tuple]  # tensor name → dims (None: symbolic), as ModelView.shapes or report.shapes_at


def dims(shapes: Shapes, name: str) -> list[int] | None:
    """The dims of `name` for counting MACs: symbolic dims (the batch) count as 1, so MACs are per sample."""
    s = shapes.get(name)
    if s is None:
        return None
    return [1 if d is None else int(d) for d in s]


def prod(xs) -> int:
    return int(np.prod([int(x) for x in xs], dtype=np.int64)) if len(xs) else 1


@dataclass
class ConsumerSpec:
    """A node that mixes channels with a float initializer weight, seen as a matrix W (rows = outputs,
    columns = inputs): the fields of `spa.calib.Consumer` that the op decides. `op` names the matrix view:
    "Conv" (im2col: one column per input channel × kernel position), "Gemm" (`trans_a` honoured) or "MatMul"."""

    op: str
    x: str  # the input tensor whose channels are consumed
    weight: str  # initializer name
    in_axis: int  # axis of the initializer that runs over input channels
    bias: str | None = None  # a 1-D initializer added to the outputs
    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    trans_a: bool = False


@dataclass
class StatsMask:
    """The zero-group oracle's view of one lossy statistic (a normalisation over the channels of `axis` of its
    input): the rule rebuilds the node so that its statistics ignore the removed channels, as the pruned model's
    do. spa.verify adds the initializers `mask` (0/1 along the axis, broadcastable), `inv_kept` (1 / kept
    channels) and `axes` ([axis], int64); new tensors are named with `prefix` + a suffix (`name`)."""

    prefix: str
    axis: int
    opset: int
    inits: list[onnx.TensorProto] = field(default_factory=list)

    @property
    def mask(self) -> str:
        return self.prefix + "_m"

    @property
    def inv_kept(self) -> str:
        return self.prefix + "_k"

    @property
    def axes(self) -> str:
        return self.prefix + "_ax"

    def name(self, suffix: str) -> str:
        return self.prefix + suffix

    def constant(self, suffix: str, value: np.ndarray) -> str:
        """A new initializer; returns its name."""
        self.inits.append(numpy_helper.from_array(value, self.prefix + suffix))
        return self.prefix + suffix

    def reduce_sum(self, src: str, dst: str) -> onnx.NodeProto:
        """ReduceSum over the axis, keepdims (axes as an input from opset 13, an attribute before)."""
        if self.opset >= 13:
            return helper.make_node("ReduceSum", [src, self.axes], [dst], keepdims=1)
        return helper.make_node("ReduceSum", [src], [dst], axes=[self.axis], keepdims=1)

    def masked_mean(self, src: str, dst: str) -> list[onnx.NodeProto]:
        """dst = mean of `src` over the kept channels of the axis (keepdims); once per node."""
        xm, s = self.name("_xm"), self.name("_s")
        return [helper.make_node("Mul", [src, self.mask], [xm]), self.reduce_sum(xm, s),
                helper.make_node("Mul", [s, self.inv_kept], [dst])]
