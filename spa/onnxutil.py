"""Small facts about ONNX nodes that every stage needs, in one place: attribute values and the tensors a
node reads (including the outer-scope tensors its subgraphs read)."""

from __future__ import annotations

from typing import Any

import onnx


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of attribute `name` of `node` (ints, floats, strings, tensors... as onnx.helper decodes them),
    or `default` when the node does not carry it."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default
