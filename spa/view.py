"""Where shapes are known: `ModelView`, the read-only view every stage works on (the proto, static shapes of
every tensor - ints, `None` for unknown or symbolic dims -, initializer values, producers and consumers), built
from ONNX shape inference on a weightless skeleton, onnxruntime probing for what inference leaves unknown, and
the folding of shape chains (spa.fold); plus the graph's order (topological, Kahn) and node inputs including
the outer-scope names subgraphs read."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import BadModel

Dim = int | None


Shape = tuple[Dim, ...]


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


def kahn_order(model: onnx.ModelProto) -> list[int] | None:
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
    order = kahn_order(model)
    assert order is not None, "cycle (load() refuses those)"
    return order


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


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
    elem_types: dict[str, int] = field(default_factory=dict)  # onnx.TensorProto element type, where known

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
        elem_types: dict[str, int] = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            if vi.type.tensor_type.elem_type:
                elem_types[vi.name] = vi.type.tensor_type.elem_type
            s = shape_of(vi.type)
            if s is not None:
                shapes[vi.name] = s
                symbols[vi.name] = _sym_of(vi.type) or ()
        inits = {t.name: t for t in model.graph.initializer}
        _probe_unknown(model, shapes, symbols, set(inits), base_dir)
        for name, t in inits.items():
            shapes[name] = tuple(int(d) for d in t.dims)
            symbols[name] = (None,) * len(t.dims)
            elem_types[name] = t.data_type
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
            elem_types=elem_types,
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


def producers_of(graph: onnx.GraphProto, names, producer: dict[str, int] | None = None) -> set[int]:
    """Indices of the nodes that the tensors `names` depend on (their producers and, transitively, theirs);
    `producer`: tensor name -> index of the node that makes it, where the caller has it already."""
    if producer is None:
        producer = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    needed: set[int] = set()
    stack = [producer[x] for x in names if x in producer]
    while stack:
        i = stack.pop()
        if i not in needed:
            needed.add(i)
            stack.extend(producer[t] for t in node_inputs(graph.node[i]) if t in producer)
    return needed


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
