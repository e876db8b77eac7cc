"""Framework -> ONNX converters used by ``spa convert``.

``torch_to_onnx`` (PyTorch, legacy TorchScript or dynamo exporter), ``keras_to_onnx``
(Keras / TensorFlow via tf2onnx), ``sklearn_to_onnx`` (skl2onnx) and ``jax_to_onnx`` (JAX / Flax via
jax2onnx). All are imported lazily: ``import converters`` pulls in no framework.
"""

from __future__ import annotations

__all__ = ["jax_to_onnx", "keras_to_onnx", "sklearn_to_onnx", "torch_to_onnx"]


def __getattr__(name: str):
    if name == "torch_to_onnx":
        from .torch_export import torch_to_onnx

        return torch_to_onnx
    if name == "sklearn_to_onnx":
        from .sklearn_export import sklearn_to_onnx

        return sklearn_to_onnx
    if name == "jax_to_onnx":
        from .jax_export import jax_to_onnx

        return jax_to_onnx
    if name == "keras_to_onnx":
        from .keras_export import keras_to_onnx

        return keras_to_onnx
    raise AttributeError(f"module 'converters' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
