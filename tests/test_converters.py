"""`spa convert` (PyTorch / Keras -> ONNX) and the `converters` package."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

ROOT = Path(__file__).resolve().parents[1]

FACTORY = """
from models import zoo_torch


def make():
    return zoo_torch.build("simple_cnn")
"""


def spa(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spa", *map(str, args)], check=False, capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(r: subprocess.CompletedProcess, needle: str = "") -> None:
    assert r.returncode != 0, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("spa: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def convert_and_prune(tmp_path: Path, *args) -> onnx.ModelProto:
    out = tmp_path / "converted.onnx"
    r = spa("convert", *args, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and not r.stderr.strip(), (r.stdout, r.stderr)
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"
    m = onnx.load(out)
    onnx.checker.check_model(m, full_check=True)
    r = spa("prune", out, "-o", tmp_path / "pruned.onnx", "--ratio", "0.5", "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pruned.onnx").stat().st_size < out.stat().st_size
    return m


@pytest.fixture
def factory(tmp_path) -> Path:
    p = tmp_path / "mymodel.py"
    p.write_text(FACTORY)
    return p


@pytest.fixture(scope="module")
def _torchscript_file(tmp_path_factory) -> Path:
    import warnings

    import torch

    from models import zoo_torch

    p = tmp_path_factory.mktemp("ts") / "simple_cnn.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(zoo_torch.build("simple_cnn")).save(str(p))
    return p


@pytest.fixture
def torchscript(tmp_path, _torchscript_file) -> Path:
    p = tmp_path / "simple_cnn.pt"
    p.write_bytes(_torchscript_file.read_bytes())
    return p


def test_torch_factory_convert_and_prune(tmp_path, factory):
    m = convert_and_prune(tmp_path, f"{factory}:make", "--input-shape", "1,3,32,32")
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["output"]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch


def test_torchscript_convert_and_prune(tmp_path, torchscript):
    convert_and_prune(tmp_path, torchscript, "--input-shape", "1,3,32,32", "--exporter", "legacy")


def test_torch_dynamo_exporter_opset17(tmp_path, factory):
    m = convert_and_prune(tmp_path, f"{factory}:make", "--input-shape", "1,3,32,32", "--exporter", "dynamo")
    assert {o.version for o in m.opset_import if o.domain in ("", "ai.onnx")} == {17}


@pytest.mark.keras
def test_keras_file_convert_and_prune(tmp_path):
    pytest.importorskip("tf2onnx")
    script = f"""
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
keras.utils.set_random_seed(0)
i = keras.Input((32, 32, 3))
x = keras.layers.Conv2D(8, 3, padding="same")(i)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.ReLU()(x)
x = keras.layers.Conv2D(16, 3, strides=2, padding="same")(x)
x = keras.layers.ReLU()(x)
x = keras.layers.GlobalAveragePooling2D()(x)
keras.Model(i, keras.layers.Dense(4)(x)).save({str(tmp_path / "tiny.keras")!r})
"""
    r = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    m = convert_and_prune(tmp_path, tmp_path / "tiny.keras")
    assert m.graph.input[0].name == "input" and m.graph.output[0].name == "output"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["missing.pt", "--input-shape", "1,3,32,32"], "does not exist"),
        (["{pt}", "--input-shape", "1,x,32"], "bad --input-shape"),
        (["{pt}"], "--input-shape is required"),
        (["{pt}", "--input-shape", "1,3,32,32", "--framework", "mxnet"], "unknown framework"),
        (["{pt}", "--input-shape", "1,3,32,32", "--exporter", "magic"], "unknown exporter"),
        (["{py}:nope", "--input-shape", "1,3,32,32"], "no callable"),
        (["{pt}", "--input-shape", "1,3,31"], "fails on inputs"),
        (["{pt}", "--input-shape", "1,3,32,32", "--exporter", "dynamo"], "TorchScript"),
        (["{junk}"], "cannot tell the framework"),
    ],
)
def test_convert_errors_are_one_line(tmp_path, torchscript, factory, args, needle):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\0" * 16)
    args = [a.format(pt=torchscript, py=factory, junk=junk) for a in args]
    out = tmp_path / "out.onnx"
    r = spa("convert", *args, "-o", out)
    assert_one_line_error(r, needle)
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_convert_never_overwrites_input(tmp_path, torchscript):
    before = torchscript.read_bytes()
    r = spa("convert", torchscript, "-o", torchscript, "--input-shape", "1,3,32,32")
    assert_one_line_error(r, "is the input")
    assert r.returncode == 2 and torchscript.read_bytes() == before


def test_import_converters_is_light():
    code = "import sys, converters; assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_auto_falls_back_to_dynamo(tmp_path, monkeypatch, caplog):
    import torch

    from converters import torch_export, torch_to_onnx
    from models import zoo_torch

    def broken(*a, **k):
        raise RuntimeError("legacy is broken")

    monkeypatch.setattr(torch_export, "_legacy", broken)
    out = tmp_path / "m.onnx"
    with caplog.at_level(logging.WARNING, logger="spa.converters"):
        p = torch_to_onnx(zoo_torch.build("simple_cnn"), torch.randn(1, 3, 32, 32), out)
    assert p == out and out.exists()
    assert any("falling back to the dynamo exporter" in r.getMessage() for r in caplog.records)


def test_output_mismatch_raises(tmp_path, monkeypatch):
    import torch

    from converters import _common, torch_to_onnx
    from models import zoo_torch
    from spa.errors import SpaError

    monkeypatch.setattr(_common, "ATOL", -1.0)
    monkeypatch.setattr(_common.compare, "__defaults__", (-1.0,))
    with pytest.raises(SpaError, match="differs"):
        torch_to_onnx(zoo_torch.build("simple_cnn"), torch.randn(1, 3, 32, 32), tmp_path / "m.onnx", exporter="legacy")
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.glob(".*tmp"))


def test_sklearn_mlp_convert_and_prune(tmp_path):
    """A scikit-learn MLP trained on the digits: skl2onnx export via `spa convert`, then prune (hidden units)."""
    import pickle
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    d = load_digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier((32, 16), max_iter=60, random_state=0).fit(d.data / 16, d.target)
    pkl = tmp_path / "mlp.pkl"
    pkl.write_bytes(pickle.dumps(est))
    out = tmp_path / "mlp.onnx"
    r = subprocess.run([sys.executable, "-m", "spa", "convert", str(pkl), "-o", str(out)], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "spa", "prune", str(out), "-o", str(tmp_path / "p.onnx"),
                        "--oracle", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["groups"]["pruned"] == 2 and rep["oracle_rel_error"] <= 1e-5


def test_detect_framework_reads_names_only(tmp_path):
    """`converters.detect_framework` (what `spa convert` runs for --framework auto) from names and zip members."""
    import zipfile

    from converters import detect_framework
    from spa.errors import BadArgument

    def touch(name: str) -> Path:
        (tmp_path / name).write_bytes(b"\0")
        return tmp_path / name

    assert detect_framework(str(touch("m.pt"))) == "torch"
    assert detect_framework(str(touch("m.keras"))) == "keras"
    assert detect_framework(str(touch("m.joblib"))) == "sklearn"
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    assert detect_framework(str(tmp_path / "sm")) == "keras"
    for members, want in ((["config.json", "model.weights.h5"], "keras"), (["m/code/", "m/data.pkl"], "torch")):
        with zipfile.ZipFile(tmp_path / f"{want}.bin", "w") as z:
            for m in members:
                z.writestr(m, "")
        assert detect_framework(str(tmp_path / f"{want}.bin")) == want
    py = tmp_path / "f.py"
    py.write_text("import jax\n")
    assert detect_framework(f"{py}:make") == "jax"
    for source, needle in ((touch("m.onnx"), "already an ONNX model"), (touch("m.bin"), "cannot tell the framework"),
                           (tmp_path / "missing.pt", "does not exist")):
        with pytest.raises(BadArgument, match=needle):
            detect_framework(str(source))
