"""Framework -> ONNX converters used by ``spa convert``.

``torch_to_onnx`` (PyTorch, legacy TorchScript or dynamo exporter), ``keras_to_onnx``
(Keras / TensorFlow via tf2onnx), ``sklearn_to_onnx`` (skl2onnx) and ``jax_to_onnx`` (JAX / Flax via
jax2onnx). ``detect_framework`` tells a source's framework from its name and ``convert`` runs the converter
that fits (``spa convert`` is these two and a print). All are imported lazily: ``import converters`` pulls in
no framework.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Converted", "Source", "convert", "detect_framework", "jax_to_onnx", "keras_to_onnx", "sklearn_to_onnx",
           "torch_to_onnx"]

# public name -> the module that defines it, imported on first use
_HOME = {"torch_to_onnx": "torch_export", "sklearn_to_onnx": "sklearn_export", "jax_to_onnx": "jax_export",
         "keras_to_onnx": "keras_export", "Converted": "dispatch", "Source": "dispatch", "convert": "dispatch",
         "detect_framework": "dispatch"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module 'converters' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
