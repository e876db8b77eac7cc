"""Model inputs from the files users have: an .npz of arrays, or a folder of images.

`load_inputs` is the one entry point (used by `spa prune --calib`; meant for every option that reads sample
inputs). A folder becomes one array for the model's single image input: every file, sorted by name, is read with
Pillow (the `images` extra; imported only here), converted to RGB (or grayscale for a 1-channel input), resized
to `size` (bilinear, aspect not kept) and normalised as x = (pixel · scale − mean) / std, channels in RGB order
unless `bgr`, laid out `layout` ("nchw" or "nhwc").

Preprocessing that does not match the model is refused with one line (exit 2) rather than producing inputs of
the right shape and the wrong meaning: the channel count the images give against the count the layout's
channel axis declares, the size against a static model size, mean/std counts against the channels, files that
are not images, an empty folder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .errors import BadArgument

log = logging.getLogger(__name__)

LAYOUTS = ("nchw", "nhwc")
DEFAULT_SCALE = 1 / 255


def load_inputs(path: str | Path, model: onnx.ModelProto, *, size: str | Sequence[int] | None = None,
                mean: str | Sequence[float] | None = None, std: str | Sequence[float] | None = None,
                scale: str | float | None = None, bgr: bool = False, layout: str | None = None,
                gray: bool = False, flag: str = "--calib") -> dict[str, np.ndarray]:
    """Arrays keyed by graph input name (first axis = samples) from an .npz file or a folder of images (see the
    module docstring). The preprocessing options apply to folders only; `gray` forces grayscale (which a
    1-channel input gets anyway). Bad arguments raise BadArgument with one line, naming the options as `flag`
    (`--calib`, `--calib-size`, ... or `--data`, `--data-size`, ...)."""
    try:
        return _load_inputs(Path(path), model, size=size, mean=mean, std=std, scale=scale, bgr=bgr, layout=layout,
                            gray=gray)
    except BadArgument as e:
        if flag == "--calib":
            raise
        raise BadArgument(str(e).replace("--calib", flag)) from None


def _load_inputs(path: Path, model: onnx.ModelProto, **options) -> dict[str, np.ndarray]:
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    if not path.is_dir():
        if given:
            raise BadArgument(f"--calib {path}: preprocessing options ({', '.join(sorted(given))}) apply to a "
                              "folder of images, not to an .npz")
        return load_npz(path, model)
    return _image_input(path, model, given)


def _image_input(folder: Path, model: onnx.ModelProto, opts: dict) -> dict[str, np.ndarray]:
    where = f"--calib {folder}"
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise BadArgument(f"{where}: a folder of images feeds a model with one input; this one has "
                          f"{len(inputs)} ({', '.join(i.name for i in inputs)}): use an .npz")
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise BadArgument(f"{where}: input {inp.name!r} has rank {len(dims)}; images feed a rank-4 input "
                          "(N, C, H, W) or (N, H, W, C): use an .npz")
    layout = str(opts.get("layout", "nchw")).lower()
    if layout not in LAYOUTS:
        raise BadArgument(f"--calib-layout {opts['layout']!r}: choose nchw or nhwc")
    c_ax, hw_ax = (1, (2, 3)) if layout == "nchw" else (3, (1, 2))
    declared = dims[c_ax]
    gray = bool(opts.get("gray")) or declared == 1
    channels = 1 if gray else 3
    if declared is not None and declared != channels:
        raise BadArgument(f"{where}: the images give {channels} channel(s) but input {inp.name!r} declares "
                          f"{declared} on its channel axis {c_ax} (layout {layout}): check --calib-layout"
                          + (" and --calib-gray" if gray else ""))
    if opts.get("bgr") and gray:
        raise BadArgument("--calib-bgr: grayscale images have no channel order")
    h, w = _size(opts.get("size"), tuple(dims[a] for a in hw_ax), inp.name, where)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type))
    except KeyError:  # no declared element type
        dtype = np.dtype(np.float32)
    if dtype.kind not in "fiu":
        raise BadArgument(f"{where}: input {inp.name!r} is {dtype}; images feed float or integer inputs")
    if dtype.kind != "f" and any(k in opts for k in ("mean", "std", "scale")):
        raise BadArgument(f"{where}: input {inp.name!r} is {dtype} (raw pixels): --calib-mean/-std/-scale "
                          "apply to float inputs")
    mean = _per_channel(opts.get("mean"), 0.0, channels, "--calib-mean")
    std = _per_channel(opts.get("std"), 1.0, channels, "--calib-std")
    if np.any(std == 0):
        raise BadArgument("--calib-std: values must be non-zero")
    scale = _scale(opts.get("scale"))
    pixels = _read(folder, (w, h), "L" if gray else "RGB")  # (N, H, W, C) uint8
    if opts.get("bgr"):
        pixels = pixels[..., ::-1]
    x = pixels.astype(np.float32) if dtype.kind != "f" else (pixels * np.float32(scale) - mean) / std
    if layout == "nchw":
        x = x.transpose(0, 3, 1, 2)
    log.info("%s: %d images as %s %s", where, len(x), layout, list(x.shape))
    return {inp.name: np.ascontiguousarray(x).astype(dtype, copy=False)}


def _size(value, static: tuple[int | None, int | None], name: str, where: str) -> tuple[int, int]:
    """(H, W): `value` ("HxW" or a pair), checked against the model's static sizes; those by default."""
    if value is None:
        if None in static:
            raise BadArgument(f"{where}: input {name!r} has no fixed image size; give --calib-size HxW")
        return static[0], static[1]
    try:
        hw = tuple(int(v) for v in (value.lower().split("x") if isinstance(value, str) else value))
    except ValueError:
        hw = ()
    if len(hw) != 2 or min(hw) < 1:
        raise BadArgument(f"--calib-size {value!r}: expected HxW, e.g. 224x224")
    for got, want, what in zip(hw, static, ("height", "width")):
        if want is not None and got != want:
            raise BadArgument(f"--calib-size {value}: input {name!r} has a fixed {what} of {want}")
    return hw  # type: ignore[return-value]


def _per_channel(value, default: float, channels: int, flag: str) -> np.ndarray:
    """1 or `channels` floats (comma-separated in a string) as a per-channel array."""
    if value is None:
        return np.full(channels, default, np.float32)
    try:
        v = np.array([float(s) for s in (value.split(",") if isinstance(value, str) else value)], np.float32)
    except ValueError:
        raise BadArgument(f"{flag} {value!r}: expected comma-separated numbers") from None
    if len(v) not in (1, channels) or not np.isfinite(v).all():
        raise BadArgument(f"{flag} {value!r}: give 1 or {channels} finite value(s) for {channels} channel(s)")
    return np.broadcast_to(v, (channels,)).astype(np.float32)


def _scale(value) -> float:
    """A float, or a fraction written "1/255"."""
    if value is None:
        return DEFAULT_SCALE
    try:
        if isinstance(value, str) and "/" in value:
            num, den = value.split("/")
            s = float(num) / float(den)
        else:
            s = float(value)
    except (ValueError, ZeroDivisionError):
        raise BadArgument(f"--calib-scale {value!r}: expected a number such as 0.0039 or 1/255") from None
    if not np.isfinite(s) or s == 0:
        raise BadArgument(f"--calib-scale {value!r}: must be a non-zero finite number")
    return s


def _read(folder: Path, wh: tuple[int, int], mode: str) -> np.ndarray:
    """Every file of the folder (sorted by name; hidden files and subfolders skipped) as (N, H, W, C) uint8."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise BadArgument("--calib with a folder of images needs Pillow: pip install 'spa[images]'") from None
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise BadArgument(f"--calib {folder}: the folder has no image files")
    out = []
    for p in files:
        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert(mode).resize(wh, Image.BILINEAR))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise BadArgument(f"--calib {folder}: {p.name} is not an image Pillow can read "
                              f"({type(e).__name__})") from None
        out.append(a[..., None] if a.ndim == 2 else a)
    return np.stack(out)


def load_npz(path: str | Path, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Inputs from an .npz keyed by graph input name (first axis = samples). One-line errors."""
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
    from .verify import NP_DTYPES

    for name, v in arrays.items():
        want = NP_DTYPES.get(inputs[name].type.tensor_type.elem_type, np.float32)
        dims = inputs[name].type.tensor_type.shape.dim
        if v.ndim != len(dims) or any(
            d.HasField("dim_value") and d.dim_value > 0 and k > 0 and d.dim_value != v.shape[k] for k, d in enumerate(dims)
        ):
            raise BadArgument(f"--calib {path}: array {name!r} has shape {list(v.shape)}, the input is {_declared(dims)}")
        if v.dtype.kind != np.dtype(want).kind:
            raise BadArgument(f"--calib {path}: array {name!r} is {v.dtype}, the input wants {np.dtype(want)}")
        arrays[name] = v.astype(want, copy=False)
    return arrays


def _declared(dims) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
