"""Control flow: If, Loop, Scan.

ONNX semantics relied on: the body graphs (If's then/else branches, Loop's and Scan's body) are attributes of
the node; besides the node's explicit inputs they may read any tensor of the enclosing graph by name (outer
scope), and their outputs become the node's outputs. spa does not analyse or rewrite body graphs, so a
channel that enters a body (explicitly or through the outer scope) or leaves it cannot be followed: every
such tensor is frozen, and the reason names the node, how the tensor reaches the body and which ops inside
read it. Never pruned, so never wrong (e.g. Silero VAD's LSTM decoder, which lives in an If branch, and the
weights it captures from the outer scope stay whole).
"""

from __future__ import annotations

import onnx

from ..view import node_inputs
from .base import NodeCtx, Rule


def _bodies(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    out = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append((a.name, a.g))
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend((a.name, g) for g in a.graphs)
    return out


def _readers(g: onnx.GraphProto, name: str, acc: set[str]) -> None:
    """Op types inside `g` (and its nested bodies) that read `name`."""
    for n in g.node:
        if name in node_inputs(n):  # explicitly, or deeper by a nested body
            acc.add(n.op_type)
        for _, sub in _bodies(n):
            _readers(sub, name, acc)


def _ops(g: onnx.GraphProto, acc: set[str]) -> None:
    for n in g.node:
        acc.add(n.op_type)
        for _, sub in _bodies(n):
            _ops(sub, acc)


def _carried(n: NodeCtx) -> list[tuple[str, str | None]]:
    """(initial value, final value) of each state a Loop or Scan carries from one iteration to the next and
    changes on the way (an unrolled recurrent layer: Keras GRU/SimpleRNN through tf2onnx). States the body
    passes through unchanged (tf2onnx carries the weights that way) are not recurrent."""
    body = next((g for name, g in _bodies(n.node) if name == "body"), None)
    if body is None:
        return []
    skip = 2 if n.op == "Loop" else 0  # Loop's body inputs: iteration number, condition, then the states
    k = len(n.node.input) - skip if n.op == "Loop" else len(n.node.input) - int(n.attr("num_scan_inputs", 0))
    initial = list(n.node.input[skip : skip + k])
    out = []
    for i, t in enumerate(initial):
        b_in = body.input[skip + i].name if skip + i < len(body.input) else None
        b_out = body.output[(skip > 0) + i].name if (skip > 0) + i < len(body.output) else None
        if not t or b_in is None or b_in == b_out or n.is_param(t):
            continue
        final = n.node.output[i] if i < len(n.node.output) and n.node.output[i] else None
        out.append((t, final))
    return out


def _width(n: NodeCtx, t: str | None) -> int | None:
    """The last dim of a state (its feature width; an integer state, e.g. a counter, is a scalar); None when
    unknown."""
    s = n.shape(t)
    if t is None or not s or s[-1] is None:
        return None
    return int(s[-1])


class ControlFlow(Rule):
    """If / Loop / Scan: frozen, each tensor with the way it reaches the body graphs."""

    ops = ("If", "Loop", "Scan")

    def couple(self, n: NodeCtx) -> None:
        bodies = _bodies(n.node)
        names = ", ".join(sorted({b for b, _ in bodies})) or "no body"
        inner: set[str] = set()
        for _, g in bodies:
            _ops(g, inner)
        heavy = sorted(inner & {"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN", "Einsum"})
        contains = f" (the bodies contain {', '.join(heavy)})" if heavy else ""
        explicit = set(n.inputs)
        states = []
        for t, out in _carried(n):
            width = _width(n, t) or _width(n, out)
            if width is not None and width >= 2:
                states.append(f"'{t}' of width {width}")
                for x in (t, out):
                    if x is not None:
                        n.freeze_tensor(x, f"recurrent state '{t}' of width {width} carried through {n.where()} "
                                           f"body ({names}){contains}: pruning it needs the body's rule")
        for t in n.inputs:
            n.freeze_tensor(t, f"'{t}' is an input of the {n.op} body graphs ({names}), which spa does not "
                               f"follow{contains}")
        for t in dict.fromkeys(node_inputs(n.node)):
            if t in explicit:
                continue
            ops: set[str] = set()
            for _, g in bodies:
                _readers(g, t, ops)
            by = f" by {', '.join(sorted(ops))}" if ops else ""
            n.freeze_tensor(t, f"'{t}' is read inside the {n.op} body graphs ({names}) from the outer "
                               f"scope{by}; bodies are not followed")
        for t in n.outputs:
            n.freeze_tensor(t, f"'{t}' is computed by the {n.op} body graphs ({names}), which spa does not "
                               f"follow{contains}")
        if states:
            n.bail(f"recurrent state {', '.join(states)} carried through the {n.op} body ({names}){contains}: "
                   f"pruning it needs the body's rule")
        else:
            n.bail(f"the {n.op} body graphs ({names}) are not followed{contains}")


RULES: tuple[type[Rule], ...] = (ControlFlow,)
