"""Issue 13, items 5-7: declared output shapes that are not the truth, "nothing pruned" said out loud, MACs and
bench at a size the model really runs at (or --input-shape)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from models import deployment
from spa import api
from spa.verify import session

ROOT = Path(__file__).resolve().parents[1]


def spa(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spa", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def one_line_error(r: subprocess.CompletedProcess, code: int, needle: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("spa: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("spa: error: ") and needle in lines[0], r.stderr


def save(tmp_path: Path, name: str, m: onnx.ModelProto) -> Path:
    p = tmp_path / f"{name}.onnx"
    onnx.save(m, p)
    return p


# ---------------------------------------------------------------- 5. declared shapes are not the truth
@pytest.mark.parametrize("ratio", ["0", "0.5"])
def test_wrong_output_declaration_is_compared_with_what_the_original_returns(tmp_path, ratio):
    src = save(tmp_path, "m", deployment.wrong_output_declaration())
    out = tmp_path / "p.onnx"
    r = spa("prune", src, "-o", out, "--ratio", ratio, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert any("declared [1, None]" in n and "rank 1 and symbolic dims" in n for n in d["notes"]), d["notes"]
    pruned = onnx.load(out)
    o = pruned.graph.output[0]
    assert [dim.dim_param for dim in o.type.tensor_type.shape.dim] == ["out_dim0"]
    assert o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    want = session(onnx.load(src)).run(None, {"x": x})[0]
    got = session(pruned).run(None, {"x": x})[0]
    assert got.shape == want.shape == (6 * 16 * 16,)
    if ratio == "0":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    r = spa("prune", src, "-o", tmp_path / "q.onnx", "--ratio", ratio)
    assert r.returncode == 0 and "spa: warning: output 'out' is declared [1, None]" in r.stderr, r.stderr


def _halve_last_conv(m: onnx.ModelProto) -> onnx.ModelProto:
    """A broken "pruned" copy: the last conv loses half its output channels, so the flattened output shrinks."""
    bad = onnx.ModelProto()
    bad.CopyFrom(m)
    w2 = next(t for t in bad.graph.initializer if t.name == "w2")
    w2.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(w2)[:3], "w2"))
    return bad


def test_output_shape_changes_are_still_caught():
    from spa.errors import VerificationFailed
    from spa.verify import check_model

    m = deployment.wrong_output_declaration()
    with pytest.raises(VerificationFailed, match=r"\[\(27648,\)\] differ from the original.s \[\(55296,\)\]"):
        check_model(_halve_last_conv(m), m)
    honest = onnx.ModelProto()
    honest.CopyFrom(m)  # static input, output declared as it really is: a contract again
    for k, d in enumerate((1, 3, 16, 16)):
        honest.graph.input[0].type.tensor_type.shape.dim[k].dim_value = d
    shape = honest.graph.output[0].type.tensor_type.shape
    shape.Clear()
    shape.dim.add().dim_value = 6 * 16 * 16
    with pytest.raises(VerificationFailed, match=r"declared \[1536\], got \[768\]"):
        check_model(_halve_last_conv(honest), honest)


# ---------------------------------------------------------------- 6. "nothing pruned" must be said
def test_nothing_prunable_is_said_with_reasons_and_json_fields(tmp_path):
    src = save(tmp_path, "m", deployment.nothing_prunable())
    r = spa("prune", src, "-o", tmp_path / "p.onnx")
    assert r.returncode == 0
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("spa: warning: nothing was pruned")]
    assert warn and "no group is prunable" in warn[0] and "Hardmax" in warn[0] and "×1" in warn[0], r.stderr
    d = json.loads(spa("prune", src, "-o", tmp_path / "q.onnx", "--json").stdout)
    assert d["nothing_pruned"] is True and d["channels_removed"] == 0
    assert any("Hardmax" in f["reason"] and f["groups"] == 1 for f in d["frozen_reasons"]), d["frozen_reasons"]
    r = spa("analyze", src)
    assert r.returncode == 0 and "spa: warning: nothing can be pruned" in r.stderr


def test_strict_exits_6_and_writes_nothing(tmp_path):
    src = save(tmp_path, "m", deployment.nothing_prunable())
    out = tmp_path / "p.onnx"
    r = spa("prune", src, "-o", out, "--strict")
    one_line_error(r, 6, "nothing was pruned")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name != "m.onnx"]


def test_ratio_too_small_is_said_and_strict_refuses(tmp_path):
    src = save(tmp_path, "m", deployment.conv_any_size())
    r = spa("prune", src, "-o", tmp_path / "p.onnx", "--ratio", "0.05")
    assert r.returncode == 0 and "removes no channel from the 1 prunable group" in r.stderr, r.stderr
    one_line_error(spa("prune", src, "-o", tmp_path / "q.onnx", "--ratio", "0.05", "--strict"), 6, "(--strict)")
    r = spa("prune", src, "-o", tmp_path / "s.onnx", "--ratio", "0.5", "--strict", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["nothing_pruned"] is False


# ---------------------------------------------------------------- 7. MACs and bench at a real size
def test_macs_at_the_size_the_model_runs_and_at_input_shape(tmp_path):
    m = deployment.conv_any_size()
    per_pixel = 8 * 27 + 4 * 8
    rep = api.analyze(m)
    assert rep.stats.input_shapes == {"x": [1, 3, 96, 96]}  # the first size verification tries
    assert rep.stats.macs == per_pixel * 96 * 96
    rep = api.analyze(m, input_shape=["x=1,3,48,320"])
    assert rep.stats.input_shapes == {"x": [1, 3, 48, 320]} and rep.stats.macs == per_pixel * 48 * 320
    src = save(tmp_path, "m", m)
    r = spa("analyze", src, "--input-shape", "1,3,48,320")
    assert r.returncode == 0 and "at x=1×3×48×320" in r.stdout.replace("\n", ""), r.stdout


def test_macs_of_a_model_that_runs_at_one_size_only(tmp_path):
    src = save(tmp_path, "m", deployment.fixed_length_sequence())
    d = json.loads(spa("prune", src, "-o", tmp_path / "p.onnx", "--json").stdout)
    s = deployment.SEQ
    assert d["before"]["input_shapes"] == {"x": [1, 4, s]}
    assert d["before"]["macs"] == 16 * 4 * s + 8 * 16 * s
    assert d["after"]["input_shapes"] == {"x": [1, 4, s]} and d["after"]["macs"] == 8 * 4 * s + 8 * 8 * s


def test_static_models_keep_their_declared_size():
    from spa.report import model_stats_of

    m = deployment.nothing_prunable()
    rep = api.analyze(m)
    assert rep.stats.input_shapes == {} and rep.stats.macs == model_stats_of(m).macs == 8 * 27 * 64


def test_bench_times_at_a_size_the_model_runs_and_says_which(tmp_path):
    src = save(tmp_path, "m", deployment.fixed_length_sequence())
    r = spa("bench", src, "--runs", "2", "--warmup", "1", "--no-memory", "--json")
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)["benches"][0]
    assert b["input_shapes"] == {"x": [1, 4, deployment.SEQ]}
    r = spa("bench", src, "--runs", "2", "--warmup", "1", "--no-memory", "--batch", "3")
    assert r.returncode == 0 and f"inputs x=3×4×{deployment.SEQ}" in r.stdout, r.stdout
    src2 = save(tmp_path, "c", deployment.conv_any_size())
    r = spa("bench", src2, "--runs", "2", "--warmup", "1", "--no-memory", "--input-shape", "x=1,3,40,24", "--json")
    b = json.loads(r.stdout)["benches"][0]
    assert b["input_shapes"] == {"x": [1, 3, 40, 24]} and b["macs"] == (8 * 27 + 4 * 8) * 40 * 24


@pytest.mark.parametrize("cmd, spec, needle", [
    ("analyze", "y=1,3,8,8", "has no input 'y'"),
    ("prune", "x=1,3,8", "has 4 dims, got 3"),
    ("bench", "x=1,4,8,8", "dim 1 of 'x' is fixed at 3"),
    ("prune", "x=1,3,a,8", "positive integers"),
    ("analyze", "x=1,3,0,8", "positive integers"),
])
def test_bad_input_shape_is_one_line(tmp_path, cmd, spec, needle):
    src = save(tmp_path, "m", deployment.conv_any_size())
    extra = {"analyze": (), "prune": ("-o", tmp_path / "p.onnx"), "bench": ("--no-memory",)}[cmd]
    one_line_error(spa(cmd, src, *extra, "--input-shape", spec), 2, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_wild_recogniser_bench_runs_at_a_size_it_accepts():
    wild = pytest.importorskip("models.wild")
    try:
        path = wild.path("ppocr_rec")
    except wild.WildModelMissing:
        pytest.skip("rapidocr-onnxruntime not installed")
    r = spa("bench", path, "--runs", "1", "--warmup", "0", "--no-memory", "--json")
    assert r.returncode == 0, r.stderr
    dims = json.loads(r.stdout)["benches"][0]["input_shapes"]["x"]
    assert dims[:2] == [1, 3]
    r = spa("bench", path, "--runs", "1", "--warmup", "0", "--no-memory", "--input-shape", "x=1,3,48,320", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["benches"][0]["input_shapes"]["x"] == [1, 3, 48, 320]
