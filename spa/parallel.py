"""Independent onnxruntime runs (the batches of a calibration pass) spread over the cores, one single-threaded run
per core, results in order.

Why not onnxruntime's own threads: on PP-OCRv4 rec (96 calibration inputs, batches of 8, 2 cores) one session with
2 intra-op threads ran them in 1.78 s, one thread 2.09 s, and two single-threaded runs side by side 1.06 s: most of
its ops (depthwise and pointwise convs on small maps) leave the second thread idle. The numpy work on each batch's
results (im2col rows, Gram products) then runs beside the next batches' runs instead of after them.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_WORKERS = 8  # a bound, not a measured optimum (measured on 2 cores only): each stream holds a batch's values


def workers() -> int:
    """Concurrent runs: the cores this process may use, at most MAX_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], n_workers: int, ahead: int | None = None) -> Iterator[R]:
    """fn over items on `n_workers` threads (fn should release the GIL: an onnxruntime run does), yielded in
    order. While the caller works on one result, `ahead` more (default n_workers) are under way or wait unread:
    ahead + 1 results exist at once at most, and the runs go on while the caller is busy. With one worker, a
    plain map on the calling thread."""
    if n_workers <= 1:
        yield from map(fn, items)
        return
    ahead = max(n_workers, ahead or 0)
    it = iter(items)
    pool = _pool(n_workers)
    pending: deque[Future[R]] = deque(pool.submit(fn, x) for _, x in zip(range(ahead), it))
    try:
        while pending:
            done = pending.popleft().result()
            for x in it:  # one more under way for each one handed out
                pending.append(pool.submit(fn, x))
                break
            yield done
            del done
    finally:
        for f in pending:  # the caller stopped early (or failed): do not run what nobody reads
            f.cancel()


@cache
def _pool(n_workers: int) -> ThreadPoolExecutor:
    """One pool per size for the whole process: a calibrated prune maps over batches some 60 times (every segment
    of the re-fit), and starting two threads each time cost 0.16 s of PP-OCRv4 rec's."""
    return ThreadPoolExecutor(n_workers, thread_name_prefix="spa-run")


@contextmanager
def blas_single_threaded() -> Iterator[None]:
    """numpy's and scipy's BLAS on one thread each, for a data criterion's stages (statistics, plan, updates):
    after each product OpenBLAS's idle threads spin for a while, taking the cores from the onnxruntime runs
    beside them and from the other library's threads (numpy and scipy each bring an OpenBLAS: a Cholesky
    factorisation in scipy's ran beside numpy's spinning threads). PP-OCRv4 rec on 2 cores, calibrated prune at
    0.5 with the batches already side by side (benchmarks/obspa_calib_fast.py --time-only, top priority): 5.60 s
    wall and 7.50 s CPU with BLAS on one thread (OPENBLAS_NUM_THREADS=1), 6.54 s and 11.38 s on two.

    scipy's BLAS is loaded first: threadpoolctl limits the libraries loaded when the block starts, and obspa's
    first inverse (spa.calib.spd_inverse, through spa.lapack) loaded scipy's inside it, so the first prune of a
    process (every `spa prune` command) ran its Cholesky factorisations on two threads: other float rounding than
    every later prune of the same process (PP-OCRv4 rec, calibrated at 0.5: other bytes), as well as slower."""
    from threadpoolctl import threadpool_limits  # imported here: a plain magnitude prune never needs it

    from . import lapack

    lapack.available()  # loads scipy's LAPACK, and with it its BLAS (where scipy is installed)
    with threadpool_limits(1, user_api="blas"):
        yield
