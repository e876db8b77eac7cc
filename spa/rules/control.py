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

from ..graph import node_inputs
from .base import NodeCtx, Rule, register


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


@register
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
        n.bail(f"the {n.op} body graphs ({names}) are not followed{contains}")
