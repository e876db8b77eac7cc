"""Framework -> ONNX converters used by ``spa convert``.

``torch_to_onnx`` (PyTorch, legacy TorchScript or dynamo exporter) and ``keras_to_onnx``
(Keras / TensorFlow via tf2onnx). Both are imported lazily: ``import converters`` pulls in
neither torch nor tensorflow.
"""

from __future__ import annotations

__all__ = ["keras_to_onnx", "sklearn_to_onnx", "torch_to_onnx"]


def __getattr__(name: str):
    if name == "torch_to_onnx":
        from .torch_export import torch_to_onnx

        return torch_to_onnx
    if name == "sklearn_to_onnx":
        from .sklearn_export import sklearn_to_onnx

        return sklearn_to_onnx
    if name == "keras_to_onnx":
        from .keras_export import keras_to_onnx

        return keras_to_onnx
    raise AttributeError(f"module 'converters' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
