"""The streaming path for models with large external data, exercised on a small model (threshold forced to 0):
weights stay on disk, sliced ones are written straight to the output's data file, and the result equals the
in-memory path's. The >2 GB run itself is benchmarks/big_model.py."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models import big_mlp
from spa import api, modelfile

ROOT = Path(__file__).resolve().parents[1]


def _digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.fixture
def small(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    big_mlp.build(src / "m.onnx", d=32, f=64, layers=3, k=5)
    return src / "m.onnx"


def test_streamed_equals_in_memory(small: Path, tmp_path: Path) -> None:
    before = _digests(small.parent)
    lazy = modelfile.load(small, stream_bytes=0)
    ext = [t.name for t in lazy.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert "l0.w1" in ext and "l0.b1" not in ext  # weights stay on disk; tiny tensors are read in

    (tmp_path / "s").mkdir()
    (tmp_path / "m").mkdir()
    out_s, out_m = tmp_path / "s" / "p.onnx", tmp_path / "m" / "p.onnx"
    _, rs = api.prune(small, ratio=0.5, output=out_s, stream_bytes=0)
    _, rm = api.prune(small, ratio=0.5, output=out_m)  # the default threshold: loaded whole, as before

    names = sorted(p.name for p in out_s.parent.iterdir())  # no staging left; the data file has a fresh name
    assert len(names) == 2 and names[0] == "p.onnx" and re.fullmatch(r"p\.onnx\.[0-9a-f]{16}\.data", names[1])
    data = out_s.parent / names[1]
    assert sorted(p.name for p in out_m.parent.iterdir()) == ["p.onnx"]
    m = onnx.load(out_s, load_external_data=False)
    w = {t.name: t for t in m.graph.initializer}
    assert w["l0.w1"].data_location == onnx.TensorProto.EXTERNAL and list(w["l0.w1"].dims) == [32, 32]
    assert {e.value for t in m.graph.initializer for e in t.external_data if e.key == "location"} == {data.name}
    onnx.checker.check_model(str(out_s), full_check=True)
    assert rs.after.params == rm.after.params < rs.before.params
    assert rs.after.size_bytes == out_s.stat().st_size + data.stat().st_size
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    np.testing.assert_array_equal(_run(out_s, x), _run(out_m, x))
    assert _digests(small.parent) == before  # input untouched


def test_streamed_output_never_writes_the_inputs_data_file(small: Path) -> None:
    # the input's data file is m.onnx.data; an output named m.onnx beside it once wrote m.onnx.data over the
    # weights it was reading. The output's data file now has a fresh name: the input stays whole and loads.
    d = small.parent
    os.rename(small, d / "renamed.onnx")
    before = _digests(d)
    api.prune(d / "renamed.onnx", output=d / "m.onnx", stream_bytes=0)
    after = _digests(d)
    assert {k: v for k, v in after.items() if k in before} == before
    x = np.ones((2, 32), np.float32)
    assert _run(d / "renamed.onnx", x).shape == _run(d / "m.onnx", x).shape == (2, 5)


def test_cli_streams_with_env_threshold(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.onnx"
    env = dict(os.environ, SPA_STREAM_BYTES="0")
    r = subprocess.run([sys.executable, "-m", "spa", "prune", str(small), "-o", str(out), "-q"], env=env,
                       capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr
    (data,) = tmp_path.glob("cli.onnx.*.data")
    assert data.stat().st_size > 0
    m = onnx.load(out, load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    x = np.ones((2, 32), np.float32)
    assert _run(out, x).shape == (2, 5)
