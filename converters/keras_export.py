"""Keras / TensorFlow -> ONNX via tf2onnx (the route of ``models.zoo_keras``).

:func:`keras_to_onnx` accepts an in-memory ``keras.Model``, a ``.keras`` (or ``.h5``) file or a
TensorFlow SavedModel directory, writes one self-contained ONNX file atomically and checks with
onnxruntime that its outputs match TensorFlow's (within 1e-4). TensorFlow is imported lazily.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spa.errors import BadArgument

from ._common import ConversionFailed, compare, discard, first_line, ort_run, ort_session, publish, tmp_path_for

__all__ = ["is_saved_model", "keras_to_onnx"]


@dataclass
class KerasExportInfo:
    path: pathlib.Path
    route: str
    opset: int
    max_error: float
    warnings: list[str] = field(default_factory=list)


def is_saved_model(p: str | os.PathLike) -> bool:
    p = pathlib.Path(p)
    return p.is_dir() and ((p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file())


def _zk():
    from models import zoo_keras

    zoo_keras._quiet_env()
    return zoo_keras


def _shape(dims, override: Sequence[int] | None, what: str) -> list:
    """Signature shape: batch None, the rest from the model (or ``override`` without its batch)."""
    dims = list(dims)
    if override is not None:
        ov = list(override)
        if len(ov) != len(dims):
            raise BadArgument(f"--input-shape has {len(ov)} dims but {what} has {len(dims)} "
                              f"({[d if d is not None else '?' for d in dims]})")
        dims = [None] + ov[1:]
        return dims
    rest = dims[1:]
    if any(d is None for d in rest):
        raise BadArgument(f"{what} has unknown dims {['N' if i == 0 else (d if d is not None else '?') for i, d in enumerate(dims)]}; "
                          "pass --input-shape")
    return [None] + [int(d) for d in rest]


def _random(shape: Sequence, dtype, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    full = [batch] + [int(d) for d in shape[1:]]
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(full).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, full).astype(bool)
    return rng.integers(0, 4, full).astype(dtype)


def _load(model_or_path):
    """(kind, object): ("keras", keras.Model) or ("saved_model", signature function)."""
    if not isinstance(model_or_path, (str, os.PathLike)):
        return "keras", model_or_path
    p = pathlib.Path(model_or_path)
    if not p.exists():
        raise BadArgument(f"{p} does not exist")
    zk = _zk()
    if p.is_dir():
        if not is_saved_model(p):
            raise BadArgument(f"{p} is a directory without saved_model.pb (not a SavedModel)")
        tf = zk._tf()
        try:
            loaded = tf.saved_model.load(str(p))
        except Exception as e:  # noqa: BLE001
            raise ConversionFailed(f"cannot load SavedModel {p}: {first_line(e)}") from None
        sigs = getattr(loaded, "signatures", {}) or {}
        if "serving_default" in sigs:
            return "saved_model", (loaded, sigs["serving_default"])
        if len(sigs) == 1:
            return "saved_model", (loaded, next(iter(sigs.values())))
        raise ConversionFailed(f"SavedModel {p} has no serving_default signature "
                               f"(signatures: {sorted(sigs) or 'none'})")
    keras = zk._keras()
    try:
        return "keras", keras.saving.load_model(str(p), compile=False)
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"cannot load {p} as a Keras model: {first_line(e)}") from None


def _convert(fn_or_model, specs, opset: int, is_keras: bool):
    zk = _zk()
    tf = zk._tf()
    import tf2onnx

    with zk._plain_grouped_conv():
        if is_keras:
            try:
                proto, _ = tf2onnx.convert.from_keras(fn_or_model, input_signature=specs, opset=opset)
                return proto, "from_keras"
            except Exception:  # noqa: BLE001
                model = fn_or_model
                fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False),
                                 input_signature=specs)
        else:
            fn = fn_or_model
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=opset)
        return proto, "from_function"


def _flat(out) -> list[np.ndarray]:
    if isinstance(out, dict):
        return [np.asarray(out[k]) for k in sorted(out)]
    if isinstance(out, (list, tuple)):
        return [np.asarray(o) for o in out]
    return [np.asarray(out)]


def export_keras(model_or_path, path: str | os.PathLike, *, opset: int = 17,
                 input_shape: Sequence[int] | Sequence[Sequence[int]] | None = None) -> KerasExportInfo:
    """:func:`keras_to_onnx` returning the details. ``input_shape`` (one shape, or one per input,
    batch first) fixes dims the model leaves unknown; the batch stays dynamic."""
    if not 7 <= int(opset) <= 23:
        raise BadArgument(f"opset must be between 7 and 23, got {opset}")
    if isinstance(model_or_path, (str, os.PathLike)):
        src = pathlib.Path(model_or_path)
        try:
            if src.resolve() == pathlib.Path(path).resolve():
                raise BadArgument(f"output path {path} is the input; refusing to overwrite it")
        except OSError:
            pass
    kind, obj = _load(model_or_path)
    zk = _zk()
    tf = zk._tf()

    if kind == "keras":
        model = obj
        if not hasattr(model, "inputs") or not model.inputs:
            raise BadArgument("the Keras model has no defined inputs (build it or save a functional model)")
        tensors = list(model.inputs)
        names = ["input"] if len(tensors) == 1 else [f"input_{i}" for i in range(len(tensors))]
        dtypes = [np.dtype(getattr(t.dtype, "name", t.dtype) or "float32") for t in tensors]
        raw = [list(t.shape) for t in tensors]
    else:
        _loaded, sig = obj  # keep the SavedModel object alive while its signature runs
        _, kw = sig.structured_input_signature
        keys = sorted(kw)
        names = keys
        dtypes = [np.dtype(kw[k].dtype.as_numpy_dtype) for k in keys]
        raw = [list(kw[k].shape) for k in keys]

    overrides: list = [None] * len(raw)
    if input_shape is not None:
        shapes_in = list(input_shape)
        if shapes_in and isinstance(shapes_in[0], int):
            shapes_in = [shapes_in]
        if len(shapes_in) != len(raw):
            raise BadArgument(f"{len(shapes_in)} input shapes given for {len(raw)} inputs")
        overrides = shapes_in
    shapes = [_shape(r, o, f"input {n!r}") for r, o, n in zip(raw, overrides, names)]
    specs = [tf.TensorSpec(s, tf.as_dtype(d), name=n) for s, d, n in zip(shapes, dtypes, names)]

    if kind == "keras":
        target = model
    else:
        keys = names

        def call(*xs):
            return sig(**dict(zip(keys, xs)))

        target = tf.function(call, input_signature=specs)
    try:
        proto, route = _convert(target, specs, opset, kind == "keras")
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"tf2onnx conversion failed: {first_line(e)}") from None
    zk._tidy_io(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "spa.converters.keras_route", route

    # onnxruntime vs TensorFlow, batch 2 (the batch dim is dynamic)
    xs = [_random(s, d, 2, 1234 + i) for i, (s, d) in enumerate(zip(shapes, dtypes))]
    try:
        if kind == "keras":
            ref = model(xs if len(xs) > 1 else xs[0], training=False)
        else:
            ref = sig(**{k: tf.constant(x) for k, x in zip(names, xs)})
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"the model fails on its example input: {first_line(e)}") from None
    want = _flat(ref)

    import onnx

    tmp = tmp_path_for(path)
    try:
        onnx.save_model(proto, str(tmp))
        sess = ort_session(tmp)
        feed_names = [i.name for i in sess.get_inputs()]
        if len(feed_names) == len(names) and set(feed_names) != set(names):
            feed_names_in_order = feed_names  # tf2onnx renamed them (e.g. "x:0"); keep declaration order
        else:
            feed_names_in_order = names
        got = ort_run(sess, xs, feed_names_in_order)
        err = compare(got, want, "keras vs onnxruntime")
    except BaseException:
        discard(tmp)
        raise
    out = publish(tmp, path)
    return KerasExportInfo(out, route, opset, err)


def keras_to_onnx(model_or_path, path: str | os.PathLike, *, opset: int = 17) -> pathlib.Path:
    """Convert a Keras model (in memory, ``.keras`` file or SavedModel directory) to ONNX at ``path``.

    The ONNX model has inputs ``input`` (or ``input_0``...; a SavedModel keeps its signature's
    names), a dynamic batch dim ``batch`` and, for one output, the output ``output``. The file is
    written atomically after onnxruntime reproduced the model's outputs within 1e-4 on a random
    batch of 2. Raises ``spa.errors.SpaError`` subclasses with a one-line reason.
    """
    return export_keras(model_or_path, path, opset=opset).path
