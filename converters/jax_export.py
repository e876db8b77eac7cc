"""JAX / Flax -> ONNX via jax2onnx (``pip install 'spa[jax]'``).

jax2onnx traces a JAX function (or a Flax NNX module, which is one) to a jaxpr and maps each primitive to
ONNX; NHWC convolutions come out as NCHW ``Conv`` between two ``Transpose`` s, which spa's analyser follows.
Flax Linen modules are exported through their ``apply``: ``jax_to_onnx(lambda x: model.apply(variables, x),
...)``.  The batch axis is exported as a symbolic dimension, and the result is checked against JAX's own
outputs at two batch sizes before it is written (atomically).

NNX modules are exported in inference mode (``use_running_average=True``, ``deterministic=True``) through
``nnx.view``, which leaves the caller's module as it was: a BatchNorm in training mode would normalise with
the statistics of the example batch and update its running averages while being traced.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spa.errors import BadArgument

from ._common import (
    ConversionFailed,
    call_factory,
    compare,
    discard,
    first_line,
    ort_run,
    ort_session,
    publish,
    tmp_path_for,
)

__all__ = ["JaxExportInfo", "export_jax", "is_jax_source", "jax_to_onnx", "load_jax_source"]


@dataclass
class JaxExportInfo:
    path: pathlib.Path
    opset: int
    max_error: float
    warnings: list[str] = field(default_factory=list)


def _require():
    try:
        import jax
        import jax2onnx
    except ImportError:
        raise BadArgument("JAX conversion needs jax2onnx (pip install 'spa[jax]')") from None
    return jax, jax2onnx


def _shapes(input_shapes: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    if not input_shapes:
        raise BadArgument("give at least one input shape, e.g. [(1, 28, 28, 1)]")
    out = []
    for s in input_shapes:
        try:
            t = tuple(int(d) for d in s)
        except (TypeError, ValueError):
            raise BadArgument(f"bad input shape {s!r}: expected a sequence of positive integers") from None
        if not t or any(d < 1 for d in t):
            raise BadArgument(f"bad input shape {list(t)}: expected positive integers, batch first")
        out.append(t)
    return out


def _names(given: Sequence[str] | None, n: int, stem: str) -> list[str]:
    if given is None:
        return [stem] if n == 1 else [f"{stem}_{i}" for i in range(n)]
    names = [str(x) for x in given]
    if len(names) != n or len(set(names)) != n:
        raise BadArgument(f"expected {n} distinct {stem} names, got {names}")
    return names


def _inference_view(fn: Any) -> Any:
    """An NNX module in inference mode without touching the caller's module; anything else as it is."""
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover - jax2onnx depends on flax
        return fn
    if isinstance(fn, nnx.Module):
        return nnx.view(fn, deterministic=True, use_running_average=True, raise_if_not_found=False)
    return fn


@contextmanager
def _quiet_onnx_ir():
    """onnx_ir logs a warning per untyped shape constant jax2onnx creates; they are harmless noise here."""
    lg = logging.getLogger("onnx_ir")
    level = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(level)


def _run_jax(fn: Callable, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
    import jax

    try:
        out = fn(*xs)
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"the JAX function fails on the example input: {first_line(e)}") from None
    return [np.asarray(o) for o in jax.tree_util.tree_leaves(out)]


def export_jax(fn: Callable, input_shapes: Sequence[Sequence[int]], path: str | os.PathLike, *, opset: int = 17,
               input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
               dynamic_batch: bool = True, seed: int = 0) -> JaxExportInfo:
    """`jax_to_onnx` with the details `spa convert` prints."""
    jax, jax2onnx = _require()
    if not 7 <= int(opset) <= 23:
        raise BadArgument(f"opset must be between 7 and 23, got {opset}")
    if not callable(fn):
        raise BadArgument(f"expected a JAX function or Flax NNX module, got {type(fn).__name__}")
    shapes = _shapes(input_shapes)
    in_names = _names(input_names, len(shapes), "input")
    fn = _inference_view(fn)
    try:  # tracing only: how many outputs there are, to name them
        n_out = len(jax.tree_util.tree_leaves(jax.eval_shape(fn, *(jax.ShapeDtypeStruct(s, np.float32)
                                                                     for s in shapes))))
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"the JAX function fails on inputs of shapes {shapes}: {first_line(e)}") from None
    out_names = _names(output_names, n_out, "output")
    specs = [("B", *s[1:]) if dynamic_batch else s for s in shapes]
    try:
        with _quiet_onnx_ir():
            proto = jax2onnx.to_onnx(fn, specs, opset=int(opset), input_names=in_names, output_names=out_names)
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"jax2onnx cannot convert the model: {first_line(e)}") from None

    import onnx

    tmp = tmp_path_for(path)
    try:
        onnx.save(proto, str(tmp))
        sess = ort_session(tmp)
        rng = np.random.default_rng(seed)
        batches = [shapes[0][0], shapes[0][0] + 1] if dynamic_batch else [shapes[0][0]]
        err = 0.0
        for b in batches:
            xs = [rng.standard_normal((b, *s[1:])).astype(np.float32) for s in shapes]
            err = max(err, compare(ort_run(sess, xs, in_names), _run_jax(fn, xs), f"batch {b}"))
        out = publish(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), int(opset))
    return JaxExportInfo(out, used, err)


def jax_to_onnx(fn: Callable, input_shapes: Sequence[Sequence[int]], path: str | os.PathLike, *, opset: int = 17,
                input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                dynamic_batch: bool = True) -> pathlib.Path:
    """Export a JAX function or Flax NNX module taking float32 arrays of ``input_shapes`` (batch first).

    The batch axis stays symbolic unless ``dynamic_batch=False``.  onnxruntime must reproduce JAX's outputs
    within 1e-4 (relative above magnitude 1) at the example batch size and one more, or nothing is written.
    Raises a one-line :class:`spa.errors.SpaError` (``ConversionFailed``, ``OutputMismatch``, ``BadArgument``).
    """
    return export_jax(fn, input_shapes, path, opset=opset, input_names=input_names, output_names=output_names,
                      dynamic_batch=dynamic_batch).path


def load_jax_source(source: str) -> Callable:
    """``file.py:factory``: a zero-argument callable returning a Flax NNX module or a JAX function.

    Importing the file runs its code: only convert your own files.
    """
    py_s, sep, factory = source.rpartition(":")
    py = pathlib.Path(py_s)
    if not (sep and py_s.endswith(".py") and factory):
        raise BadArgument(f"expected file.py:factory for a JAX model, got {source!r}")
    if not py.is_file():
        raise BadArgument(f"{py} does not exist")
    _require()
    fn = call_factory(py, factory, "jax")
    if not callable(fn):
        raise ConversionFailed(f"{py.name}:{factory}() returned {type(fn).__name__}, not a JAX function or module")
    return fn


def is_jax_source(py: str | os.PathLike) -> bool:
    """Whether a Python file imports jax or flax and not torch (how ``spa convert`` picks the framework)."""
    import re

    try:
        text = pathlib.Path(py).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    imports = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", text, re.MULTILINE))
    return bool(imports & {"jax", "flax"}) and "torch" not in imports
