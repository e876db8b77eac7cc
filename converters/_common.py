"""Shared helpers of the framework -> ONNX converters: errors, atomic writes, onnxruntime checks."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np

from spa.errors import BadArgument, BadModel, SpaError, VerificationFailed, WriteFailed, first_line  # noqa: F401 - converters use first_line from here

__all__ = ["ATOL", "ConversionFailed", "OutputMismatch", "compare", "ort_run", "publish", "tmp_path_for"]

ATOL = 1e-4


class ConversionFailed(BadModel):
    """The exporter could not turn the model into ONNX (exit code 3)."""


class OutputMismatch(VerificationFailed):
    """onnxruntime's outputs differ from the framework's (exit code 4)."""




def tmp_path_for(path: str | os.PathLike) -> pathlib.Path:
    """A fresh temporary file name beside ``path`` (same directory, so the rename is atomic); ``path`` is
    checked first (existing directory, writable, a regular file or absent: see `spa.io_safety`)."""
    from spa.io_safety import check_destination, debris_name, directory_of, remove_stale

    check_destination(path)
    d = directory_of(path)
    remove_stale(d)
    tmp = d / debris_name(path, "tmp")
    try:
        tmp.touch(exist_ok=False)
    except OSError as e:
        raise WriteFailed(f"cannot write in {d}: {e.strerror or e}") from None
    return tmp


def publish(tmp: pathlib.Path, path: str | os.PathLike) -> pathlib.Path:
    """Atomically move the finished temporary file onto ``path`` (`spa.io_safety.publish`)."""
    from spa.io_safety import default_mode
    from spa.io_safety import publish as commit

    try:
        os.chmod(tmp, default_mode())
    except OSError:  # pragma: no cover - permissions are cosmetic
        pass
    commit(tmp, path)
    return pathlib.Path(path)


def discard(tmp: pathlib.Path) -> None:
    try:
        tmp.unlink()
    except OSError:
        pass


def ort_session(path: str | os.PathLike):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"onnxruntime cannot load the exported model: {first_line(e)}") from None


def ort_run(sess, feeds_by_position: Sequence[np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """Run ``sess`` feeding arrays by input name (inputs the exporter dropped as unused are skipped)."""
    wanted = {i.name for i in sess.get_inputs()}
    feeds = {n: a for n, a in zip(names, feeds_by_position) if n in wanted}
    missing = wanted - feeds.keys()
    if missing:
        raise ConversionFailed(f"exported model has unexpected inputs {sorted(missing)}")
    try:
        return [np.asarray(o) for o in sess.run(None, feeds)]
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"onnxruntime cannot run the exported model: {first_line(e)}") from None


def compare(got: Iterable[np.ndarray], want: Iterable[np.ndarray], what: str, atol: float = ATOL) -> float:
    """Max error of onnxruntime vs the framework; raise :class:`OutputMismatch` above ``atol``.

    The error of each output is ``max|got - want| / max(1, max|want|)``: absolute for outputs of
    magnitude <= 1, relative for larger ones.
    """
    got, want = list(got), list(want)
    if len(got) != len(want):
        raise OutputMismatch(f"{what}: onnxruntime gives {len(got)} outputs, the framework {len(want)}")
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        if g.shape != w.shape:
            raise OutputMismatch(f"{what}: output {i} has shape {list(g.shape)} in onnxruntime, "
                                 f"{list(w.shape)} in the framework")
        if w.size == 0:
            continue
        if np.issubdtype(w.dtype, np.floating):
            g64, w64 = g.astype(np.float64), w.astype(np.float64)
            if not np.array_equal(np.isnan(g64), np.isnan(w64)):
                raise OutputMismatch(f"{what}: output {i} has NaNs in different places")
            g64, w64 = np.nan_to_num(g64), np.nan_to_num(w64)
            err = float(np.max(np.abs(g64 - w64)) / max(1.0, float(np.max(np.abs(w64)))))
        else:
            err = 0.0 if np.array_equal(g, w) else float("inf")
        worst = max(worst, err)
        if not err <= atol:
            raise OutputMismatch(f"{what}: output {i} differs from the framework by {err:.1e} (> {atol:g})")
    return worst


__all__ += ["SpaError", "discard", "first_line", "ort_session"]


def call_factory(py: pathlib.Path, factory: str, kind: str):
    """Import ``py`` (its code runs: only convert your own files) and return ``factory()``: the model behind a
    ``file.py:factory`` argument. One-line errors: BadArgument (missing file or factory), ConversionFailed
    (the import or the call raised)."""
    import importlib.util
    import sys

    if not py.is_file():
        raise BadArgument(f"{py} does not exist")
    name = f"_spa_convert_{kind}_{abs(hash(str(py.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, py)
    if spec is None or spec.loader is None:
        raise BadArgument(f"cannot import {py}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    sys.path.insert(0, str(py.resolve().parent))
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"importing {py} failed: {first_line(e)}") from None
    finally:
        sys.path.remove(str(py.resolve().parent))
    make = getattr(mod, factory, None)
    if make is None or not callable(make):
        raise BadArgument(f"{py} has no callable {factory!r}")
    try:
        return make()
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"{py.name}:{factory}() failed: {first_line(e)}") from None
