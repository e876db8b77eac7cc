"""Recurrent layers: LSTM, GRU, RNN.

ONNX semantics relied on (opset 7-22): W is (num_directions, G·H, input_size), R is (num_directions, G·H, H),
B is (num_directions, 2·G·H) = [Wb | Rb], each laid out as G gate blocks of H rows (LSTM: i, o, f, c, G = 4;
GRU: z, r, h, G = 3; RNN: G = 1); LSTM peepholes P are (num_directions, 3·H) = [Pi | Po | Pf]. initial_h,
initial_c, Y_h and Y_c are (num_directions, batch, H), Y is (T, num_directions, batch, H); with layout = 1 the
batch axis comes first, so H is always the last axis.

A hidden unit k is row k of every gate block of W, R and both halves of B, column k of R, entry k of every
peephole block, and index k of the states and of Y. Units never mix except through R's columns, and the
activations and `clip` act element-wise: zeroing a unit's rows and R column leaves the other units exactly as
they were (the zero-group oracle holds), so the pruned layer is the same layer with fewer units and the
`hidden_size` attribute is the only thing to rewrite. Both directions of a bidirectional layer share Y's H axis
and therefore lose the same units. The input width (W's last axis) is a consumer column like a MatMul's, so the
channels feeding the layer can be pruned too. The direction, time and batch axes are not channels (frozen).

An initial state that is known to be zero (torch's `ConstantOfShape(Concat(num_directions, batch, H))`, sliced
per layer of a stack; Keras's `Expand(0, (batch, H))`; a zero initializer) is the operator's default for an
absent input: it is not coupled, and a pruned layer simply drops it. Otherwise the layers of a stack, which
share one zero tensor, would have to lose the same units.

OBSPA and the activation criteria read only Conv/Gemm/MatMul consumers (the rules' `consumer` hook): a group
whose only consumers are recurrent weights falls back to magnitude (L1); W/R are never re-fitted.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..onnxutil import attr
from .base import BIAS, IN, OUT, NodeCtx, RewriteCtx, Rule
from .hooks import Shapes, dims

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


class Recurrent(Rule):
    """LSTM / GRU / RNN: the hidden size couples W, R (rows per gate and columns), B, P, initial states and
    every output; the input size couples X with W's columns."""

    ops = ("LSTM", "GRU", "RNN")

    def couple(self, n: NodeCtx) -> None:
        x, w, r, b = n.inp(0), n.inp(1), n.inp(2), n.inp(3)
        n.bail("the direction, time and batch axes of a recurrent layer are not channels")
        g = GATES[n.op]
        sw, sr = n.shape(w), n.shape(r)
        if sw is None or sr is None or len(sw) != 3 or len(sr) != 3 or sr[2] is None:
            return
        h = int(sr[2])
        if int(n.attr("hidden_size", h)) != h or sw[1] != g * h or sr[1] != g * h:
            n.bail(f"W {list(sw)} and R {list(sr)} do not hold {g} gate blocks of hidden_size "
                   f"{n.attr('hidden_size')}")
            return
        if x is not None and n.link(x, 2, w, 2):  # input_size: X is (T, B, I) or (B, T, I)
            n.role(w, 2, IN)
        gh = np.arange(g * h)
        if g > 1:  # row j of W is unit j % H: the gates of a unit are one channel
            n.link(w, 1, w, 1, gh, gh % h)
        n.role(w, 1, OUT)
        n.link(w, 1, r, 1)
        n.role(r, 1, OUT)
        n.link(w, 1, r, 2, np.arange(h), np.arange(h))
        n.role(r, 2, IN)
        if b is not None:
            both = np.arange(2 * g * h)
            n.link(w, 1, b, 1, both % (g * h), both)
            n.role(b, 1, BIAS)
        if n.op == "LSTM" and n.inp(7) is not None:  # peepholes: i, o, f blocks of H (not a weight that votes)
            p3 = np.arange(3 * h)
            n.link(w, 1, n.inp(7), 1, p3 % h, p3)
        states = [t for t in _states(n) if t is not None and not _known_zero(n.view, t)]
        for t in _states(n):
            if t is not None and t not in states:
                n.free(t)  # a zero state: dropped when the layer is pruned
        for t in states + n.outputs:
            rank = n.rank(t)
            if rank is not None:
                n.link(w, 1, t, rank - 1, np.arange(h), np.arange(h))
        if n.inp(4) is not None:
            n.free(n.inp(4))  # sequence_lens: per batch entry, no channel

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int:
        """Every step (T·B, either layout), direction and gate row: W·x + R·h."""
        x, w, r = (dims(shapes, node.input[k]) for k in range(3))
        return 0 if x is None or w is None or r is None else x[0] * x[1] * w[0] * w[1] * (w[2] + r[2])

    def rewrite(self, n: RewriteCtx) -> None:
        kept = n.kept(n.inp(2), 2)
        if kept is None:
            return
        n.set_attr("hidden_size", len(kept))
        for i, t in zip(_STATE_INPUTS, _states(n)):
            if t is not None and _known_zero(n.view, t):
                n.node.input[i] = ""  # absent: zero, at the new size


_STATE_INPUTS = (5, 6)  # initial_h, initial_c (LSTM only)
# ops through which a zero stays zero (their data input is input 0)
_ZERO_KEEPING = {"Unsqueeze", "Squeeze", "Reshape", "Slice", "Identity", "Expand", "Cast", "Transpose", "Tile",
                 "Gather", "Flatten"}


def _states(n: NodeCtx | RewriteCtx) -> list[str | None]:
    return [n.inp(i) for i in _STATE_INPUTS[: 2 if n.op == "LSTM" else 1]]


def _known_zero(view, t: str, depth: int = 0) -> bool:
    """Is `t` all zeros whatever the inputs (a zero constant, ConstantOfShape with value 0, and what shape ops
    make of them)?"""
    if depth > 16 or t in view.graph_inputs:
        return False
    a = view.array(t)
    if a is not None:
        return a.dtype.kind == "f" and not np.any(a)
    i = view.producer.get(t)
    if i is None:
        return False
    node = view.model.graph.node[i]
    if node.op_type == "ConstantOfShape":
        value = attr(node, "value")
        return value is None or not np.any(numpy_helper.to_array(value))
    if node.op_type == "Concat":
        return all(_known_zero(view, x, depth + 1) for x in node.input if x)
    if node.op_type in _ZERO_KEEPING and node.input and node.input[0]:
        return _known_zero(view, node.input[0], depth + 1)
    return False


RULES: tuple[type[Rule], ...] = (Recurrent,)
