"""Prune one model at several ratios (in parallel processes), then measure all of them side by side.

    spa sweep model.onnx --ratios 0.1,0.3,0.5,0.7 --jobs 2 --plot sweep.png

Each ratio is an independent `spa.prune` in a worker process (`--jobs`); latency is measured afterwards in
one process, interleaved across the original and every pruned model (spa.tools.bench.compare), so the numbers are
comparable. The plot shows MACs and latency relative to the original against the ratio: they need not agree.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadArgument
from ..plan import check_ratio


@dataclass
class SweepPoint:
    ratio: float
    path: str
    params: int
    macs: int
    median_ms: float
    p10_ms: float
    p90_ms: float


def _prune_one(args: tuple[str, float, str, str, bool]) -> tuple[float, str]:
    model, ratio, criterion, out, global_ = args
    from .. import api

    api.prune(model, ratio=ratio, criterion=criterion, global_=global_, output=out)
    return ratio, out


def parse_ratios(text: str) -> list[float]:
    try:
        ratios = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadArgument(f"--ratios must be comma-separated numbers, got {text!r}") from None
    if not ratios:
        raise BadArgument("--ratios is empty")
    for r in ratios:
        check_ratio(r)
    return sorted(set(ratios))


def sweep(
    model: str,
    ratios: list[float],
    out_dir: str,
    *,
    criterion: str = "l1",
    global_: bool = False,
    jobs: int = 1,
    threads: int = 1,
    runs: int = 20,
) -> list[SweepPoint]:
    """Prune `model` at every ratio into `out_dir` (jobs in parallel) and bench them all together."""
    from .bench import compare
    from ..errors import WriteFailed
    from ..io_safety import check_io

    if jobs < 1:
        raise BadArgument(f"--jobs must be ≥ 1, got {jobs}")
    d = Path(out_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteFailed(f"cannot create {d}: {e.strerror or e}") from None
    stem = Path(model).stem
    tasks = [(model, r, criterion, str(d / f"{stem}_r{r:g}.onnx"), global_) for r in ratios]
    check_io(models=[model], writes=[("--out-dir entry", t[3]) for t in tasks])
    if jobs == 1:
        done = [_prune_one(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks), os.cpu_count() or 1)) as ex:
            done = list(ex.map(_prune_one, tasks))
    paths = [model] + [p for _, p in done]
    benches = compare(paths, threads=threads, runs=runs, warmup=3, memory=False)
    points = []
    for r, b in zip([0.0] + [r for r, _ in done], benches):
        points.append(SweepPoint(r, b.path, b.params, b.macs, b.median_ms, b.p10_ms, b.p90_ms))
    return points


def plot(points: list[SweepPoint], path: str, title: str = "") -> None:
    """MACs, params and median latency relative to the original, against the ratio (matplotlib, Agg)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadArgument("--plot needs matplotlib (pip install 'spa[plot]')") from None
    base = points[0]
    xs = [p.ratio for p in points]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.plot(xs, [p.macs / base.macs for p in points], "o-", label="MACs")
    ax.plot(xs, [p.params / base.params for p in points], "s--", label="params")
    ax.errorbar(
        xs,
        [p.median_ms / base.median_ms for p in points],
        yerr=[
            [(p.median_ms - p.p10_ms) / base.median_ms for p in points],
            [(p.p90_ms - p.median_ms) / base.median_ms for p in points],
        ],
        fmt="^-",
        capsize=3,
        label="latency (median, p10-p90)",
    )
    ax.set_xlabel("channel ratio removed per group")
    ax.set_ylabel("relative to the original")
    ax.set_ylim(0, 1.1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "spa sweep")
    fig.tight_layout()
    from ..io_safety import atomic_write

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png"), label="--plot")
    finally:
        plt.close(fig)
