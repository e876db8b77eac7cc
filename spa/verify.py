"""Checks on emitted models: onnx.checker, shape inference, an onnxruntime session that runs, and the
zero-group oracle (prune = zero the same channels in the original, outputs must agree)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .analysis import Analysis
from .errors import VerificationFailed
from .graph import random_array

_NP = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
}


def random_inputs(model: onnx.ModelProto, seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
    """Deterministic inputs for every graph input: symbolic dims become `batch` (first axis) or 1."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        shape = []
        for k, d in enumerate(tt.shape.dim):
            shape.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (batch if k == 0 else 1))
        feeds[inp.name] = random_array(rng, shape, _NP.get(tt.elem_type, np.float32))
    return feeds


def session(model: onnx.ModelProto | bytes, optimize: bool = False, threads: int = 0):
    """An onnxruntime CPU session (no graph optimisation by default: the model runs as written). `model` may
    be the proto already serialised (bytes), so a caller that also checks or writes it serialises it once."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def session_from_file(path: str, threads: int = 0):
    """An onnxruntime CPU session read from a file (external data is mapped from disk, not copied through a
    serialised proto)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_model_file(path: str, model: onnx.ModelProto, original: onnx.ModelProto | None = None,
                     original_path: str | None = None) -> None:
    """`check_model` for a model written with external data (`model` is its proto as written, weights not
    loaded): onnx.checker and onnxruntime both read it from `path`, so no serialised copy of the weights is
    ever made."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        if original is None or _passes_checker(original):
            raise VerificationFailed(f"pruned model fails onnx.checker: {_first_line(e)}") from None
    feeds = random_inputs(model)
    try:
        outs = session_from_file(path).run(None, feeds)
    except Exception as e:
        if original_path is not None:
            try:
                session_from_file(original_path).run(None, feeds)
            except Exception as e0:
                raise VerificationFailed(
                    f"onnxruntime cannot run the original model either ({_first_line(e0)}), so the pruned "
                    "model cannot be verified; nothing was written"
                ) from None
        raise VerificationFailed(f"pruned model does not run in onnxruntime: {_first_line(e)}") from None
    if original is not None:
        _check_output_shapes(outs, original)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return session(model).run(None, feeds)


def check_model(model: onnx.ModelProto, original: onnx.ModelProto | None = None, *, blob: bytes | None = None) -> None:
    """onnx.checker (full), strict shape inference, and one onnxruntime run whose outputs keep the original's
    shapes. Raises VerificationFailed with a one-line reason. `blob`: `model` already serialised (the checker
    and onnxruntime then share it instead of serialising the proto twice)."""
    if blob is None:
        blob = model.SerializeToString()
    try:
        onnx.checker.check_model(blob, full_check=True)
    except Exception as e:
        # a model that was already invalid is not held to a stricter standard than it met; the onnxruntime
        # run below still has to succeed
        if original is None or _passes_checker(original):
            raise VerificationFailed(f"pruned model fails onnx.checker: {_first_line(e)}") from None
    feeds = random_inputs(model)
    try:
        outs = session(blob).run(None, feeds)
    except Exception as e:
        if original is not None:
            try:
                run(original, feeds)
            except Exception as e0:
                raise VerificationFailed(
                    f"onnxruntime cannot run the original model either ({_first_line(e0)}), so the pruned "
                    "model cannot be verified; nothing was written"
                ) from None
        raise VerificationFailed(f"pruned model does not run in onnxruntime: {_first_line(e)}") from None
    if original is not None:
        _check_output_shapes(outs, original)


def _check_output_shapes(outs: list[np.ndarray], original: onnx.ModelProto) -> None:
    for o, info in zip(outs, original.graph.output):
        dims = info.type.tensor_type.shape.dim
        want = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if len(want) != o.ndim or any(w is not None and w != g for w, g in zip(want, o.shape)):
            raise VerificationFailed(f"output '{info.name}' changed shape: declared {want}, got {list(o.shape)}")


def _passes_checker(model: onnx.ModelProto) -> bool:
    from .graph import _skeleton

    try:
        onnx.checker.check_model(_skeleton(model), full_check=True)
        return True
    except Exception:
        return False


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]


def zeroed_model(analysis: Analysis, keep: np.ndarray) -> onnx.ModelProto:
    """The original model with every removed channel made inert in every initializer member of its group:
    producer rows, biases, norm scales/shifts, consumer columns (0; 1 for divisors and variances)."""
    m = onnx.ModelProto()
    m.CopyFrom(analysis.view.model)
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
    return m


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
) -> float:
    """Largest |zeroed − pruned| over all outputs, relative to the largest |zeroed| output value.

    precision "float32": both models in onnxruntime as they are; "float64": both converted to double and run
    by onnx's reference evaluator (small models; removes rounding noise of ill-conditioned graphs)."""
    z = zeroed_model(analysis, keep)
    feeds = random_inputs(z, seed=seed, batch=batch)
    if precision == "float64":
        zd, pd = to_double(z), to_double(pruned)
        feeds = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in feeds.items()}
        a = run_reference(zd, feeds)
        b = run_reference(pd, feeds)
    else:
        a = run(z, feeds)
        b = run(pruned, feeds)
    worst = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return float("inf")
        x = x.astype(np.float64)
        y = y.astype(np.float64)
        scale = max(float(np.abs(x).max(initial=0.0)), 1e-6)
        worst = max(worst, float(np.abs(x - y).max(initial=0.0)) / scale)
    return worst
