"""``spa convert`` without the command line: tell a source's framework, then run that framework's converter.

:func:`detect_framework` looks only at names (the suffix, a SavedModel's ``saved_model.pb``, the member list of
a zip, the imports of a ``file.py``): nothing is unpickled, imported or run to guess. :func:`convert` then loads
the source with the one converter that fits and returns what was written, with the exporters' warnings.
Every failure is a ``spa.errors.SpaError`` with a one-line message.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from spa.errors import BadArgument

from .torch_export import EXPORTERS  # a name only: torch itself is imported when a torch model is converted

__all__ = ["EXPORTERS", "FRAMEWORKS", "Converted", "Source", "check_options", "convert", "detect_framework"]

FRAMEWORKS = ("auto", "torch", "keras", "sklearn", "jax")
TORCH_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


@dataclass(frozen=True)
class Source:
    """A source as ``spa convert`` takes it: ``text`` as given, ``path`` the file or directory that is read (the
    ``.py`` of a ``file.py:factory``), and whether it is such a factory."""

    text: str
    path: Path
    is_factory: bool

    @classmethod
    def parse(cls, text: str) -> Source:
        """Split ``file.py:factory`` from a plain path; raise BadArgument when the file is missing."""
        py, sep, factory = text.rpartition(":")
        is_factory = bool(sep and py.endswith(".py") and factory)
        path = Path(py if is_factory else text)
        if not path.exists():
            raise BadArgument(f"{path} does not exist")
        return cls(text, path, is_factory)


@dataclass
class Converted:
    """What :func:`convert` wrote: the ONNX file, the framework, the route taken (``"torch, legacy exporter"``),
    the opset, onnxruntime's largest error against the framework, and the warnings (exporter fallbacks, an opset
    kept), each once and in order."""

    path: Path
    framework: str
    how: str
    opset: int
    max_error: float
    warnings: list[str] = field(default_factory=list)


def check_options(framework: str = "auto", exporter: str = "auto", opset: int = 17) -> None:
    """Raise BadArgument for an unknown framework or exporter or an opset outside 7..23 (before any file is read:
    the command line checks its options first, :func:`convert` checks them again for API callers)."""
    if framework not in FRAMEWORKS:
        raise BadArgument(f"unknown framework {framework!r}; use one of {', '.join(FRAMEWORKS)}")
    if exporter not in EXPORTERS:
        raise BadArgument(f"unknown exporter {exporter!r}; use one of {', '.join(EXPORTERS)}")
    if not 7 <= opset <= 23:
        raise BadArgument(f"--opset must be between 7 and 23, got {opset}")


def detect_framework(source: str | Source) -> str:
    """``"torch"``, ``"keras"``, ``"sklearn"`` or ``"jax"`` for a source, from its name alone (and a zip's member
    list, a ``.py``'s imports); BadArgument for an ONNX file or a source it cannot tell."""
    src = source if isinstance(source, Source) else Source.parse(source)
    path, suffix = src.path, src.path.suffix.lower()
    if src.is_factory:
        from .jax_export import is_jax_source

        return "jax" if is_jax_source(path) else "torch"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    if suffix in KERAS_SUFFIXES or (path / "saved_model.pb").is_file():
        return "keras"
    if suffix in PICKLE_SUFFIXES:
        return "sklearn"
    if suffix == ".onnx":
        raise BadArgument(f"{path} is already an ONNX model")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("config.json") for n in names) and any(n.endswith(".weights.h5") for n in names):
            return "keras"  # a .keras file under another name
        if any(n.endswith(("/code/", "data.pkl", "constants.pkl")) for n in names):
            return "torch"  # a TorchScript archive under another name
    raise BadArgument(f"cannot tell the framework of {path}; pass --framework torch or keras")


@contextmanager
def _warnings_of_converters(notes: list[str]) -> Iterator[None]:
    """Collect the converters' logged warnings into ``notes`` instead of printing them (the caller shows them
    once, with the result)."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage())

    logger = logging.getLogger("spa.converters")
    handler, propagate = Collect(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def convert(source: str | Source, output: str | os.PathLike, *, framework: str = "auto",
            shapes: Sequence[Sequence[int]] | None = None, exporter: str = "auto", opset: int = 17) -> Converted:
    """Convert ``source`` (a TorchScript file, ``file.py:factory`` for torch or JAX, a ``.keras`` file or
    SavedModel directory, a pickled scikit-learn estimator) to the ONNX file ``output``.

    ``shapes`` are example input shapes, batch first (required for torch and JAX; for Keras they fix dims the
    model leaves open; for scikit-learn the last dim is the feature count). ``exporter`` picks the torch
    exporter. Loading a pickle, a torch file or a ``file.py`` runs code from it: convert only files you trust.
    """
    check_options(framework, exporter, opset)
    src = source if isinstance(source, Source) else Source.parse(source)
    if framework == "auto":
        framework = detect_framework(src)
    notes: list[str] = []
    with _warnings_of_converters(notes):
        if framework == "torch":
            info, how = _torch(src, output, shapes, exporter, opset)
        elif framework == "sklearn":
            info, how = _sklearn(src, output, shapes, opset)
        elif framework == "jax":
            info, how = _jax(src, output, shapes, exporter, opset)
        else:
            info, how = _keras(src, output, shapes, exporter, opset)
    notes += info.warnings
    return Converted(Path(info.path), framework, how, info.opset, info.max_error, list(dict.fromkeys(notes)))


def _torch(src: Source, output, shapes, exporter: str, opset: int):
    if src.is_factory and src.path.suffix != ".py":
        raise BadArgument(f"{src.path} is not a .py file")
    if shapes is None:
        raise BadArgument("--input-shape is required for torch models, e.g. --input-shape 1,3,224,224")
    import torch

    from .torch_export import export_torch, load_torch_source

    module = load_torch_source(src.text)
    g = torch.Generator().manual_seed(0)
    xs = tuple(torch.randn(list(s), generator=g) for s in shapes)
    info = export_torch(module, xs, output, exporter=exporter, opset=opset)
    return info, f"torch, {info.exporter} exporter"


def _sklearn(src: Source, output, shapes, opset: int):
    from .sklearn_export import export_sklearn, load_estimator

    n_feat = shapes[0][-1] if shapes else None
    return export_sklearn(load_estimator(src.path), output, n_feat, opset=opset), "scikit-learn, skl2onnx"


def _jax(src: Source, output, shapes, exporter: str, opset: int):
    if not src.is_factory:
        raise BadArgument("JAX models are given as file.py:factory (returning a Flax NNX module or a function)")
    if shapes is None:
        raise BadArgument("--input-shape is required for JAX models, e.g. --input-shape 1,28,28,1")
    if exporter != "auto":
        raise BadArgument("--exporter applies to torch models only")
    from .jax_export import export_jax, load_jax_source

    return export_jax(load_jax_source(src.text), shapes, output, opset=opset), "jax, jax2onnx"


def _keras(src: Source, output, shapes, exporter: str, opset: int):
    if src.is_factory:
        raise BadArgument("module.py:factory sources are torch models; drop --framework keras")
    if exporter != "auto":
        raise BadArgument("--exporter applies to torch models only")
    from .keras_export import export_keras

    info = export_keras(src.path, output, opset=opset, input_shape=shapes)
    return info, f"keras, tf2onnx {info.route}"
