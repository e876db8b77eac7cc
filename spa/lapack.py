"""scipy's single-precision LAPACK called through ctypes, which releases the GIL while a routine runs.

scipy's own wrappers (scipy.linalg.lapack) hold the GIL for the whole call, so H inverses meant to run side by
side (spa.criteria.obspa.invert) ran one after the other, and the other thread's Python waited for them: two
1441-column potrf + potri took 0.086 s one after the other and 0.092 s on two threads through scipy's wrappers,
0.049 s through these. The routines are scipy's own (scipy.linalg.cython_lapack's pointers to them): the same
library and code, the same values to the bit.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache

import numpy as np

_INT_P = ctypes.POINTER(ctypes.c_int)
# (uplo, n, a, lda, info): the arguments of potrf and potri
_UPLO_N_A_LDA_INFO = ctypes.CFUNCTYPE(None, ctypes.c_char_p, _INT_P, ctypes.c_void_p, _INT_P, _INT_P)
# prototypes of their own, so that ctypes.pythonapi's shared function objects are left as they are
_capsule_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


@cache
def _routine(name: str) -> Callable | None:
    """LAPACK's `name` (spotrf, spotri) as scipy links it; None without scipy."""
    try:
        from scipy.linalg import cython_lapack
    except ImportError:
        return None
    capsule = cython_lapack.__pyx_capi__.get(name)
    return None if capsule is None else _UPLO_N_A_LDA_INFO(_capsule_pointer(capsule, _capsule_name(capsule)))


def available() -> bool:
    return _routine("spotrf") is not None and _routine("spotri") is not None


def cholesky_inverse_lower(h: np.ndarray) -> np.ndarray | None:
    """The lower triangle (zeros above) of the inverse of the symmetric positive definite `h`, in float32, by
    Cholesky: spotrf, then spotri, on a Fortran-ordered copy, as scipy.linalg.lapack.spotrf / spotri compute it.
    None where the factorisation fails or gives non-finite values. Needs `available()`."""
    a = np.array(h, dtype=np.float32, order="F")
    n, info = ctypes.c_int(a.shape[0]), ctypes.c_int(0)
    for step in ("spotrf", "spotri"):
        _routine(step)(b"L", ctypes.byref(n), a.ctypes.data, ctypes.byref(n), ctypes.byref(info))
        if info.value != 0:
            return None
    low = np.tril(a)  # potri fills the lower triangle only
    return low if np.isfinite(low).all() else None
