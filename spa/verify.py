"""Checks on emitted models: onnx.checker, shape inference, an onnxruntime session that runs, and the
zero-group oracle (prune = zero the same channels in the original, outputs must agree)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from .analysis import Analysis
from .errors import VerificationFailed
from .modelfile import INPUT_BYTES_ENV, check_input_sizes, max_input_bytes
from .view import random_array
from .rules.hooks import StatsMask

NP_DTYPES = {  # ONNX element type -> the numpy dtype of inputs made for it
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
}


def random_inputs(model: onnx.ModelProto, seed: int = 0, batch: int = 1, other: int = 96,
                  shapes: dict[str, list[int]] | None = None) -> dict[str, np.ndarray]:
    """Deterministic inputs for every graph input: symbolic dims become `batch` (first axis) or `other` (96 by
    default: strided image models (multiples of 32), sequence models and padded signal front-ends run there,
    and it differs from the two sizes the shape probe used). `shapes` (input name -> dims, e.g. from
    `--input-shape`) fixes an input's dims outright."""
    check_input_sizes(model, batch=batch, other=other)  # one line before a huge allocation
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape, dtype in _graph_inputs(model, batch, other):
        feeds[name] = random_array(rng, (shapes or {}).get(name, shape), dtype)
    return feeds


def _graph_inputs(model: onnx.ModelProto, batch: int, other: int) -> list[tuple[str, list[int], type]]:
    """(name, dims, numpy dtype) of each graph input with symbolic dims as `batch` (axis 0) or `other`."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (batch if k == 0 else other)
                 for k, d in enumerate(tt.shape.dim)]
        out.append((inp.name, shape, NP_DTYPES.get(tt.elem_type, np.float32)))
    return out


def input_shapes(model: onnx.ModelProto, other: int | None, batch: int = 1,
                 shapes: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """The dims every graph input gets when symbolic non-batch dims are `other` (None: the model has none)
    and the batch is `batch`; `shapes` entries win. What MACs are counted at and what bench times."""
    return {name: list((shapes or {}).get(name, dims))
            for name, dims, _ in _graph_inputs(model, batch, 1 if other is None else other)}


def parse_input_shapes(specs: list[str], model: onnx.ModelProto) -> dict[str, list[int]]:
    """`--input-shape NAME=1,3,48,320` (NAME= may be left out when the model has one input) -> {name: dims}.
    Checked against the model: the input exists, the rank matches, static dims are kept. Raises BadArgument."""
    from .errors import BadArgument

    declared = {name: dims for name, dims, _ in _graph_inputs(model, -1, -1)}
    dtypes = {name: dtype for name, _, dtype in _graph_inputs(model, -1, -1)}
    out: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, dims_s = spec.rpartition("=")
        if not sep:
            if len(declared) != 1:
                raise BadArgument(f"--input-shape {spec!r}: the model has {len(declared)} inputs, give NAME=dims")
            name = next(iter(declared))
        if name not in declared:
            raise BadArgument(f"--input-shape {spec!r}: the model has no input {name!r} "
                              f"(inputs: {', '.join(declared) or 'none'})")
        try:
            dims = [int(d) for d in dims_s.replace("x", ",").replace("×", ",").split(",")]
        except ValueError:
            dims = []
        if not dims or any(d < 1 for d in dims):
            raise BadArgument(f"--input-shape {spec!r}: expected positive integers like 1,3,224,224")
        want = declared[name]
        if len(dims) != len(want):
            raise BadArgument(f"--input-shape {spec!r}: input {name!r} has {len(want)} dims, got {len(dims)}")
        for k, (w, d) in enumerate(zip(want, dims)):
            if w > 0 and w != d:
                raise BadArgument(f"--input-shape {spec!r}: dim {k} of {name!r} is fixed at {w} by the model")
        if int(np.prod(dims, dtype=np.float64)) * np.dtype(dtypes[name]).itemsize > max_input_bytes():
            raise BadArgument(f"--input-shape {spec!r}: over the {max_input_bytes() / 2**30:.1f} GiB spa allocates "
                              f"for one input ({INPUT_BYTES_ENV}=BYTES raises the limit)")
        out[name] = dims
    return out


def format_shapes(shapes: dict[str, list[int]]) -> str:
    """`x=1×3×48×320` (inputs separated by ', ')."""
    return ", ".join(f"{n}={'×'.join(map(str, d))}" for n, d in shapes.items())


def session(model: onnx.ModelProto | bytes, optimize: bool = False, threads: int = 0, spinning: bool = True,
            arena: bool = True):
    """An onnxruntime CPU session (no graph optimisation by default: the model runs as written). `model` may
    be the proto already serialised (bytes), so a caller that also checks or writes it serialises it once.
    `spinning=False`: the worker threads sleep between runs instead of spinning, for callers that do numpy work
    between runs (the calibration passes: 22 % faster calibrated prune of PP-OCRv4 rec on 2 cores).
    `arena=False`: no memory arena of the session's own (nor a memory pattern, which would be one block per run
    then), for passes that build many sessions or hand large outputs back: each new arena is fresh memory, every
    page of it a fault. PP-OCRv4 rec's calibrated prune (a calibration session, then one per re-fit segment) at
    0.5, fresh processes at top priority, 3 x 3 prunes: system time 0.53-0.85 s against 0.80-0.96 s, wall 4.12-4.41 s
    against 4.22-4.70 s; the values are the same."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4  # failures surface as exceptions; size probing must not spam stderr
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not arena:
        so.enable_cpu_mem_arena = False
        so.enable_mem_pattern = False
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def session_from_file(path: str, threads: int = 0):
    """An onnxruntime CPU session read from a file (external data is mapped from disk, not copied through a
    serialised proto)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4  # failures surface as exceptions; size probing must not spam stderr
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@dataclass
class Verified:
    """What verification found out besides "it runs": `size`, the value fed to symbolic non-batch dims
    (None: the model has none, or `shapes` fixed them); `wrong_declarations`, graph outputs whose declared
    shape the ORIGINAL model does not return either (output name -> (declared dims, dims it really returns);
    e.g. a PyTorch 1.9 CRNN declaring [1, seqlen] and returning [T, 1, 8210]). Those declarations are no
    contract the pruned model can break, so they are compared with what the original really returns."""

    size: int | None = None
    wrong_declarations: dict[str, tuple[list, list[int]]] = field(default_factory=dict)


def check_model_file(path: str, model: onnx.ModelProto, original: onnx.ModelProto | None = None,
                     original_path: str | None = None, shapes: dict[str, list[int]] | None = None) -> Verified:
    """`check_model` for a model written with external data (`model` is its proto as written, weights not
    loaded): onnx.checker and onnxruntime both read it from `path`, so no serialised copy of the weights is
    ever made."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        if original is None or _passes_checker(original):
            raise VerificationFailed(f"pruned model fails onnx.checker: {_first_line(e)}") from None
    sessions: dict[str, object] = {}  # made on first use, inside the checks (an invalid graph fails there)

    def run_file(key: str, file: str, size: int) -> list[np.ndarray]:
        if key not in sessions:
            sessions[key] = session_from_file(file)
        return sessions[key].run(None, random_inputs(model, other=size, shapes=shapes))

    run_original = None if original_path is None else (lambda size: run_file("original", original_path, size))
    return _verify_runs(lambda size: run_file("pruned", path, size), run_original, model, original, shapes)


OTHER_SIZES = (96, 64, 32, 48, 16, 8, 1, 128, 224, 256, 320, 512)  # tried in turn for symbolic non-batch dims until the original runs


def has_free_dims(model: onnx.ModelProto) -> bool:
    inits = {t.name for t in model.graph.initializer}
    return any(k > 0 and not (d.HasField("dim_value") and d.dim_value > 0)
               for i in model.graph.input if i.name not in inits
               for k, d in enumerate(i.type.tensor_type.shape.dim))


def _verify_runs(run_pruned, run_original, model: onnx.ModelProto, original: onnx.ModelProto | None,
                 shapes: dict[str, list[int]] | None) -> Verified:
    free = has_free_dims(model) and not _covers_free_dims(model, shapes)
    outs, size = _run_verified(run_pruned, run_original, free)
    wrong = {}
    if original is not None:
        wrong = _check_output_shapes(outs, original, None if run_original is None else lambda: run_original(size))
    return Verified(size if free else None, wrong)


def _covers_free_dims(model: onnx.ModelProto, shapes: dict[str, list[int]] | None) -> bool:
    """True when `shapes` fixes every graph input that has symbolic non-batch dims."""
    if not shapes:
        return False
    return all(name in shapes for name, dims, _ in _graph_inputs(model, 1, -1) if -1 in dims[1:])


def _run_verified(run_pruned, run_original, free_dims: bool) -> tuple[list[np.ndarray], int]:
    """Run the pruned model on random inputs. A model with symbolic non-batch dims (image size, sequence length)
    may only run at some sizes (a recogniser needs height 48): sizes are tried until the original runs, and
    there the pruned outputs must have the original's shapes exactly. Returns the outputs and the size fed.
    Raises VerificationFailed."""
    sizes = OTHER_SIZES if run_original is not None and free_dims else OTHER_SIZES[:1]
    first_err = None
    for size in sizes:
        try:
            outs = run_pruned(size)
        except Exception as e:
            if run_original is None:
                raise VerificationFailed(f"pruned model does not run in onnxruntime: {_first_line(e)}") from None
            try:
                run_original(size)
            except Exception as e0:
                first_err = first_err or e0
                continue  # the original cannot run at this size either: try another
            raise VerificationFailed(f"pruned model does not run in onnxruntime: {_first_line(e)}") from None
        if run_original is not None and len(sizes) > 1:
            want = [o.shape for o in run_original(size)]
            got = [o.shape for o in outs]
            if want != got:
                raise VerificationFailed(f"pruned model's output shapes {got} differ from the original's {want} "
                                         f"(symbolic dims fed as {size})")
        return outs, size
    raise VerificationFailed(
        f"onnxruntime cannot run the original model either ({_first_line(first_err)}), so the pruned "
        "model cannot be verified; nothing was written"
    )


def first_runnable_size(model: onnx.ModelProto, feeds_at, sizes) -> int | None:
    """The first of `sizes` at which `model` runs on `feeds_at(size)` (inputs whose symbolic non-batch dims
    are that size); None if it runs at none."""
    sess = session(model)
    for size in sizes:
        try:
            sess.run(None, feeds_at(size))
            return size
        except Exception:
            continue
    return None


def runnable_size(model: onnx.ModelProto, shapes: dict[str, list[int]] | None = None) -> int | None:
    """The first of OTHER_SIZES at which `model` runs with its symbolic non-batch dims at that size (inputs in
    `shapes` at their given dims); None if it runs at none."""
    return first_runnable_size(model, lambda size: random_inputs(model, other=size, shapes=shapes), OTHER_SIZES)


def _runnable_feeds(model: onnx.ModelProto, seed: int, batch: int) -> dict[str, np.ndarray]:
    """Random inputs at the first of OTHER_SIZES (for symbolic non-batch dims) at which `model` runs (the last
    size if none)."""
    if not has_free_dims(model):
        return random_inputs(model, seed=seed, batch=batch)

    def at(size: int) -> dict[str, np.ndarray]:
        return random_inputs(model, seed=seed, batch=batch, other=size)

    return at(first_runnable_size(model, at, OTHER_SIZES) or OTHER_SIZES[-1])


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return session(model).run(None, feeds)


def check_model(model: onnx.ModelProto, original: onnx.ModelProto | None = None, *, blob: bytes | None = None,
                shapes: dict[str, list[int]] | None = None) -> Verified:
    """onnx.checker (full), strict shape inference, and one onnxruntime run whose outputs keep the original's
    shapes. Raises VerificationFailed with a one-line reason. `blob`: `model` already serialised (the checker
    and onnxruntime then share it instead of serialising the proto twice). `shapes`: input dims to run at
    (`--input-shape`) instead of searching a size for symbolic dims."""
    if blob is None:
        blob = model.SerializeToString()
    try:
        onnx.checker.check_model(_checkable(model, blob), full_check=True)
    except Exception as e:
        # a model that was already invalid is not held to a stricter standard than it met; the onnxruntime
        # run below still has to succeed
        if original is None or _passes_checker(original):
            raise VerificationFailed(f"pruned model fails onnx.checker: {_first_line(e)}") from None
    sessions: dict[str, object] = {}  # made on first use, inside the checks (an invalid graph fails there)

    def run_pruned(size: int) -> list[np.ndarray]:
        if "pruned" not in sessions:
            sessions["pruned"] = session(blob)
        return sessions["pruned"].run(None, random_inputs(model, other=size, shapes=shapes))

    def run_original(size: int) -> list[np.ndarray]:
        if "original" not in sessions:
            sessions["original"] = session(original)
        return sessions["original"].run(None, random_inputs(model, other=size, shapes=shapes))

    return _verify_runs(run_pruned, None if original is None else run_original, model, original, shapes)


def _check_output_shapes(outs: list[np.ndarray], original: onnx.ModelProto,
                         run_original=None) -> dict[str, tuple[list, list[int]]]:
    """Each output must have its declared shape; where the original itself does not return its declared
    shape (`run_original()`: its outputs at the same inputs), the pruned output must equal what the original
    returns instead. Returns those wrong declarations; raises VerificationFailed."""
    wrong: dict[str, tuple[list, list[int]]] = {}
    real: list[tuple[int, ...]] | None = None
    for k, (o, info) in enumerate(zip(outs, original.graph.output)):
        dims = info.type.tensor_type.shape.dim
        # a declared dim ≤ 0 (PaddlePaddle writes -1 for "any") is no constraint
        want = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
        if not info.type.tensor_type.HasField("shape") or _fits(want, o.shape):
            continue
        if run_original is not None and real is None:
            real = [np.shape(x) for x in run_original()]
        if real is None or _fits(want, real[k]):
            raise VerificationFailed(f"output '{info.name}' changed shape: declared {want}, got {list(o.shape)}")
        if tuple(o.shape) != tuple(real[k]):
            raise VerificationFailed(f"output '{info.name}' changed shape: the original returns {list(real[k])}, "
                                     f"the pruned model {list(o.shape)}")
        wrong[info.name] = (want, [int(d) for d in real[k]])
    return wrong


def _fits(want: list, got) -> bool:
    return len(want) == len(got) and all(w is None or w == g for w, g in zip(want, got))


def wrong_declarations(original: onnx.ModelProto, shapes: dict[str, list[int]] | None = None
                       ) -> dict[str, tuple[list, list[int]]]:
    """Graph outputs whose declared shape the original does not return (one run at a size it runs at, or at
    `shapes`): name -> (declared dims, dims it returns). Empty when it cannot be run."""
    size = runnable_size(original, shapes) if has_free_dims(original) else 96
    if size is None:
        return {}
    try:
        outs = session(original).run(None, random_inputs(original, other=size, shapes=shapes))
    except Exception:  # noqa: BLE001 - nothing to compare with
        return {}
    wrong = {}
    for o, info in zip(outs, original.graph.output):
        dims = info.type.tensor_type.shape.dim
        want = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
        if info.type.tensor_type.HasField("shape") and not _fits(want, np.shape(o)):
            wrong[info.name] = (want, [int(d) for d in np.shape(o)])
    return wrong


def redeclare_outputs(model: onnx.ModelProto, wrong: dict[str, tuple[list, list[int]]]) -> None:
    """Give these graph outputs the rank the model really returns, every dim symbolic (`<output>_dim<k>`):
    declarations the model does not honour would mislead every tool that reads them (and ONNX's checker, once
    pruning folds the shapes that hid the contradiction)."""
    for o in model.graph.output:
        if o.name in wrong:
            shape = o.type.tensor_type.shape
            shape.Clear()
            for k in range(len(wrong[o.name][1])):
                shape.dim.add().dim_param = f"{o.name}_dim{k}"


def _checkable(model: onnx.ModelProto, blob: bytes | None = None) -> onnx.ModelProto | bytes:
    """What onnx.checker's full check reads: the model's skeleton (`spa.view.skeleton`: large initializers as
    typed graph inputs), the same standard the original is held to (`_passes_checker`). The checker would
    otherwise parse and copy every weight (ResNet-50 pruned: 47 -> 2-5 ms) only to see that each holds as
    many values as its dims say, which the loader checked for the original's weights (check_tensor_data),
    the rewriter guarantees for the arrays it writes, and onnxruntime checks again when it loads them. A
    graph with sparse initializers (the skeleton does not carry them) is checked whole."""
    from .view import skeleton

    if model.graph.sparse_initializer:
        return model if blob is None else blob
    return skeleton(model)


def _passes_checker(model: onnx.ModelProto) -> bool:
    try:
        onnx.checker.check_model(_checkable(model), full_check=True)
        return True
    except Exception:
        return False


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]


def zeroed_model(
    analysis: Analysis, keep: np.ndarray, overrides: dict[str, np.ndarray] | None = None
) -> onnx.ModelProto:
    """The original model with every removed channel made inert in every initializer member of its group:
    producer rows, biases, norm scales/shifts, consumer columns (0; 1 for divisors and variances).
    `overrides` (initializer name → full-size values, e.g. compensated weights) replace the originals first."""
    m = onnx.ModelProto()
    m.CopyFrom(analysis.view.model)
    overrides = overrides or {}
    for i, t in enumerate(m.graph.initializer):
        if t.name in overrides:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(overrides[t.name]), t.name))
    edits: dict[str, list[tuple[int, np.ndarray, float]]] = {}
    for g in analysis.groups:
        for mem in g.params:
            comps = analysis.slot_comps[(mem.tensor, mem.axis)]
            drop = np.nonzero(~keep[comps])[0]
            if len(drop):
                edits.setdefault(mem.tensor, []).append((mem.axis, drop, mem.neutral))
    for i, t in enumerate(m.graph.initializer):
        if t.name in edits:
            arr = numpy_helper.to_array(t).copy()
            for axis, drop, neutral in edits[t.name]:
                idx = [slice(None)] * arr.ndim
                idx[axis] = drop
                arr[tuple(idx)] = neutral
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, t.name))
    _mask_statistics(m, analysis, keep)
    return m


def _mask_statistics(m: onnx.ModelProto, analysis: Analysis, keep: np.ndarray) -> None:
    """Lossy groups (channels normalised together): in the zeroed model, make every statistic over such an
    axis ignore the removed channels, as the pruned model does: each such node is replaced by what its rule's
    `mask_statistics` hook builds (ReduceMean: a masked sum over the kept count; LayerNormalization/RMS norms:
    their decomposition with the deviations masked). Then zeroed == pruned holds exactly for lossy groups too."""
    if not analysis.lossy_sites:
        return
    g = m.graph
    by_out = {n.output[0]: i for i, n in enumerate(g.node) if n.output}
    new_nodes: dict[int, list[onnx.NodeProto]] = {}
    inits: list[onnx.TensorProto] = []
    for out, x, axis in analysis.lossy_sites:
        comps = analysis.slot_comps.get((x, axis))
        i = by_out.get(out)
        if comps is None or i is None or keep[comps].all():
            continue
        node = g.node[i]
        rule = analysis.rules.rule_for(node)
        r = len(analysis.view.shape(x) or ())
        mask = keep[comps].astype(np.float32).reshape([-1] + [1] * (r - 1 - axis))
        sm = StatsMask(f"{out}__spa_mask", axis, analysis.view.opset)
        sm.constant("_m", mask)
        sm.constant("_k", np.array(1.0 / float(mask.sum()), np.float32))
        sm.constant("_ax", np.array([axis], np.int64))
        nodes = rule.mask_statistics(node, sm) if rule is not None else None
        if nodes is None:
            continue
        new_nodes[i] = nodes
        inits += sm.inits
    if not new_nodes:
        return
    rebuilt = []
    for i, n in enumerate(g.node):
        rebuilt.extend(new_nodes.get(i, [n]))
    del g.node[:]
    g.node.extend(rebuilt)
    g.initializer.extend(inits)


def to_double(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same computation in float64 (initializers, graph inputs/outputs, Cast targets, ConstantOfShape),
    for the reference evaluator: the oracle then measures pruning, not float32 rounding noise."""
    F, D = onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    keep_float = set()
    for n in g.node:  # Resize/Upsample scales and roi stay float32 by the operator's type constraints
        if n.op_type in ("Resize", "Upsample"):
            keep_float.update(n.input[1:])
    for i, t in enumerate(g.initializer):
        if t.data_type == F and t.name not in keep_float:
            g.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    for v in list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == F and v.name not in keep_float:
            v.type.tensor_type.elem_type = D
    del g.value_info[:]
    for n in g.node:
        for a in n.attribute:
            if n.op_type in ("Cast", "RandomNormalLike", "EyeLike") and a.name in ("to", "dtype") and a.i == F:
                a.i = D
            if n.op_type == "ConstantOfShape" and a.name == "value" and a.t.data_type == F:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float64)))
    return m


def run_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, feeds)


def oracle_error(
    analysis: Analysis,
    keep: np.ndarray,
    pruned: onnx.ModelProto,
    seed: int = 0,
    batch: int = 2,
    precision: str = "float32",
    overrides: dict[str, np.ndarray] | None = None,
    floor: float = 1e-6,
) -> float:
    """Largest |zeroed − pruned| over all outputs, relative to the largest |zeroed| output value (at least
    `floor`).

    precision "float32": both models in onnxruntime as they are; "float64": both converted to double and run
    by onnx's reference evaluator (small models; removes rounding noise of ill-conditioned graphs)."""
    return oracle_errors(analysis, keep, pruned, seed, batch, precision, overrides, (floor,))[0]


def oracle_errors(
    analysis: Analysis,
    keep: np.ndarray,
    pruned: onnx.ModelProto,
    seed: int = 0,
    batch: int = 2,
    precision: str = "float32",
    overrides: dict[str, np.ndarray] | None = None,
    floors: tuple[float, ...] = (1e-6,),
) -> list[float]:
    """`oracle_error` for several floors from one run (the self-check also judges with floor 1, so that
    probabilities saturated near 0 do not turn float noise into a large relative error)."""
    z = zeroed_model(analysis, keep, overrides)
    feeds = _runnable_feeds(z, seed, batch)
    if precision == "float64":
        zd, pd = to_double(z), to_double(pruned)
        feeds = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in feeds.items()}
        a = run_reference(zd, feeds)
        b = run_reference(pd, feeds)
    else:
        a = run(z, feeds)
        b = run(pruned, feeds)
    worst = [0.0] * len(floors)
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return [float("inf")] * len(floors)
        x = x.astype(np.float64)
        y = y.astype(np.float64)
        diff = float(np.abs(x - y).max(initial=0.0))
        top = float(np.abs(x).max(initial=0.0))
        worst = [max(w, diff / max(top, f)) for w, f in zip(worst, floors)]
    return worst
