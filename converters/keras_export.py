"""Keras / TensorFlow -> ONNX via tf2onnx.

:func:`keras_to_onnx` accepts an in-memory ``keras.Model``, a ``.keras`` (or ``.h5``) file or a
TensorFlow SavedModel directory, writes one self-contained ONNX file atomically and checks with
onnxruntime that its outputs match TensorFlow's (within 1e-4). TensorFlow is imported lazily.

The TensorFlow plumbing is public so the test zoo (``models.zoo_keras``) converts the same way:
:func:`import_tf` / :func:`import_keras` (quiet lazy imports), :func:`tf2onnx_convert` (``from_keras`` with a
``tf.function`` fallback, grouped convolutions traced as plain ``Conv2D`` by :func:`plain_grouped_conv`) and
:func:`tidy_io` (output ``output``, batch dim ``batch``).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from spa.errors import BadArgument

from ._common import ConversionFailed, compare, discard, first_line, ort_run, ort_session, publish, tmp_path_for

__all__ = ["import_keras", "import_tf", "is_saved_model", "keras_to_onnx", "plain_grouped_conv", "quiet_tf_env",
           "tf2onnx_convert", "tidy_io"]


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


def quiet_tf_env() -> None:
    """TensorFlow's C++ logging off, set before TensorFlow is imported (it reads the variables once)."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # Silences the oneDNN banner; also gives bit-stable CPU numerics.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def import_keras():
    """``keras``, imported on first use (importing converters must not pull in TensorFlow)."""
    quiet_tf_env()
    import keras

    return keras


def import_tf():
    """``tensorflow``, imported on first use with its Python logger at ERROR."""
    quiet_tf_env()
    import tensorflow as tf

    with contextlib.suppress(Exception):  # an old TF without get_logger: its logs stay on
        tf.get_logger().setLevel("ERROR")
    return tf


def _rename_value(graph, old: str, new: str) -> None:
    for node in graph.node:
        for i, v in enumerate(node.input):
            if v == old:
                node.input[i] = new
        for i, v in enumerate(node.output):
            if v == old:
                node.output[i] = new
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def tidy_io(model_proto) -> None:
    """Name the single output ``output`` (when that name is free) and the batch dim of inputs and outputs
    ``batch``: tf2onnx keeps TensorFlow's names (``dense_1``, ``unk__12``), which say nothing to a user."""
    g = model_proto.graph
    init_names = {t.name for t in g.initializer}
    taken = {v for n in g.node for v in list(n.input) + list(n.output)} | init_names
    inputs = [i for i in g.input if i.name not in init_names]
    if len(g.output) == 1 and g.output[0].name != "output" and "output" not in taken:
        _rename_value(g, g.output[0].name, "output")
    for vi in inputs + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


@contextlib.contextmanager
def plain_grouped_conv() -> Iterator[None]:
    """Trace grouped ``Conv2D`` (``groups > 1``) as a plain TF ``Conv2D`` op.

    Keras 3's TensorFlow backend runs grouped convolutions through a nested
    ``tf.function(jit_compile=True)`` because TF's CPU kernel cannot execute
    them.  tf2onnx does not inline that XLA-only function and leaves a
    ``StatefulPartitionedCall`` node in the ONNX graph.  Conversion only
    *traces* the model, so while it runs, ``keras.src.backend.nn.conv`` is
    swapped for a version that emits ``tf.nn.convolution`` directly for
    grouped NHWC convolutions (a ``Conv2D`` whose filter has ``C_in / groups``
    input channels, which tf2onnx maps to ``Conv`` with ``group``).  Everything
    else goes through the original function; it is restored afterwards, so
    running the Keras model eagerly still uses the XLA path.  A no-op if the
    internals are not where they are expected.
    """
    try:
        keras = import_keras()
        from keras.src import backend as kbackend

        if keras.backend.backend() != "tensorflow":
            raise ImportError
        nn_mod = kbackend.nn
        original = nn_mod.conv
    except Exception:  # noqa: BLE001  # pragma: no cover - other keras versions / backends
        yield
        return
    tf = import_tf()

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        fmt = kbackend.standardize_data_format(data_format)
        if (fmt == "channels_last" and len(inputs.shape) == 4
                and inputs.shape[-1] is not None and inputs.shape[-1] != kernel.shape[-2]):
            return tf.nn.convolution(inputs, kernel, strides, padding.upper(),
                                     data_format="NHWC", dilations=dilation_rate)
        return original(inputs, kernel, strides=strides, padding=padding,
                        data_format=data_format, dilation_rate=dilation_rate)

    nn_mod.conv = conv
    try:
        yield
    finally:
        nn_mod.conv = original


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
    if p.is_dir():
        if not is_saved_model(p):
            raise BadArgument(f"{p} is a directory without saved_model.pb (not a SavedModel)")
        tf = import_tf()
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
    keras = import_keras()
    try:
        return "keras", keras.saving.load_model(str(p), compile=False)
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"cannot load {p} as a Keras model: {first_line(e)}") from None


def tf2onnx_convert(target, specs: Sequence, opset: int, is_keras: bool) -> tuple:
    """(ONNX ModelProto, route): ``tf2onnx.convert.from_keras`` for a Keras model, and when that raises (it
    relies on Keras internals) or ``target`` is a ``tf.function``, ``from_function`` over ``specs``. Grouped
    convolutions are traced as plain ``Conv2D`` (:func:`plain_grouped_conv`)."""
    tf = import_tf()
    import tf2onnx

    with plain_grouped_conv():
        if is_keras:
            try:
                proto, _ = tf2onnx.convert.from_keras(target, input_signature=specs, opset=opset)
                return proto, "from_keras"
            except Exception:  # noqa: BLE001
                model = target
                fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False),
                                 input_signature=specs)
        else:
            fn = target
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
    tf = import_tf()

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
        proto, route = tf2onnx_convert(target, specs, opset, kind == "keras")
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"tf2onnx conversion failed: {first_line(e)}") from None
    tidy_io(proto)
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
