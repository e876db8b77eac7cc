"""`--calib` with a folder of images: the arrays equal the hand-made .npz of the same pixels, and every flag or
folder that does not fit the model fails with one line (exit 2) instead of feeding garbage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from spa.errors import BadArgument
from spa.images import load_inputs

PIL = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "models" / "samples" / "simple_cnn.onnx"  # input (N, 3, 32, 32)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _pixels(n: int = 5, hw: tuple[int, int] = (32, 32)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *hw, 3), dtype=np.uint8)


def _folder(tmp_path: Path, pixels: np.ndarray, name: str = "imgs") -> Path:
    d = tmp_path / name
    d.mkdir()
    for i, p in enumerate(pixels):
        PIL.fromarray(p).save(d / f"{i:03d}.png")
    return d


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return onnx.load(str(SAMPLE))


def test_folder_equals_the_npz_of_the_same_pixels(tmp_path, model):
    px = _pixels()
    got = load_inputs(_folder(tmp_path, px), model, mean=",".join(map(str, MEAN)), std=",".join(map(str, STD)),
                      scale="1/255", bgr=True)["input"]
    want = ((px[..., ::-1] / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(0, 3, 1, 2).astype(np.float32)
    assert got.dtype == np.float32 and got.shape == (5, 3, 32, 32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.savez(tmp_path / "c.npz", input=want)
    np.testing.assert_allclose(load_inputs(tmp_path / "c.npz", model)["input"], got, atol=1e-5)


def test_nhwc_gray_and_resize(tmp_path, model):
    """A 1-channel NHWC input gets grayscale images; sizes other than the model's are resized."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, ("N", 20, 24, 1)):
        d.Clear()
        d.dim_param, d.dim_value = (v, 0) if isinstance(v, str) else ("", v)
    x = load_inputs(_folder(tmp_path, _pixels(3, (40, 50))), m, layout="nhwc")["input"]
    assert x.shape == (3, 20, 24, 1) and 0 <= x.min() and x.max() <= 1


def test_cli_prune_with_a_folder_writes_what_the_npz_writes(tmp_path, model):
    px = _pixels(8)
    d = _folder(tmp_path, px)
    np.savez(tmp_path / "c.npz", input=(px / 255.0).transpose(0, 3, 1, 2).astype(np.float32))
    for src, out in ((str(d), "a.onnx"), (str(tmp_path / "c.npz"), "b.onnx")):
        r = _cli("prune", str(SAMPLE), "-o", str(tmp_path / out), "-c", "act", "-r", "0.5", "--calib", src, "-q")
        assert r.returncode == 0, r.stderr
    a, b = (onnx.load(str(tmp_path / f)) for f in ("a.onnx", "b.onnx"))
    for ta, tb in zip(a.graph.initializer, b.graph.initializer):
        np.testing.assert_allclose(onnx.numpy_helper.to_array(ta), onnx.numpy_helper.to_array(tb), atol=1e-4)


BAD = {  # case → (load_inputs options, words the message must contain)
    "empty folder": ({}, "no image files"),
    "not an image": ({}, "notes.txt is not an image"),
    "mean count": ({"mean": "0.5,0.5"}, "--calib-mean"),
    "std zero": ({"std": "0"}, "--calib-std"),
    "std text": ({"std": "a,b,c"}, "--calib-std"),
    "unknown layout": ({"layout": "chwn"}, "--calib-layout"),
    "wrong layout": ({"layout": "nhwc"}, "declares 32 on its channel axis 3"),
    "gray for rgb": ({"gray": True}, "declares 3"),
    "size vs static": ({"size": "64x64"}, "fixed height of 32"),
    "size syntax": ({"size": "64"}, "expected HxW"),
    "scale": ({"scale": "1/0"}, "--calib-scale"),
    "options with npz": ({"mean": "0.5"}, "apply to a folder of images"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_folder_or_flag_is_refused(case, tmp_path, model):
    opts, words = BAD[case]
    d = _folder(tmp_path, _pixels(2))
    if case == "empty folder":
        d = tmp_path / "empty"
        d.mkdir()
    elif case == "not an image":
        (d / "notes.txt").write_text("hello")
    elif case == "options with npz":
        np.savez(tmp_path / "c.npz", input=np.zeros((2, 3, 32, 32), np.float32))
        d = tmp_path / "c.npz"
    with pytest.raises(BadArgument, match=words.replace("(", r"\(")) as e:
        load_inputs(d, model, **opts)
    assert "\n" not in str(e.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spa", *args], check=False, capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("flags", [["--calib-layout", "nhwc"], ["--calib-mean", "1,2"]])
def test_cli_bad_flag_exits_2_with_one_line(flags, tmp_path):
    d = _folder(tmp_path, _pixels(2))
    r = _cli("prune", str(SAMPLE), "-o", str(tmp_path / "o.onnx"), "-c", "obspa", "--calib", str(d), *flags)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spa: error: --calib"), r.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_cli_preprocessing_flag_without_calib_exits_2(tmp_path):
    r = _cli("prune", str(SAMPLE), "-o", str(tmp_path / "o.onnx"), "-c", "obspa", "--calib-bgr")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--calib-bgr needs --calib" in r.stderr, r.stderr
