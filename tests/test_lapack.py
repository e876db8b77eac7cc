"""The H inverses: spa.lapack gives scipy's own potrf / potri results without holding the GIL, obspa inverts each
consumer once, and the data criteria's BLAS limit covers scipy's BLAS even where the first prune loads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spa import calib, lapack
from spa.criteria import obspa

scipy_lapack = pytest.importorskip("scipy.linalg.lapack")
ROOT = Path(__file__).resolve().parents[1]


def _spd(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((3 * n, n)).astype(np.float32)
    h = x.T @ x
    h[np.diag_indices_from(h)] += 0.1
    return h


@pytest.mark.parametrize("n", [1, 17, 300])
def test_cholesky_inverse_is_scipys_to_the_bit(n: int) -> None:
    h = _spd(n, seed=n)
    c, info = scipy_lapack.spotrf(h, lower=1)
    assert info == 0
    ref, info = scipy_lapack.spotri(c, lower=1)
    assert info == 0
    assert lapack.available()
    low = lapack.cholesky_inverse_lower(h)
    assert low is not None and np.array_equal(low, np.tril(ref))
    full = calib.spd_inverse(h)
    assert np.allclose(full @ h, np.eye(n), atol=1e-3)
    assert np.array_equal(full, full.T)


def test_cholesky_inverse_refuses_what_is_not_positive_definite() -> None:
    h = _spd(8)
    h[3, 3] = -1.0
    assert lapack.cholesky_inverse_lower(h) is None
    assert np.allclose(calib.spd_inverse(h) @ h, np.eye(8), atol=1e-3)  # numpy's inverse instead


def test_invert_caches_one_inverse_per_consumer() -> None:
    cons = {}
    for k, n in enumerate((5, 40)):
        c = calib.Consumer(node=k, op="Gemm", x=f"x{k}", weight=f"w{k}", in_axis=0)
        rows = np.random.default_rng(k).standard_normal((200, n)).astype(np.float32)
        c.add(rows)
        cons[(c.weight, 0)] = c
    obspa.invert(cons)
    for c in cons.values():
        first = c.hinv(obspa.damping(c))
        assert c.hinv(obspa.damping(c)) is first  # cached: the scoring and the update reuse it
        assert np.allclose(first[0] @ (c.grams[0] / c.rows), np.eye(len(first[0])), atol=0.05)


def test_blas_limit_covers_scipy_loaded_first_inside_it() -> None:
    """A fresh process (scipy not loaded yet) that imports scipy's LAPACK inside the data criteria's block, as the
    first obspa prune of a `spa prune` command does: every BLAS, scipy's too, on one thread there."""
    code = ("from threadpoolctl import threadpool_info\n"
            "from spa import parallel\n"
            "with parallel.blas_single_threaded():\n"
            "    import scipy.linalg.lapack, scipy.linalg.cython_lapack\n"
            "    print(max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    assert r.stdout.strip() == "1"
