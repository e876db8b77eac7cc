"""Where a model is read and written: load (with external data, streamed when large), the structural checks
every input passes before analysis (unique names, defined tensors, no cycle, sane tensor data and input sizes,
supported opset), the normalisation analysis expects (Constant nodes as initializers), and the one atomic
model writer (temporary file + rename; streamed weights through spa.stream's staging)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import BadModel
from .io_safety import default_mode  # noqa: F401 - re-exported: the writer's callers use it
from .view import kahn_order, node_inputs, op_graph, opset_of  # noqa: F401

MIN_OPSET = 7


MAX_OPSET = 23  # newest default-domain opset onnx 1.23 knows; newer ones are refused, not guessed


TWO_GB = 2**31 - 1


def load(path: str | os.PathLike[str], *, stream_bytes: int | None = None) -> onnx.ModelProto:
    """Read and validate a model file; raise `BadModel` with a one-line reason for anything unusable.

    With `stream_bytes`, a model whose external data is larger than that keeps its large external tensors as
    references (read lazily by `ModelView.array`, see `spa.stream`); small ones are read into the proto."""
    p = Path(path)
    if not p.exists():
        raise BadModel(f"{p}: no such file")
    if p.is_dir():
        raise BadModel(f"{p}: is a directory, not an ONNX file")
    if p.stat().st_size == 0:
        raise BadModel(f"{p}: empty file")
    if not p.is_file():
        raise BadModel(f"{p}: not a regular file")
    from .io_safety import check_model_size, raw_data_lengths, take_prefetched

    check_model_size(p)  # a 3 GB file of anything is refused before it is read
    data = take_prefetched(p)  # read while the command imported its libraries (the spa command's prune)
    try:
        model = onnx.load(str(p), load_external_data=False) if data is None else onnx.load_model_from_string(data)
    except Exception as e:  # protobuf DecodeError and friends
        raise BadModel(f"{p}: not a readable ONNX model ({type(e).__name__})") from None
    raw_lengths = raw_data_lengths(data) if data is not None else None
    del data  # the file's bytes: the proto holds its own copy
    if not model.graph.node and not model.graph.output:
        raise BadModel(f"{p}: not an ONNX model (no graph)")
    from . import stream

    stream.check_external_entries(model, str(p))
    try:
        if stream_bytes is not None and stream.external_bytes(model) > stream_bytes:
            stream.inline_small(model, str(p.parent))
        else:
            onnx.load_external_data_for_model(model, str(p.parent))
    except (FileNotFoundError, OSError) as e:
        raise BadModel(f"{p}: external data missing ({e.filename or e})") from None
    except Exception as e:  # onnx raises ValidationError for a missing or unsafe location
        raise BadModel(f"{p}: external data missing or unreadable ({str(e).splitlines()[0][:200]})") from None
    check_opset(model, str(p))
    check_structure(model, str(p))
    check_tensor_data(model, str(p), raw_lengths=raw_lengths)
    check_input_sizes(model, str(p))
    return model


def check_structure(model: onnx.ModelProto, where: str = "model") -> None:
    """Refuse graphs onnxruntime could never run (a tensor read but defined nowhere, a cycle) and graphs whose
    meaning depends on who reads them: a name defined twice (onnxruntime takes the first initializer of a
    name, a dict the last), a node output redefining an initializer or input, and a graph input that an
    initializer of another type or shape shadows (its default would not fit what it claims to accept)."""
    g = model.graph
    _check_unique(g, where)
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    defined |= {o for n in g.node for o in n.output if o}
    for node in g.node:
        for name in node_inputs(node):
            if name not in defined:
                raise BadModel(f"{where}: node '{node.name or node.op_type}' reads '{name}', which nothing defines")
    for o in g.output:
        if o.name not in defined:
            raise BadModel(f"{where}: graph output '{o.name}' is not produced by any node")
    if kahn_order(model) is not None:
        return
    import networkx as nx  # only to name the cycle

    og = op_graph(model)
    if not nx.is_directed_acyclic_graph(og):
        cyc = nx.find_cycle(og)
        names = [g.node[i].name or g.node[i].op_type for i, _ in cyc][:4]
        raise BadModel(f"{where}: graph has a cycle through {' -> '.join(names)}")


def _check_unique(g: onnx.GraphProto, where: str) -> None:
    from .errors import printable

    seen: dict[str, str] = {}
    inits = {t.name: t for t in g.initializer}

    def define(name: str, what: str) -> None:
        if name in seen:
            raise BadModel(f"{where}: '{printable(name, 120)}' is defined twice ({seen[name]} and {what}); "
                           "readers disagree on which one counts, so the model is refused")
        seen[name] = what

    for t in g.initializer:
        define(t.name, "an initializer")
    inputs: dict[str, onnx.ValueInfoProto] = {}
    for i in g.input:
        if i.name in inputs:
            define(i.name, "a graph input")  # raises: the same input twice
        inputs[i.name] = i
        if i.name in inits:
            _check_shadow(i, inits[i.name], where)
        else:
            define(i.name, "a graph input")
    for n in g.node:
        for o in n.output:
            if o:
                define(o, f"an output of node '{printable(n.name or n.op_type, 80)}'")


def _check_shadow(i: onnx.ValueInfoProto, t: onnx.TensorProto, where: str) -> None:
    """A graph input with an initializer of the same name (the initializer is its default): their element
    type and static shape must agree, or a caller feeding it gets another model than the one pruned."""
    from .errors import printable

    tt = i.type.tensor_type
    if not i.type.HasField("tensor_type"):
        return
    bad = tt.elem_type not in (0, t.data_type)
    if tt.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        bad |= len(dims) != len(t.dims) or any(d is not None and d != int(e) for d, e in zip(dims, t.dims))
    if bad:
        raise BadModel(f"{where}: graph input '{printable(i.name, 120)}' is shadowed by an initializer of "
                       f"another type or shape ({list(t.dims)})")


_PACKED_4BIT = {onnx.TensorProto.INT4, onnx.TensorProto.UINT4, getattr(onnx.TensorProto, "FLOAT4E2M1", -1)}


def _data_needed(t: onnx.TensorProto, n: int) -> tuple[str, int] | None:
    """Which field should hold tensor `t`'s `n` values, and how many entries (bytes for raw_data)."""
    T = onnx.TensorProto
    if t.data_type in _PACKED_4BIT:
        return ("raw_data", (n + 1) // 2) if t.HasField("raw_data") else ("int32_data", (n + 1) // 2)
    if t.data_type == T.STRING:
        return "string_data", n
    if t.HasField("raw_data"):
        try:
            size = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except Exception:  # noqa: BLE001 - a type numpy cannot hold: not checked here
            return None
        return "raw_data", n * size
    fields = {T.FLOAT: ("float_data", 1), T.DOUBLE: ("double_data", 1), T.INT64: ("int64_data", 1),
              T.UINT32: ("uint64_data", 1), T.UINT64: ("uint64_data", 1), T.COMPLEX64: ("float_data", 2),
              T.COMPLEX128: ("double_data", 2)}
    field_, k = fields.get(t.data_type, ("int32_data", 1))
    return field_, n * k


def check_tensor_data(model: onnx.ModelProto, where: str = "model", *,
                      raw_lengths: list[int | None] | None = None) -> None:
    """Refuse initializers and Constant tensors whose data does not match their declared shape and type: the
    declared size is compared with the bytes present before anything is decoded, so a corrupt or hostile file
    ends in one line (exit 3), not in a numpy error or a huge allocation. `raw_lengths`: the initializers'
    raw_data lengths read from the file (`io_safety.raw_data_lengths`), which spares copying each weight out
    of the proto to measure it (ResNet-50: 14 ms)."""
    from .errors import printable
    from .io_safety import all_tensors

    inits = len(model.graph.initializer)
    if raw_lengths is not None and len(raw_lengths) != inits:
        raw_lengths = None
    for k, t in enumerate(all_tensors(model.graph)):  # the initializers first, in order
        if t.data_location == onnx.TensorProto.EXTERNAL:
            continue  # checked against the file when read (spa.stream, onnx's loader)
        dims = [int(d) for d in t.dims]
        name = printable(t.name or "(a Constant)", 120)
        if any(d < 0 for d in dims):
            raise BadModel(f"{where}: tensor '{name}' has a negative dimension {dims}")
        n = 1
        for d in dims:
            n *= d
        need = _data_needed(t, n)
        if need is None:
            continue
        field_, count = need
        if field_ != "raw_data":
            have = len(getattr(t, field_))
        elif raw_lengths is not None and k < inits and raw_lengths[k] is not None:
            have = raw_lengths[k]
        else:
            have = len(t.raw_data)
        if have != count:
            raise BadModel(f"{where}: tensor '{name}' of shape {dims} needs {count} "
                           f"{'bytes' if field_ == 'raw_data' else 'values'} of data, the file holds {have}")


INPUT_BYTES_ENV = "SPA_MAX_INPUT_BYTES"


DEFAULT_MAX_INPUT_BYTES = 2 << 30


def max_input_bytes() -> int:
    """The largest graph input spa will make for verification: $SPA_MAX_INPUT_BYTES, else 2 GiB."""
    from .settings import env_int

    return env_int(INPUT_BYTES_ENV, DEFAULT_MAX_INPUT_BYTES, "bytes")


def check_input_sizes(model: onnx.ModelProto, where: str = "model", batch: int = 1, other: int = 96) -> None:
    """Refuse, before any array is made, a graph input whose declared shape (symbolic dims taken as `batch`
    on the first axis, `other` elsewhere, as the verification inputs are) needs more than `max_input_bytes`."""
    from .errors import printable

    limit = max_input_bytes()
    inits = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        tt = inp.type.tensor_type
        n = 1
        for k, d in enumerate(tt.shape.dim):
            n *= d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (batch if k == 0 else other)
        try:
            size = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).itemsize if tt.elem_type else 4
        except Exception:  # noqa: BLE001 - a type numpy has no size for: count bytes as one each
            size = 1
        if n * size > limit:
            raise BadModel(f"{where}: graph input '{printable(inp.name, 120)}' declares {n * size / 2**30:.1f} GiB "
                           f"per run, over the {limit / 2**30:.1f} GiB spa allocates to verify a model "
                           f"({INPUT_BYTES_ENV}=BYTES raises the limit)")


def malformed(model: onnx.ModelProto) -> str | None:
    """What ONNX's own full check (strict shape inference included) finds wrong with `model`, in one line, or
    None. Asked only after something failed, to tell a malformed file (exit 3) from a bug in spa (exit 1)."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - any complaint of the checker
        text = " ".join(str(e).split())
        return text[:200] or type(e).__name__
    return None


def check_opset(model: onnx.ModelProto, where: str = "model") -> int:
    ops = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not ops:
        raise BadModel(f"{where}: no default-domain opset import")
    v = ops[0]
    if v < MIN_OPSET or v > MAX_OPSET:
        raise BadModel(f"{where}: opset {v} is not supported (supported: {MIN_OPSET}..{MAX_OPSET})")
    return v


def lift_constants(model: onnx.ModelProto) -> None:
    """Turn `Constant` nodes holding a tensor into initializers (same name), so that rules and the rewriter
    see one kind of constant. Constants that are graph outputs stay nodes."""
    g = model.graph
    outputs = {o.name for o in g.output}
    keep = []
    for node in g.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output[0] not in outputs:
            arr = _constant_value(node)
            if arr is not None:
                t = numpy_helper.from_array(arr, node.output[0])
                g.initializer.append(t)
                continue
        keep.append(node)
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    return None  # sparse or string constants: leave as a node (its output is then frozen)


def model_bytes_size(model: onnx.ModelProto) -> int:
    return model.ByteSize()


def save_atomic(model: onnx.ModelProto, out: str | os.PathLike[str], *, input_path: str | None = None,
                base_dir: str | None = None, blob: bytes | None = None) -> int:
    """Write `model` to `out` so that `out` holds either its previous content or the whole new model.

    A model under 2 GB goes through `io_safety.atomic_write`. A larger one, or a streamed one (initializers
    still referring to external data in `base_dir`, copied in chunks), is assembled in a `Staging` directory
    with its weights in a fresh `<out>.<random>.data` file, and the model's rename is the commit point.
    `input_path`: the model read (refused as the output, with its external data files). `blob`: the model
    already serialised (written as is). Returns bytes written (model file plus external data)."""
    from . import io_safety

    out_p = Path(out)
    io_safety.check_io(models=[input_path], writes=[("output", out_p)])
    if blob is None and not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        size = _byte_size(model)
        if size is not None and size <= TWO_GB:
            blob = model.SerializeToString()
    if blob is not None:
        return io_safety.atomic_write(out_p, blob)
    from .stream import Staging

    m = onnx.ModelProto()
    m.CopyFrom(model)
    with Staging(out_p, keep=io_safety.model_files(input_path) if input_path else ()) as st:
        st.put_inline(m)
        st.finish(m, base_dir)
        return st.commit()


def begin_save(blob: bytes, out: str | os.PathLike[str], *, input_path: str | None = None):
    """`save_atomic` of an already serialised model in two steps: the file is written in the background from
    now on, and appears at `out` on the returned `PendingWrite.commit()` (`abort()` removes it). Lets the
    checks of the model run while it is written."""
    from . import io_safety

    io_safety.check_io(models=[input_path], writes=[("output", out)])
    return io_safety.PendingWrite(out, blob)


def _byte_size(model: onnx.ModelProto) -> int | None:
    try:
        return model.ByteSize()
    except Exception:
        return None
