"""Measure ONNX models the way a user deploying with onnxruntime sees them: parameters, MACs, file size,
latency of `InferenceSession.run` (ORT_ENABLE_ALL, a chosen provider / batch / thread count) and the peak
resident memory of a fresh process that loads the model and runs it.

    bench(path, provider="cpu", batch=1, threads=1, warmup=5, runs=30) -> Bench
    compare([original, pruned, ...], **same) -> list[Bench]      # interleaved timing, input order
    table_rows(benches) -> list[dict]                            # ratios vs the first model
    format_table(rows) -> str                                    # plain-text table of those rows

Latency is wall time of `sess.run(None, feeds)` with `time.perf_counter` (intra-op thread spinning off by
default, see `compare`), inputs from `spa.verify.random_inputs` (a symbolic batch is `batch`; symbolic image
or sequence sizes the first size the model runs at, or `--input-shape`; the size timed is in `input_shapes`). With CUDA the feeds are numpy arrays, so a timed run includes the host↔device copies, as in a plain `sess.run` deployment.

Peak memory: each model is loaded and run (warmup + 1 runs) by a fresh Python process that imports only numpy
and onnxruntime. That process is started by a small fresh wrapper interpreter, which reports
`getrusage(RUSAGE_CHILDREN).ru_maxrss` for its one child: the measurements include neither this process's
memory (a child forked directly from here would inherit its high-water mark) nor each other's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadArgument, BadModel

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass
class Bench:
    path: str
    params: int
    macs: int  # per sample (symbolic batch counted as 1), as spa.report.model_stats
    macs_by_op: dict[str, int]
    size_bytes: int  # model file plus any external data it references
    provider: str  # "CPUExecutionProvider" or "CUDAExecutionProvider"
    batch: int
    threads: int  # intra_op_num_threads (0 = onnxruntime's default)
    latency_ms: list[float] = field(default_factory=list)  # every timed run, in order
    median_ms: float = 0.0
    p10_ms: float = 0.0
    p90_ms: float = 0.0
    peak_rss_mb: float = 0.0  # 0.0 when not measured (memory=False)
    spin: bool = False  # session.intra_op.allow_spinning (see compare)
    input_shapes: dict[str, list[int]] = field(default_factory=dict)  # the dims of the timed inputs

    @property
    def name(self) -> str:
        return Path(self.path).name

    def as_dict(self) -> dict:
        return asdict(self)


def providers_available() -> list[str]:
    """"cpu", plus "cuda" when onnxruntime has the CUDAExecutionProvider."""
    import onnxruntime as ort

    out = ["cpu"]
    if PROVIDERS["cuda"] in ort.get_available_providers():
        out.append("cuda")
    return out


def _check(provider: str, batch: int, threads: int, warmup: int, runs: int) -> None:
    if provider not in PROVIDERS:
        raise BadArgument(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    if provider not in providers_available():
        raise BadArgument(
            "provider 'cuda' requested but this onnxruntime has no CUDAExecutionProvider "
            "(install onnxruntime-gpu on a machine with a GPU, or use provider 'cpu')"
        )
    for name, v, lo in (("batch", batch, 1), ("threads", threads, 0), ("warmup", warmup, 0), ("runs", runs, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise BadArgument(f"{name} must be an integer ≥ {lo}, got {v!r}")


def _session_options(threads: int, spin: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return so


def _provider_list(provider: str) -> list[str]:
    return [PROVIDERS["cuda"], PROVIDERS["cpu"]] if provider == "cuda" else [PROVIDERS["cpu"]]


def _session(path: str, provider: str, threads: int, spin: bool):
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(path, _session_options(threads, spin), providers=_provider_list(provider))
    except Exception as e:  # noqa: BLE001 - turned into a one-line user error
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise BadModel(f"{path}: onnxruntime cannot load the model ({msg})") from None
    if provider == "cuda" and PROVIDERS["cuda"] not in sess.get_providers():
        raise BadArgument(
            f"{path}: CUDAExecutionProvider could not be initialised (CUDA/cuDNN libraries missing?); "
            "onnxruntime fell back to CPU"
        )
    return sess


def _size_on_disk(path: Path) -> int:
    import onnx

    size = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)  # modelfile.load drops the external-data references
    seen = set()
    for t in model.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location" and kv.value not in seen:
                seen.add(kv.value)
                f = path.parent / kv.value
                if f.exists():
                    size += f.stat().st_size
    return size


@dataclass
class _Prepared:
    path: str
    params: int
    macs: int
    macs_by_op: dict[str, int]
    size_bytes: int
    feeds: dict[str, np.ndarray]


def _prepare(path: str | os.PathLike[str], batch: int, at: dict[str, list[int]] | None = None) -> _Prepared:
    """Load a model, make its timed inputs (`at`: the dims of each graph input) and count it (MACs per sample
    at the same size with batch 1)."""
    from .. import modelfile
    from ..report import model_stats
    from ..verify import random_inputs
    from ..view import ModelView

    p = Path(path)
    model = modelfile.load(p)
    feeds = random_inputs(model, batch=batch, shapes=at)
    size = _size_on_disk(p)
    modelfile.lift_constants(model)  # as spa's analyze/prune reports count them
    per_sample = None if at is None else {k: _with_batch(model, k, v, 1) for k, v in at.items()}
    st = model_stats(ModelView.build(model), size, at=per_sample)
    return _Prepared(str(path), st.params, st.macs, dict(st.macs_by_op), size, feeds)


def timing_shapes(path: str | os.PathLike[str], batch: int, input_shape: list[str] | None = None
                  ) -> dict[str, list[int]] | None:
    """The input dims to time at: `--input-shape` where given (its batch replaced by `batch` where the model's
    batch is symbolic), symbolic image/sequence dims at the first size the model runs at (the search
    verification does); None for a model whose sizes are all static."""
    from .. import modelfile, verify

    model = modelfile.load(Path(path))
    shapes = verify.parse_input_shapes(input_shape, model) if input_shape else None
    if not verify.has_free_dims(model) and not shapes:
        return None
    size = None
    if verify.has_free_dims(model):
        size = verify.runnable_size(model, shapes=shapes)
        if size is None and not shapes:
            raise BadModel(f"{path}: onnxruntime cannot run the model at any of the sizes tried for its symbolic "
                           f"dims ({', '.join(map(str, verify.OTHER_SIZES))}); give --input-shape NAME=dims")
    dims = verify.input_shapes(model, size, batch=batch, shapes=shapes)
    return {k: _with_batch(model, k, v, batch) for k, v in dims.items()}


def _with_batch(model, name: str, dims: list[int], batch: int) -> list[int]:
    """`dims` with the first set to `batch` when that input's first dim is symbolic."""
    inp = next(i for i in model.graph.input if i.name == name)
    d0 = inp.type.tensor_type.shape.dim[:1]
    return [batch, *dims[1:]] if dims and (not d0 or not d0[0].dim_value) else list(dims)


_CHILD = r"""
import json, sys
import numpy as np
import onnxruntime as ort
path, npz, names, providers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
threads, runs, spin = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
so = ort.SessionOptions()
so.log_severity_level = 3
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.intra_op_num_threads = threads
so.add_session_config_entry("session.intra_op.allow_spinning", spin)
sess = ort.InferenceSession(path, so, providers=providers)
with np.load(npz) as z:
    feeds = {n: z["arr_%d" % i] for i, n in enumerate(names)}
for _ in range(runs):
    sess.run(None, feeds)
"""


# A fresh, small interpreter (no site, no numpy) that runs the measuring child and reports its peak RSS. The
# indirection matters: a child forked (or vforked) straight from this process starts with this process's RSS
# as its high-water mark on Linux, so its ru_maxrss would include every model this process has loaded.
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], stdout=sys.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(r.returncode)\n"
)


def _peak_rss_mb(prep: _Prepared, provider: str, threads: int, runs: int, spin: bool) -> float:
    """Peak RSS (MiB) of a fresh process that loads the model in onnxruntime and runs it `runs` times."""
    names = list(prep.feeds)
    with tempfile.TemporaryDirectory(prefix="spa-bench-") as d:
        npz = os.path.join(d, "feeds.npz")
        np.savez(npz, *[prep.feeds[n] for n in names])
        child = [
            sys.executable, "-c", _CHILD, prep.path, npz, json.dumps(names),
            json.dumps(_provider_list(provider)), str(threads), str(max(1, runs)), "1" if spin else "0",
        ]
        wrapper = [sys.executable, "-I", "-S", "-c", _WRAPPER]
        r = subprocess.run(wrapper + child, check=False, capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        err = r.stderr.strip().splitlines()
        raise BadModel(f"{prep.path}: memory measurement process failed ({(err or ['no output'])[-1][:300]})")
    maxrss = int(lines[-1])
    kib = maxrss / 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS, KiB on Linux
    return kib / 1024


def compare(
    paths: list[str | os.PathLike[str]],
    *,
    provider: str = "cpu",
    batch: int = 1,
    threads: int = 1,
    warmup: int = 5,
    runs: int = 30,
    memory: bool = True,
    spin: bool = False,
    input_shape: list[str] | None = None,
) -> list[Bench]:
    """Measure every model; results in input order. All sessions are created and warmed up first, then each
    timed round runs every model once, round-robin (starting one model later each round), so machine noise
    hits all of them alike. Peak memory is measured afterwards, one fresh process per model. Every model is
    timed at the same input dims (`timing_shapes` of the first; `input_shape`: `--input-shape` strings).

    `spin`: onnxruntime's intra-op worker threads busy-wait after a run (its default). Off by default here:
    with several sessions alive and threads > 1, the idle sessions' spinning workers steal the cores of the
    one being timed (resnet50, 2 cores, threads 2: 77 ms interleaved vs 39 ms alone with spinning; 43 ms vs
    39 ms without). Alone, spinning changes latency by a few percent."""
    _check(provider, batch, threads, warmup, runs)
    if not paths:
        return []
    at = timing_shapes(paths[0], batch, input_shape)
    preps = [_prepare(p, batch, at) for p in paths]
    sessions = [_session(p.path, provider, threads, spin) for p in preps]
    for s, p in zip(sessions, preps):
        for _ in range(warmup):
            s.run(None, p.feeds)
    n = len(preps)
    lat: list[list[float]] = [[] for _ in preps]
    clock = time.perf_counter
    for r in range(runs):
        for k in range(n):
            i = (r + k) % n
            s, feeds = sessions[i], preps[i].feeds
            t0 = clock()
            s.run(None, feeds)
            lat[i].append((clock() - t0) * 1e3)
    del sessions
    out = []
    for p, ms in zip(preps, lat):
        p10, med, p90 = (float(v) for v in np.percentile(ms, [10, 50, 90]))
        rss = _peak_rss_mb(p, provider, threads, warmup + 1, spin) if memory else 0.0
        out.append(
            Bench(
                path=p.path,
                params=p.params,
                macs=p.macs,
                macs_by_op=p.macs_by_op,
                size_bytes=p.size_bytes,
                provider=PROVIDERS[provider],
                batch=batch,
                threads=threads,
                latency_ms=ms,
                median_ms=med,
                p10_ms=p10,
                p90_ms=p90,
                peak_rss_mb=rss,
                spin=spin,
                input_shapes={k: list(v.shape) for k, v in p.feeds.items()},
            )
        )
    return out


def bench(
    path: str | os.PathLike[str],
    *,
    provider: str = "cpu",
    batch: int = 1,
    threads: int = 1,
    warmup: int = 5,
    runs: int = 30,
    memory: bool = True,
    spin: bool = False,
    input_shape: list[str] | None = None,
) -> Bench:
    """Measure one model (see the module docstring and `compare`)."""
    return compare([path], provider=provider, batch=batch, threads=threads, warmup=warmup, runs=runs,
                   memory=memory, spin=spin, input_shape=input_shape)[0]


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def table_rows(benches: list[Bench]) -> list[dict]:
    """One row per model. `*_ratio` = this / first; `speedup` = first.median_ms / this.median_ms. A ratio whose
    denominator is 0 (e.g. memory not measured) is None."""
    if not benches:
        return []
    b0 = benches[0]
    rows = []
    for b in benches:
        rows.append(
            {
                "model": b.name,
                "path": b.path,
                "params": b.params,
                "params_ratio": _ratio(b.params, b0.params),
                "macs": b.macs,
                "macs_ratio": _ratio(b.macs, b0.macs),
                "size_bytes": b.size_bytes,
                "size_ratio": _ratio(b.size_bytes, b0.size_bytes),
                "median_ms": b.median_ms,
                "p10_ms": b.p10_ms,
                "p90_ms": b.p90_ms,
                "latency_ratio": _ratio(b.median_ms, b0.median_ms),
                "speedup": _ratio(b0.median_ms, b.median_ms),
                "peak_rss_mb": b.peak_rss_mb,
                "rss_ratio": _ratio(b.peak_rss_mb, b0.peak_rss_mb),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain-text table of `table_rows` output (no colours, fixed-width columns)."""
    from ..report import human

    def ms(v: float) -> str:
        return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"

    def r(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}x"

    head = ["model", "params", "", "MACs", "", "size", "", "median ms", "p10-p90 ms", "speed-up", "peak RSS MB"]
    body = []
    for x in rows:
        body.append(
            [
                x["model"],
                human(x["params"]), r(x["params_ratio"]),
                human(x["macs"]), r(x["macs_ratio"]),
                human(x["size_bytes"], "B"), r(x["size_ratio"]),
                ms(x["median_ms"]), f"{ms(x['p10_ms'])}-{ms(x['p90_ms'])}",
                r(x["speedup"]),
                f"{x['peak_rss_mb']:.0f}" if x["peak_rss_mb"] else "-",
            ]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    lines = []
    for i, row in enumerate([head] + body):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
