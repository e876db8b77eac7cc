"""scikit-learn → ONNX via skl2onnx (MLPs and other estimators skl2onnx supports).

Classifiers are exported without the ZipMap post-processing (outputs `label` and `probabilities` as plain
tensors), so spa can analyse the graph; the result is checked against the estimator before it is written.
"""

from __future__ import annotations

import os
import pathlib
import pickle
from dataclasses import dataclass, field

import numpy as np

from spa.errors import BadArgument, BadModel, VerificationFailed


def require() -> None:
    """The sklearn extra (scikit-learn, skl2onnx) is importable: checked *before* a pickle is loaded, since
    loading one runs its code and would be for nothing if the conversion cannot happen."""
    import importlib.util

    missing = [m for m in ("sklearn", "skl2onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise BadArgument(f"scikit-learn conversion needs {' and '.join(missing)} (pip install 'spa[sklearn]'); "
                          "the pickle was not loaded")


def load_estimator(path: str | os.PathLike) -> object:
    """A pickled (pickle or joblib) estimator. Unpickling runs code from the file: only load your own."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise BadArgument(f"{p}: no such file")
    require()
    try:
        import joblib

        return joblib.load(p)
    except Exception:
        try:
            with open(p, "rb") as f:
                return pickle.load(f)
        except Exception as e:
            raise BadModel(f"{p}: not a pickled scikit-learn estimator ({type(e).__name__})") from None


@dataclass
class SklearnExport:
    path: pathlib.Path
    opset: int
    max_error: float
    warnings: list[str] = field(default_factory=list)


def sklearn_to_onnx(estimator, path: str | os.PathLike, n_features: int | None = None, *, opset: int = 17) -> pathlib.Path:
    """Convert a fitted estimator; `n_features` defaults to the estimator's `n_features_in_`."""
    return export_sklearn(estimator, path, n_features, opset=opset).path


def export_sklearn(estimator, path: str | os.PathLike, n_features: int | None = None, *, opset: int = 17) -> SklearnExport:
    """`sklearn_to_onnx` with the details `spa convert` prints."""
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError:
        raise BadArgument("scikit-learn conversion needs skl2onnx (pip install 'spa[sklearn]')") from None
    n = int(n_features or getattr(estimator, "n_features_in_", 0))
    if n <= 0:
        raise BadArgument("give n_features: the estimator does not say how many it takes")
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    try:
        onx = convert_sklearn(estimator, initial_types=[("input", FloatTensorType([None, n]))],
                              target_opset={"": opset, "ai.onnx.ml": 3}, options=options)
    except Exception as e:
        raise BadModel(f"skl2onnx cannot convert {type(estimator).__name__}: {str(e).splitlines()[0][:200]}") from None
    err = _check(estimator, onx, n)
    out = pathlib.Path(path)
    from spa.io_safety import atomic_write

    atomic_write(out, onx.SerializeToString())
    return SklearnExport(out, opset, err)


def _check(estimator, onx, n: int) -> float:
    from spa.verify import session

    x = np.random.default_rng(0).standard_normal((16, n)).astype(np.float32)
    outs = session(onx).run(None, {"input": x})
    if hasattr(estimator, "predict_proba"):
        ref, got = estimator.predict_proba(x), outs[1]
    else:
        ref, got = np.asarray(estimator.predict(x)).reshape(outs[0].shape), outs[0]
    err = float(np.abs(ref - got).max() / max(1.0, np.abs(ref).max()))
    if not err <= 1e-4:
        raise VerificationFailed(f"onnxruntime differs from scikit-learn by {err:.1e} (relative)")
    return err
