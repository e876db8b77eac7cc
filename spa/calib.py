"""Second-order statistics of the layers that consume prunable channels, for calibration-aware criteria.

A *consumer* is a node that mixes channels with an initializer weight: Conv (group 1; im2col view, one column
per input channel × kernel position), Gemm (transA/transB honoured), MatMul with a 2-D initializer on the
right. Its weight is seen as a matrix W (rows = outputs, columns = inputs), optionally with its bias as one more
column fed by a constant 1, and its input statistics as H = Σ x xᵀ over input rows x (patches for Conv).

Where the inputs come from (`source`):
- "calib": real inputs from a `.npz` file (arrays keyed by graph input name, first axis = samples);
- "noise": standard normal inputs pushed through the model (data-free);
- "binary" (the default): for image inputs (N, C, H, W), two-level synthetic images: a spatially correlated
  field (1/f² power spectrum plus flat rectangles and thin strokes) thresholded so that 5-50 % of the pixels
  are -1 and the rest +1: sharp-edged shapes on a flat background; other inputs as "noise" (data-free);
- "structured": for image inputs, the same field kept continuous (natural-image statistics: the 1/f² spectrum
  of photographs and scans) at unit variance around a random brightness; other inputs as "noise" (data-free);
- "bn": analytic E[x xᵀ] from BatchNorm statistics where a consumer's input is BatchNorm (→ Relu): a channel is
  N(β, γ²), rectified by the Relu; channels and positions independent. Consumers without such a chain keep
  the "noise" statistics (data-free);
- "bn-synth": inputs optimised (through the ONNX → torch round trip) so that every BatchNorm's input batch
  statistics match its running mean/var (data-free, DeepInversion-style); then as "noise".

Activations are collected with onnxruntime (the consumers' inputs become extra graph outputs), in batches, and
H is accumulated per consumer: activations are never all held in memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .analysis import Analysis
from .errors import BadArgument
from .priors import PRIORS

log = logging.getLogger(__name__)

SOURCES = ("binary", "noise", "structured", "bn", "bn-synth", *PRIORS, "calib")  # PRIORS: spa/priors.py
DEFAULT_SOURCE = "binary"  # measured best data-free source: benchmarks/obspa_{digits,ocr}.txt
ROWS_PER_BATCH = 4096  # im2col rows kept per consumer and batch (a random subset beyond that)...
ROWS_TOTAL = 16384  # ...or fewer when there are many batches: about this many rows per consumer in all
# Synthetic samples per data-free source. More samples, not more rows, steady the result: PP-OCRv4 rec at 0.2
# (benchmarks/obspa_ocr.txt, "binary" over seeds 0-7) spreads 0.877-0.940 with 32 samples, 0.898-0.934 with
# 128 (min 90.4 % of the original's accuracy).
DATA_FREE_SAMPLES = 128
BN_SYNTH_SAMPLES = 32  # bn-synth optimises its inputs through torch: 4x the samples, 4x the minutes


@dataclass
class Consumer:
    """One channel-mixing layer, with its weight as a (rows = outputs, columns = inputs) matrix."""

    node: int
    op: str
    x: str  # the input tensor whose channels are consumed
    weight: str  # initializer name
    in_axis: int  # axis of the initializer that runs over input channels
    bias: str | None = None  # a 1-D initializer added to the outputs (compensated with the constant column)
    kernel: tuple[int, ...] = ()  # Conv
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    trans_a: bool = False
    H: np.ndarray | None = field(default=None, repr=False)  # (D + has_bias)², float64
    rows: int = 0
    _hinv: np.ndarray | None = field(default=None, repr=False)

    @property
    def per_index(self) -> int:
        """Columns per input channel index (kernel positions for Conv)."""
        return int(np.prod(self.kernel)) if self.kernel else 1

    def matrix(self, w: np.ndarray) -> np.ndarray:
        """The initializer as (outputs, columns)."""
        if self.op == "Conv":
            return w.reshape(w.shape[0], -1)
        return np.moveaxis(w, self.in_axis, 1).reshape(-1, w.shape[self.in_axis]) if w.ndim == 2 else w

    def from_matrix(self, m: np.ndarray, like: np.ndarray) -> np.ndarray:
        if self.op == "Conv":
            return m.reshape(like.shape)
        return np.moveaxis(m, 1, self.in_axis).copy() if self.in_axis == 0 else m

    def columns(self, index: np.ndarray) -> np.ndarray:
        """Column ids of input channel indices."""
        k = self.per_index
        return (np.asarray(index)[:, None] * k + np.arange(k)[None, :]).reshape(-1)

    def damped(self, damp: float) -> np.ndarray:
        assert self.H is not None
        H = self.H / max(1, self.rows)  # a new array: the damping is added to its diagonal in place
        d = float(np.mean(np.diag(H)))
        H[np.diag_indices_from(H)] += damp * d if d > 0 else 1e-8
        return H

    def hinv(self, damp: float) -> np.ndarray:
        if self._hinv is None:
            self._hinv = spd_inverse(self.damped(damp))
        return self._hinv

    def rows_of(self, x: np.ndarray, rng: np.random.Generator, limit: int = ROWS_PER_BATCH) -> np.ndarray:
        """Input rows (one per output position) of a batch of this consumer's input (a random `limit` of them)."""
        if self.op == "Conv":
            r = _im2col(x, self.kernel, self.strides, self.pads, self.dilations, limit, rng)
        elif self.op == "Gemm":
            r = x.T if self.trans_a else x
        else:
            r = x.reshape(-1, x.shape[-1])
        if len(r) > limit:
            r = r[np.sort(rng.choice(len(r), limit, replace=False))]
        r = r.astype(np.float32, copy=False)
        if self.bias is not None:
            r = np.concatenate([r, np.ones((len(r), 1), np.float32)], axis=1)
        return r

    def add(self, r: np.ndarray) -> None:
        h = (r.T @ r).astype(np.float64)
        self.H = h if self.H is None else self.H + h
        self.rows += len(r)


def spd_inverse(h: np.ndarray) -> np.ndarray:
    """Inverse of the damped (symmetric positive definite) H: single-precision LAPACK Cholesky potrf/potri when
    scipy is installed (2.1x faster than numpy's float64 inverse on a 4608² H here, relative difference 1e-6:
    the damping bounds the condition number), returned as float64; numpy's inverse otherwise or if the
    factorisation fails."""
    try:
        from scipy.linalg import lapack
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn in the dev install
        return np.linalg.inv(h)
    c, info = lapack.spotrf(h.astype(np.float32), lower=1)
    if info == 0:
        inv, info = lapack.spotri(c, lower=1)
        if info == 0 and np.isfinite(inv).all():
            return (np.tril(inv) + np.tril(inv, -1).T).astype(np.float64)
    return np.linalg.inv(h)


def _im2col(x: np.ndarray, kernel, strides, pads, dilations, limit: int | None = None,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """(N, C, *spatial) → (N·positions, C·prod(kernel)), columns ordered like W.reshape(M, -1). With `limit`,
    only a random `limit` of the rows (in order), gathered without building the others."""
    nd = len(kernel)
    pad_width = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)]
    xp = np.pad(x, pad_width)
    span = [dilations[i] * (kernel[i] - 1) + 1 for i in range(nd)]
    win = np.lib.stride_tricks.sliding_window_view(xp, span, axis=tuple(range(2, 2 + nd)))
    sl = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides) + tuple(
        slice(None, None, d) for d in dilations
    )
    win = win[sl]  # (N, C, *out, *kernel)
    n, c = win.shape[:2]
    out = win.shape[2 : 2 + nd]
    perm = (0,) + tuple(range(2, 2 + nd)) + (1,) + tuple(range(2 + nd, 2 + 2 * nd))
    win = win.transpose(perm)  # (N, *out, C, *kernel), still a view
    rows = n * int(np.prod(out))
    if limit is not None and rows > limit:
        assert rng is not None
        pick = np.sort(rng.choice(rows, limit, replace=False))
        return win[np.unravel_index(pick, (n, *out))].reshape(limit, c * int(np.prod(kernel)))
    return win.reshape(rows, c * int(np.prod(kernel)))


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def find_consumers(a: Analysis) -> dict[tuple[str, int], Consumer]:
    """Consumers whose input-channel slot belongs to a prunable group, keyed by (weight, in_axis)."""
    view = a.view
    wanted = {(m.tensor, m.axis) for g in a.prunable for m in g.params if m.role == "in"}
    out: dict[tuple[str, int], Consumer] = {}
    for i, node in enumerate(view.model.graph.node):
        if len(node.input) < 2 or node.input[1] not in view.inits:
            continue
        w = node.input[1]
        wshape = view.shape(w)
        if wshape is None or view.inits[w].data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            continue
        c: Consumer | None = None
        if node.op_type == "Conv" and int(_attr(node, "group", 1)) == 1 and len(wshape) >= 3:
            xs = view.shape(node.input[0])
            if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or xs is None:
                continue
            nd = len(wshape) - 2
            c = Consumer(i, "Conv", node.input[0], w, 1, kernel=tuple(wshape[2:]),
                         strides=tuple(_attr(node, "strides", [1] * nd)),
                         pads=tuple(_attr(node, "pads", [0] * 2 * nd)),
                         dilations=tuple(_attr(node, "dilations", [1] * nd)))
            b = node.input[2] if len(node.input) > 2 and node.input[2] else None
            c.bias = b if b in view.inits else None
        elif node.op_type == "Gemm" and len(wshape) == 2:
            ax = 1 if _attr(node, "transB", 0) else 0
            c = Consumer(i, "Gemm", node.input[0], w, ax, trans_a=bool(_attr(node, "transA", 0)))
            b = node.input[2] if len(node.input) > 2 and node.input[2] else None
            n_out = wshape[1 - ax]
            if b in view.inits and view.shape(b) in ((n_out,), (1, n_out)) and float(_attr(node, "beta", 1.0)) != 0:
                c.bias = b
        elif node.op_type == "MatMul" and len(wshape) == 2:
            c = Consumer(i, "MatMul", node.input[0], w, 0)
            c.bias = _matmul_bias(view, node, wshape[1])
        if c is None or (w, c.in_axis) not in wanted or len(view.consumers.get(w, [])) != 1:
            continue
        if c.bias is not None and len(view.consumers.get(c.bias, [])) != 1:
            c.bias = None
        out[(w, c.in_axis)] = c
    return out


def _matmul_bias(view, node: onnx.NodeProto, n_out: int) -> str | None:
    """The 1-D initializer of an Add that alone consumes this MatMul's output (MatMul + Add = a linear layer)."""
    users = view.consumers.get(node.output[0], [])
    if len(users) != 1 or node.output[0] in view.graph_outputs:
        return None
    add = view.model.graph.node[users[0]]
    if add.op_type != "Add":
        return None
    other = [t for t in add.input if t != node.output[0]]
    if len(other) == 1 and other[0] in view.inits and view.shape(other[0]) == (n_out,):
        return other[0]
    return None


# ---------------------------------------------------------------- inputs


def load_calib(path: str | Path, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Calibration inputs from an .npz keyed by graph input name (first axis = samples). One-line errors."""
    inits = {t.name for t in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in inits}
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise BadArgument(f"--calib {path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a bad argument
        raise BadArgument(f"--calib {path}: not a readable .npz ({type(e).__name__})") from None
    missing = [n for n in inputs if n not in arrays]
    extra = [k for k in arrays if k not in inputs]
    if missing or extra:
        raise BadArgument(
            f"--calib {path}: arrays must be keyed by the graph inputs {sorted(inputs)}"
            + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else "")
        )
    n = {len(v) if v.ndim else 0 for v in arrays.values()}
    if len(n) != 1 or 0 in n:
        raise BadArgument(f"--calib {path}: every array needs the same number of samples on its first axis")
    from .verify import _NP

    for name, v in arrays.items():
        want = _NP.get(inputs[name].type.tensor_type.elem_type, np.float32)
        dims = inputs[name].type.tensor_type.shape.dim
        if v.ndim != len(dims) or any(
            d.HasField("dim_value") and d.dim_value > 0 and k > 0 and d.dim_value != v.shape[k] for k, d in enumerate(dims)
        ):
            raise BadArgument(f"--calib {path}: array {name!r} has shape {list(v.shape)}, the input is {_dims(dims)}")
        if v.dtype.kind != np.dtype(want).kind:
            raise BadArgument(f"--calib {path}: array {name!r} is {v.dtype}, the input wants {np.dtype(want)}")
        arrays[name] = v.astype(want, copy=False)
    return arrays


def _dims(dims) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def noise_inputs(view, n: int, seed: int, other: int = 1) -> dict[str, np.ndarray]:
    """Standard normal samples for every float graph input (static dims from the model, `other` for unknown
    ones); token ids uniform over their embedding table (or one-hot alphabet); (batch, length) integer inputs
    that index nothing (attention masks) padding masks; other integers 0/1."""
    from .graph import random_array
    from .verify import _NP

    rng = np.random.default_rng(seed)
    out = {}
    masks = []
    for inp in view.model.graph.input:
        if inp.name not in view.graph_inputs:
            continue
        s = view.shape(inp.name) or ()
        shape = [n] + [d if d else other for d in s[1:]]
        dt = _NP.get(inp.type.tensor_type.elem_type, np.float32)
        vocab = _vocabulary(view, inp.name)
        out[inp.name] = random_array(rng, shape, dt, int_high=vocab or 2)
        if vocab is None and len(shape) == 2 and np.dtype(dt).kind in "iu":
            masks.append(inp.name)
    # a padding mask per sample: ones for a random length, then zeros, as a tokenizer pads a batch. Random 0/1
    # masks make every token attend to a random half of the others, which no real input does; on
    # all-MiniLM-L6-v2 at 0.3 the padding masks gave cosine 0.826 vs 0.816 (selection sentences, 5 seeds) and
    # 0.784 vs 0.754 worst case on held-out sentences (benchmarks/generalise_{selection,minilm}.txt, "padded")
    mask_rng = np.random.default_rng((seed, 7))
    for name in masks:
        x = out[name]
        lengths = mask_rng.integers(1, x.shape[1] + 1, size=len(x))
        out[name] = (np.arange(x.shape[1])[None, :] < lengths[:, None]).astype(x.dtype)
    return out


def _vocabulary(view, name: str) -> int | None:
    """Rows of the initializer table that a Gather indexes with input `name` (an embedding), if any; else the
    depth of a one-hot encoding of it (OneHot with a constant depth, or Equal against a constant range through
    shape-only ops, as jax2tf writes it: Magika's 257 byte values), so that synthetic ids cover the alphabet."""
    for i in view.consumers.get(name, []):
        node = view.model.graph.node[i]
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name and node.input[0] in view.inits:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = view.inits[node.input[0]].dims
            return int(dims[axis]) if dims else None
    return _one_hot_depth(view, name)


_SHAPE_ONLY = ("Reshape", "Unsqueeze", "Expand", "Cast", "Identity", "Squeeze", "Flatten")


def _one_hot_depth(view, name: str, hops: int = 4) -> int | None:
    for i in view.consumers.get(name, []):
        node = view.model.graph.node[i]
        if node.op_type == "OneHot" and node.input[0] == name:
            depth = view.array(node.input[1])
            return int(np.asarray(depth).reshape(-1)[0]) if depth is not None else None
        if node.op_type == "Equal":
            other = view.array(node.input[1] if node.input[0] == name else node.input[0])
            if other is not None and np.asarray(other).size > 1:
                return int(np.asarray(other).max()) + 1
        if node.op_type in _SHAPE_ONLY and node.input[0] == name and hops > 0:
            depth = _one_hot_depth(view, node.output[0], hops - 1)
            if depth is not None:
                return depth
    return None


def _field(rng: np.random.Generator, c: int, h: int, w: int) -> np.ndarray:
    """One synthetic image (c, h, w), zero mean, unit variance: a 1/f² power spectrum (spatially correlated,
    like photographs and scans) with flat rectangles and thin strokes (edges, text-like marks) painted on."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    amp = 1.0 / np.maximum(np.sqrt(fy**2 + fx**2), 1.0 / max(h, w))  # 1/f amplitude = 1/f² power
    spec = amp * (rng.standard_normal((c, h, w // 2 + 1)) + 1j * rng.standard_normal((c, h, w // 2 + 1)))
    img = np.fft.irfft2(spec, s=(h, w))
    img = (img - img.mean()) / (img.std() + 1e-8)
    for _ in range(int(rng.integers(2, 8))):  # flat rectangles and thin strokes
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        if rng.random() < 0.5:
            hh, ww = int(rng.integers(1, max(2, h // 2))), int(rng.integers(1, max(2, w // 2)))
        else:
            hh, ww = (int(rng.integers(1, 3)), int(rng.integers(2, w))) if rng.random() < 0.5 \
                else (int(rng.integers(2, h)), int(rng.integers(1, 3)))
        img[:, y0:y0 + hh, x0:x0 + ww] = rng.normal(0.0, 1.5, size=(c, 1, 1))
    return (img - img.mean()) / (img.std() + 1e-8)


def _images(view, n: int, seed: int, other: int, make) -> dict[str, np.ndarray]:
    """"noise", but every image-shaped float input (N, C, H, W) gets `make(rng, field)` per sample."""
    out = noise_inputs(view, n, seed, other)
    rng = np.random.default_rng(seed + 1)
    for x in out.values():
        if x.ndim != 4 or x.dtype.kind != "f" or min(x.shape[2:]) < 4:
            continue
        for i in range(n):
            x[i] = make(rng, _field(rng, *x.shape[1:])).astype(x.dtype)
    return out


def structured_inputs(view, n: int, seed: int, other: int = 1) -> dict[str, np.ndarray]:
    """Synthetic natural-image-like samples: `_field` at unit contrast around a random brightness (images are
    rarely zero-mean: a scan is mostly white)."""
    return _images(view, n, seed, other, lambda rng, f: f + rng.uniform(-1.0, 1.0))


def binary_inputs(view, n: int, seed: int, other: int = 1) -> dict[str, np.ndarray]:
    """Two-level synthetic images: `_field` thresholded so that a minority of 5-50 % of the pixels is -1 and
    the rest +1 (±1σ of a normalised input): shapes with sharp edges on a flat background, like documents,
    line art, digits, masks."""
    def make(rng, f):
        return np.where(f > np.quantile(f, rng.uniform(0.05, 0.5)), 1.0, -1.0)

    return _images(view, n, seed, other, make)


def _batches(feeds: dict[str, np.ndarray], batch: int) -> Iterator[dict[str, np.ndarray]]:
    n = len(next(iter(feeds.values())))
    for i in range(0, n, batch):
        yield {k: v[i : i + batch] for k, v in feeds.items()}


# ---------------------------------------------------------------- collection


def collect(
    a: Analysis,
    source: str = DEFAULT_SOURCE,
    calib: dict[str, np.ndarray] | None = None,
    *,
    samples: int = DATA_FREE_SAMPLES,
    batch: int = 8,
    seed: int = 0,
    feeds: dict[str, np.ndarray] | None = None,
) -> dict[tuple[str, int], Consumer]:
    """H per consumer from the chosen source (see the module docstring). `feeds`: that source's inputs when
    the caller already made them (`source_feeds`), so that they are made once."""
    source = _effective_source(source, calib)
    cons = find_consumers(a)
    if not cons:
        return cons
    if feeds is None:
        feeds = source_feeds(a, source, calib, samples=samples, seed=seed)
    accumulate(a.view.model, cons, feeds, batch=batch, seed=seed)
    if source == "bn":
        bn_analytic(a.view, cons)
    return cons


def _effective_source(source: str, calib: dict[str, np.ndarray] | None) -> str:
    """"calib" when calibration inputs are given, else `source`; one-line errors for an unknown source or
    "calib" without inputs."""
    if source not in SOURCES:
        raise BadArgument(f"unknown calibration source {source!r} (choose from {', '.join(SOURCES)})")
    if calib is not None:
        return "calib"
    if source == "calib":
        raise BadArgument("source 'calib' needs calibration inputs (--calib FILE.npz)")
    return source


def source_feeds(a: Analysis, source: str, calib: dict[str, np.ndarray] | None, *, samples: int = DATA_FREE_SAMPLES,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """The inputs a source pushes through the model (deterministic for a seed)."""
    source = _effective_source(source, calib)
    if samples < 1:
        raise BadArgument(f"--calib-samples must be at least 1, got {samples}")
    if source == "calib":
        assert calib is not None
        return calib
    if source == "bn-synth":
        return bn_synth_inputs(a.view, min(samples, BN_SYNTH_SAMPLES), seed)
    other = _runnable_size(a.view, seed)
    if source in PRIORS:
        return PRIORS[source](a.view, samples, seed, other)
    if source == "structured":
        return structured_inputs(a.view, samples, seed, other)
    if source == "binary":
        return binary_inputs(a.view, samples, seed, other)
    return noise_inputs(a.view, samples, seed, other)


def _runnable_size(view, seed: int) -> int:
    """For symbolic non-batch dims (sequence length, image size): the first of 32, 64, 16, 8, 1 at which the
    model runs one synthetic sample (1 if none does, or if there are no such dims)."""
    from .verify import _has_free_dims, first_runnable_size

    if not _has_free_dims(view.model):
        return 1
    return first_runnable_size(view.model, lambda size: noise_inputs(view, 1, seed, size), (32, 64, 16, 8)) or 1


def session_with_outputs(model: onnx.ModelProto, names: list[str]):
    """An onnxruntime session of `model` in which the intermediate tensors `names` are graph outputs too."""
    from .verify import session

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend([onnx.ValueInfoProto(name=t) for t in names if t not in have])
    return session(m)


def accumulate(model: onnx.ModelProto, cons: dict[tuple[str, int], Consumer], feeds: dict[str, np.ndarray],
               *, batch: int = 8, seed: int = 0) -> None:
    """Run the model with every consumer input as an extra output; add each batch's rows to H."""
    names = sorted({c.x for c in cons.values()})
    sess = session_with_outputs(model, names)
    rng = np.random.default_rng(seed)
    n = len(next(iter(feeds.values())))
    limit = min(ROWS_PER_BATCH, max(256, -(-ROWS_TOTAL * batch // max(n, 1))))
    pending: dict[int, list[np.ndarray]] = {id(c): [] for c in cons.values()}
    for b in _batches(feeds, batch):
        vals = dict(zip(names, sess.run(names, b)))
        for c in cons.values():
            rows = pending[id(c)]
            rows.append(c.rows_of(np.asarray(vals[c.x]), rng, limit))
            if sum(map(len, rows)) >= ROWS_PER_BATCH:  # one big product beats many small ones
                c.add(np.concatenate(rows))
                rows.clear()
    for c in cons.values():
        if pending[id(c)]:
            c.add(np.concatenate(pending[id(c)]))


# ---------------------------------------------------------------- BatchNorm-based sources

_PASS = ("Identity", "Dropout", "MaxPool", "AveragePool")


def _bn_moments(view, x: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel mean and second moment of tensor x if it is BatchNorm → (Relu | Clip(0, ..)) (through
    pooling/identity ops, whose effect on the moments is ignored); None when the chain does not allow it."""
    nodes = view.model.graph.node
    relu = False
    t = x
    for _ in range(8):
        i = view.producer.get(t)
        if i is None:
            return None
        n = nodes[i]
        if n.op_type in _PASS:
            t = n.input[0]
            continue
        if n.op_type == "Relu" and not relu:
            relu, t = True, n.input[0]
            continue
        if n.op_type == "BatchNormalization" and all(s in view.inits for s in n.input[1:3]):
            gamma = view.array(n.input[1]).astype(np.float64)
            beta = view.array(n.input[2]).astype(np.float64)
            if not relu:
                return beta, beta**2 + gamma**2
            s = np.maximum(np.abs(gamma), 1e-12)
            z = beta / s
            pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
            cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
            mean = beta * cdf + s * pdf
            m2 = (beta**2 + s**2) * cdf + beta * s * pdf
            return mean, m2
        return None
    return None


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


def bn_analytic(view, cons: dict[tuple[str, int], Consumer]) -> int:
    """Replace H by the analytic E[x xᵀ] wherever the consumer's input is BatchNorm (→ Relu). Returns how many."""
    done = 0
    for c in cons.values():
        mom = _bn_moments(view, c.x)
        if mom is None:
            continue
        mean, m2 = mom
        k = c.per_index
        mu = np.repeat(mean, k)
        var = np.repeat(m2 - mean**2, k)
        if c.bias is not None:
            mu = np.append(mu, 1.0)
            var = np.append(var, 0.0)
        c.H = np.outer(mu, mu) + np.diag(var)
        c.rows = 1
        c._hinv = None
        done += 1
    log.info("bn: analytic statistics for %d of %d consumers", done, len(cons))
    return done


def bn_synth_inputs(view, n: int, seed: int, steps: int = 200, lr: float = 0.1) -> dict[str, np.ndarray]:
    """Inputs optimised so that every BatchNorm's input batch statistics match its running mean/var (Adam on
    the inputs, through the ONNX → torch round trip). Falls back to noise if the model has no BatchNorm or
    cannot be converted."""
    feeds = noise_inputs(view, n, seed)
    bns = [nd for nd in view.model.graph.node if nd.op_type == "BatchNormalization"
           and all(s in view.inits for s in nd.input[1:5])]
    if not bns or len(feeds) != 1:
        return feeds
    try:
        import torch

        from converters.onnx_to_torch import onnx_to_torch
    except Exception:  # noqa: BLE001 - optional (torch extra)
        log.warning("bn-synth needs torch and converters/; using noise inputs")
        return feeds
    m = onnx.ModelProto()
    m.CopyFrom(view.model)
    del m.graph.output[:]
    m.graph.output.extend([onnx.ValueInfoProto(name=nd.input[0]) for nd in bns])
    try:
        net = onnx_to_torch(m)
    except Exception as e:  # noqa: BLE001
        log.warning("bn-synth: model not convertible to torch (%s); using noise inputs", e)
        return feeds
    for p in net.parameters():
        p.requires_grad_(False)
    stats = [(torch.tensor(view.array(nd.input[3]), dtype=torch.float32),
              torch.tensor(view.array(nd.input[4]), dtype=torch.float32)) for nd in bns]
    (name, x0), = feeds.items()
    x = torch.tensor(x0, requires_grad=True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        outs = net(x)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        loss = torch.zeros(())
        for o, (mu, var) in zip(outs, stats):
            dims = [d for d in range(o.dim()) if d != 1]
            loss = loss + (o.mean(dims) - mu).pow(2).mean() / var.mean() + (o.var(dims) - var).pow(2).mean() / var.pow(2).mean()
        loss.backward()
        opt.step()
    log.info("bn-synth: BatchNorm statistics loss %.4g after %d steps", float(loss.detach()), steps)
    return {name: x.detach().numpy().astype(x0.dtype)}
