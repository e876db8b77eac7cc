"""Load an ONNX model, normalise it for analysis, infer shapes, and save atomically.

`ModelView` is the read-only view every later stage works on: the model proto, static shapes of every
tensor (ints, `None` for unknown/symbolic dims), initializer values, producers and consumers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import BadArgument, BadModel
from .io_safety import default_mode  # noqa: F401 - re-exported: callers import it from here

MIN_OPSET = 7
MAX_OPSET = 23  # newest default-domain opset onnx 1.23 knows; newer ones are refused, not guessed
_TWO_GB = 2**31 - 1

Dim = int | None
Shape = tuple[Dim, ...]


# ---------------------------------------------------------------------------------------------- load
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
    from .io_safety import check_model_size

    check_model_size(p)  # a 3 GB file of anything is refused before it is read
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise BadModel(f"{p}: not a readable ONNX model ({type(e).__name__})") from None
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
    check_tensor_data(model, str(p))
    check_input_sizes(model, str(p))
    return model


def op_graph(model: onnx.ModelProto):
    """The networkx view of the graph: node indices, an edge producer → consumer per tensor (subgraph
    outer-scope reads included), the tensor name on the edge."""
    import networkx as nx

    g = nx.DiGraph()
    producer: dict[str, int] = {}
    for i, node in enumerate(model.graph.node):
        g.add_node(i)
        for o in node.output:
            if o:
                producer[o] = i
    for i, node in enumerate(model.graph.node):
        for name in node_inputs(node):
            j = producer.get(name)
            if j is not None:
                g.add_edge(j, i, tensor=name)
    return g


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
    if _kahn_order(model) is not None:
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


def check_tensor_data(model: onnx.ModelProto, where: str = "model") -> None:
    """Refuse initializers and Constant tensors whose data does not match their declared shape and type: the
    declared size is compared with the bytes present before anything is decoded, so a corrupt or hostile file
    ends in one line (exit 3), not in a numpy error or a huge allocation."""
    from .errors import printable
    from .io_safety import all_tensors

    for t in all_tensors(model.graph):
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
        have = len(t.raw_data) if field_ == "raw_data" else len(getattr(t, field_))
        if have != count:
            raise BadModel(f"{where}: tensor '{name}' of shape {dims} needs {count} "
                           f"{'bytes' if field_ == 'raw_data' else 'values'} of data, the file holds {have}")


INPUT_BYTES_ENV = "SPA_MAX_INPUT_BYTES"
DEFAULT_MAX_INPUT_BYTES = 2 << 30


def max_input_bytes() -> int:
    """The largest graph input spa will make for verification: $SPA_MAX_INPUT_BYTES, else 2 GiB."""
    env = os.environ.get(INPUT_BYTES_ENV, "").strip()
    if env:
        try:
            return int(env)
        except ValueError:
            raise BadArgument(f"{INPUT_BYTES_ENV}={env!r} is not a number of bytes") from None
    return DEFAULT_MAX_INPUT_BYTES


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


def _kahn_order(model: onnx.ModelProto) -> list[int] | None:
    """A topological order of the nodes (Kahn's algorithm, stable), or None if the graph has a cycle."""
    g = model.graph
    producer: dict[str, int] = {}
    for i, node in enumerate(g.node):
        for o in node.output:
            if o:
                producer[o] = i
    succ: list[list[int]] = [[] for _ in g.node]
    indeg = [0] * len(g.node)
    for i, node in enumerate(g.node):
        for name in set(node_inputs(node)):
            j = producer.get(name)
            if j is not None and j != i:
                succ[j].append(i)
                indeg[i] += 1
            elif j == i:
                return None
    import heapq

    ready = [i for i, d in enumerate(indeg) if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for k in succ[i]:
            indeg[k] -= 1
            if indeg[k] == 0:
                heapq.heappush(ready, k)
    return order if len(order) == len(g.node) else None


def topo_order(model: onnx.ModelProto) -> list[int]:
    """Node indices in a topological order (ONNX requires one; some tools write nodes out of order)."""
    g = model.graph
    seen: set[str] = {i.name for i in g.input} | {t.name for t in g.initializer}
    ok = True
    for node in g.node:
        if any(x not in seen for x in node_inputs(node)):
            ok = False
            break
        seen.update(o for o in node.output if o)
    if ok:
        return list(range(len(g.node)))
    order = _kahn_order(model)
    assert order is not None, "cycle (load() refuses those)"
    return order


def check_opset(model: onnx.ModelProto, where: str = "model") -> int:
    ops = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not ops:
        raise BadModel(f"{where}: no default-domain opset import")
    v = ops[0]
    if v < MIN_OPSET or v > MAX_OPSET:
        raise BadModel(f"{where}: opset {v} is not supported (supported: {MIN_OPSET}..{MAX_OPSET})")
    return v


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


# ------------------------------------------------------------------------------------- normalise
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


def infer_shapes(model: onnx.ModelProto, input_dims: dict[str, list[int]] | None = None) -> onnx.ModelProto:
    """ONNX shape inference with data propagation (so Shape→Gather→Concat reshape targets resolve).

    Runs on a skeleton of the model: large initializers are replaced by typed graph inputs, so weights are
    not serialised twice (inference needs only their shapes; small ones keep values for data propagation).
    `input_dims`: graph inputs fixed at these dims first (shapes at a given image/sequence size)."""
    sk = skeleton(model)
    for i in sk.graph.input:
        if i.name in (input_dims or {}):
            i.type.tensor_type.shape.Clear()
            for d in input_dims[i.name]:
                i.type.tensor_type.shape.dim.add().dim_value = int(d)
    try:
        return onnx.shape_inference.infer_shapes(sk, check_type=False, strict_mode=False, data_prop=True)
    except Exception:
        try:
            return onnx.shape_inference.infer_shapes(sk, check_type=False, strict_mode=False)
        except Exception:
            return sk


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its weights' values: large initializers become typed graph inputs (shape inference
    and the checker need only their shapes), small integer ones stay (data propagation reads them)."""
    g = model.graph
    sk = onnx.ModelProto()
    sk.ir_version = max(model.ir_version, 4)
    sk.opset_import.extend(model.opset_import)
    if model.functions:
        sk.functions.extend(model.functions)
    sg = sk.graph
    sg.name = g.name
    sg.node.extend(g.node)
    sg.output.extend(g.output)
    sg.value_info.extend(g.value_info)
    init_names = set()
    for t in g.initializer:
        init_names.add(t.name)
        lazy = t.data_location == onnx.TensorProto.EXTERNAL  # a streamed weight: its data is not loaded
        if not lazy and (t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) or _numel(t) <= 16):
            sg.initializer.append(t)
        else:
            sg.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    sg.input.extend(i for i in g.input if i.name not in init_names)
    return sk


def _numel(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def shape_of(t: onnx.TypeProto) -> Shape | None:
    """Dims of a tensor type (None for a symbolic dim); None when it declares no shape."""
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim)


def _sym_of(t: onnx.TypeProto) -> tuple[str | None, ...] | None:
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_param if d.HasField("dim_param") else None for d in t.tensor_type.shape.dim)


# ------------------------------------------------------------------------------------------ view
@dataclass
class ModelView:
    """Everything the analysis needs to know about a model, computed once."""

    model: onnx.ModelProto
    shapes: dict[str, Shape]
    symbols: dict[str, tuple[str | None, ...]]
    inits: dict[str, onnx.TensorProto]
    producer: dict[str, int]
    consumers: dict[str, list[int]]
    graph_inputs: list[str]
    graph_outputs: list[str]
    opset: int
    folded: dict[str, np.ndarray] = field(default_factory=dict)  # shape arithmetic known from static shapes
    _arrays: dict[str, np.ndarray] = field(default_factory=dict)
    base_dir: str | None = None  # where the external data of streamed (not loaded) initializers lives
    batch_symbol: str | None = None  # the symbolic batch dim of the first graph input

    def period(self, name: str, axis: int) -> int | None:
        """The axis's size, or for a dynamic axis known to be k·batch (batch outermost: reshapes fold the
        batch in front), k: index i of such an axis is element i % k of every batch entry."""
        s = self.shapes.get(name)
        if s is None or axis >= len(s):
            return None
        if s[axis] is not None:
            return s[axis]
        return batch_multiple(self.symbols.get(name, ()), axis, self.batch_symbol)

    @classmethod
    def build(cls, model: onnx.ModelProto, base_dir: str | None = None) -> "ModelView":
        inferred = infer_shapes(model)
        g = inferred.graph
        shapes: dict[str, Shape] = {}
        symbols: dict[str, tuple[str | None, ...]] = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            s = shape_of(vi.type)
            if s is not None:
                shapes[vi.name] = s
                symbols[vi.name] = _sym_of(vi.type) or ()
        inits = {t.name: t for t in model.graph.initializer}
        _probe_unknown(model, shapes, symbols, set(inits), base_dir)
        for name, t in inits.items():
            shapes[name] = tuple(int(d) for d in t.dims)
            symbols[name] = (None,) * len(t.dims)
        producer: dict[str, int] = {}
        consumers: dict[str, list[int]] = {}
        for i, node in enumerate(model.graph.node):
            for o in node.output:
                if o:
                    producer[o] = i
            for name in node_inputs(node):
                consumers.setdefault(name, []).append(i)
        init_names = set(inits)
        from .fold import fold_shape_values

        folded = fold_shape_values(model, shapes, inits)
        return cls(
            model=model,
            shapes=shapes,
            symbols=symbols,
            inits=inits,
            producer=producer,
            consumers=consumers,
            graph_inputs=[i.name for i in model.graph.input if i.name not in init_names],
            graph_outputs=[o.name for o in model.graph.output],
            opset=opset_of(model),
            folded=folded,
            base_dir=base_dir,
            batch_symbol=next(
                (i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input
                 if i.name not in init_names and i.type.tensor_type.shape.dim
                 and i.type.tensor_type.shape.dim[0].dim_param), None),
        )

    def array(self, name: str) -> np.ndarray | None:
        """Value of an initializer (cached) or of shape arithmetic that folds to a constant; None otherwise."""
        if name not in self.inits:
            return self.folded.get(name)
        a = self._arrays.get(name)
        t = self.inits[name]
        if a is None and t.data_location == onnx.TensorProto.EXTERNAL:
            from .stream import read_array

            if self.base_dir is None:
                raise BadModel(f"initializer '{name}' has external data but the model's directory is unknown")
            return read_array(t, self.base_dir)  # file-backed and not cached: weights are never held twice
        if a is None:
            a = numpy_helper.to_array(t)
            self._arrays[name] = a
        return a

    def shape(self, name: str) -> Shape | None:
        return self.shapes.get(name)


def random_array(rng: np.random.Generator, shape, dtype, int_high: int = 4) -> np.ndarray:
    """Random data of any input dtype: normal floats, fair booleans, integers in [0, int_high)."""
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    return rng.integers(0, int_high, size=shape).astype(dtype)


def ort_options(base_dir: str | None = None):
    """onnxruntime session options for a model held in memory whose external data lives in `base_dir`."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if base_dir is not None:
        so.add_session_config_entry("session.model_external_initializers_file_folder_path", str(base_dir))
    return so


class _Unprobeable(Exception):
    pass


def _probe_feeds(sess, seed: int, batch: int, other: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else (batch if k == 0 else other) for k, d in enumerate(i.shape)]
        dt = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}.get(i.type)
        if dt is None:
            raise _Unprobeable(i.type)
        feeds[i.name] = random_array(rng, dims, dt, int_high=2)
    return feeds


def _probe_unknown(model: onnx.ModelProto, shapes: dict, symbols: dict, inits: set[str],
                   base_dir: str | None = None) -> None:
    """Fill in what ONNX shape inference left unknown (e.g. a Reshape whose target is computed from Shape with a
    symbolic batch) by running onnxruntime twice with different sizes for the symbolic input dims: dims equal
    in both runs are static. Best effort: a model onnxruntime cannot run keeps its unknowns (and they freeze)."""
    g = model.graph
    input_syms = {d.dim_param for i in g.input for d in i.type.tensor_type.shape.dim if d.dim_param}
    need = []
    for node in g.node:
        for o in node.output:
            if not o or o in inits:
                continue
            s = shapes.get(o)
            sym = symbols.get(o, ())
            if s is None or any(d is None and (k >= len(sym) or sym[k] not in input_syms) for k, d in enumerate(s)):
                need.append(o)
    if not need or len(g.node) > 20000:
        return
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover
        return
    m = onnx.ModelProto()
    m.CopyFrom(model)
    outs = {o.name for o in m.graph.output}
    for name in need:
        if name not in outs:
            vi = onnx.ValueInfoProto()
            vi.name = name
            m.graph.output.append(vi)
    try:
        so = ort_options(base_dir)
        so.log_severity_level = 4
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        # different sizes AND different random data in the two runs: a dim that depends on the data (NonZero,
        # TopK with a computed k, ...) then differs too and stays unknown instead of being taken as static.
        # Other dynamic dims are 64 and 160 first: multiples of 32 (strided detectors need them) that stay
        # different after up to 64x downsampling (8 and 9 both become 1 after 32x and would be taken for
        # static), and whose ratio (2.5) is not the batch's (2): a dim that doubled is batch·k, not a sequence
        # length. Models limited to short sequences (position tables) fall back to smaller pairs.
        runs = []
        for pair in ((64, 160), (16, 40), (8, 9)):
            try:
                runs = [sess.run(need, _probe_feeds(sess, seed, batch, other))
                        for seed, (batch, other) in enumerate(((1, pair[0]), (2, pair[1])))]
                break
            except _Unprobeable:
                return
            except Exception:
                continue
        if not runs:
            return
    except Exception:
        return
    batch_sym = next(
        (i.type.tensor_type.shape.dim[0].dim_param for i in g.input
         if i.name not in inits and i.type.tensor_type.shape.dim and i.type.tensor_type.shape.dim[0].dim_param),
        None,
    )
    for name, a, b in zip(need, runs[0], runs[1]):
        if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray) or a.ndim != b.ndim:
            continue  # sequences/maps (SplitToSequence, ...) carry no tensor shape
        dims, syms = [], []
        for da, db in zip(np.shape(a), np.shape(b)):
            if da == db:
                dims.append(int(da))
                syms.append(None)
            else:
                dims.append(None)
                # k·batch in both runs (batch 1, then 2): a batch merged with k other elements (attention
                # heads folded into the batch, Swin windows), written "batch*k"
                syms.append(None if batch_sym is None or da < 1 or db != 2 * da
                            else batch_sym if da == 1 else f"{batch_sym}*{int(da)}")
        old = shapes.get(name)
        if old is not None and len(old) == len(dims):
            dims = [o if o is not None else d for o, d in zip(old, dims)]
        shapes[name] = tuple(dims)
        symbols[name] = tuple(syms)


def batch_multiple(syms: tuple, axis: int, batch: str | None) -> int | None:
    """k if the symbol of `axis` is the batch symbol (k = 1) or "batch*k"; None otherwise."""
    if batch is None or axis >= len(syms) or not syms[axis]:
        return None
    sym = syms[axis]
    if sym == batch:
        return 1
    head, _, k = sym.rpartition("*")
    return int(k) if head == batch and k.isdigit() else None


def shape_sources(view: "ModelView", name: str) -> list[str]:
    """Tensors whose Shape/Size feeds the computation of `name`."""
    nodes = view.model.graph.node
    out, stack, seen = [], [name], set()
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        i = view.producer.get(t)
        if i is None:
            continue
        node = nodes[i]
        if node.op_type in ("Shape", "Size"):
            out.append(node.input[0])
        else:
            stack.extend(x for x in node.input if x)
    return out


def node_inputs(node: onnx.NodeProto) -> list[str]:
    """Explicit inputs plus outer-scope names a subgraph (If/Loop/Scan) reads implicitly."""
    names = [i for i in node.input if i]
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for sub in graphs:
            names.extend(_outer_refs(sub))
    return names


def _outer_refs(g: onnx.GraphProto) -> list[str]:
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    refs: list[str] = []
    for n in g.node:
        for name in node_inputs(n):
            if name not in defined:
                refs.append(name)
        defined.update(o for o in n.output if o)
    return refs


# ------------------------------------------------------------------------------------------ save
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
        if size is not None and size <= _TWO_GB:
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


def _byte_size(model: onnx.ModelProto) -> int | None:
    try:
        return model.ByteSize()
    except Exception:
        return None


def _same_file(a: Path, b: Path) -> bool:  # kept for callers not yet moved to io_safety.same_file
    from .io_safety import same_file

    return same_file(a, b)
