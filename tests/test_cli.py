"""The `spa` command as a user runs it: exit codes, one-line errors, nothing lost, atomic outputs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "models" / "samples" / "simple_cnn.onnx"


def spa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spa", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def assert_one_line_error(r: subprocess.CompletedProcess, code: int, needle: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("spa: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def test_prune_sample_prints_table_and_writes(tmp_path):
    out = tmp_path / "small.onnx"
    r = spa("prune", SAMPLE, "-o", out, "--ratio", "0.5")
    assert r.returncode == 0, r.stderr
    assert "params" in r.stdout and "MACs" in r.stdout
    m = onnx.load(out)
    onnx.checker.check_model(m, full_check=True)
    assert out.stat().st_size < SAMPLE.stat().st_size
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_prune_json_and_plan_roundtrip(tmp_path):
    out1, out2, plan = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "plan.json"
    r = spa("prune", SAMPLE, "-o", out1, "--ratio", "0.3", "--criterion", "l2", "--save-plan", plan, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["after"]["params"] < d["before"]["params"] and d["groups"]["pruned"] > 0
    r = spa("prune", SAMPLE, "-o", out2, "--plan", plan, "--json")
    assert r.returncode == 0, r.stderr
    a, b = onnx.load(out1), onnx.load(out2)
    assert [list(t.dims) for t in a.graph.initializer] == [list(t.dims) for t in b.graph.initializer]


def test_analyze_and_check():
    r = spa("analyze", SAMPLE, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["prunable_groups"] >= 2
    assert all(g["reason"] for g in d["groups"] if not g["prunable"])
    r = spa("analyze", SAMPLE)
    assert r.returncode == 0 and "prunable" in r.stdout
    r = spa("check", SAMPLE, "--trials", "2")
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr


@pytest.mark.parametrize("ratio", ["1.0", "-0.1", "1.5", "nan"])
def test_ratio_out_of_range(tmp_path, ratio):
    out = tmp_path / "o.onnx"
    assert_one_line_error(spa("prune", SAMPLE, "-o", out, "--ratio", ratio), 2, "ratio")
    assert not out.exists()


def test_output_equal_to_input_is_refused(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(SAMPLE.read_bytes())
    before = digest(p)
    assert_one_line_error(spa("prune", p, "-o", p), 2, "input")
    assert_one_line_error(spa("prune", p, "-o", tmp_path / "." / "m.onnx"), 2, "input")
    assert digest(p) == before


def test_unknown_criterion(tmp_path):
    assert_one_line_error(spa("prune", SAMPLE, "-o", tmp_path / "o.onnx", "-c", "magic"), 2, "criterion")


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["empty"] = tmp_path / "empty.onnx"
    files["empty"].write_bytes(b"")
    files["truncated"] = tmp_path / "trunc.onnx"
    files["truncated"].write_bytes(SAMPLE.read_bytes()[:5000])
    files["text"] = tmp_path / "text.onnx"
    files["text"].write_text("this is not a model\n" * 10)
    files["missing"] = tmp_path / "nope.onnx"
    m = onnx.load(SAMPLE)
    m.opset_import[0].version = 99
    files["opset_new"] = tmp_path / "opset99.onnx"
    onnx.save(m, files["opset_new"])
    m = onnx.load(SAMPLE)
    m.opset_import[0].version = 5
    files["opset_old"] = tmp_path / "opset5.onnx"
    onnx.save(m, files["opset_old"])
    ext = tmp_path / "ext"
    ext.mkdir()
    m = onnx.load(SAMPLE)
    onnx.save(m, ext / "m.onnx", save_as_external_data=True, location="m.data", size_threshold=0)
    (ext / "m.data").unlink()
    files["external_missing"] = ext / "m.onnx"
    return files


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("empty", "empty"),
        ("truncated", "ONNX"),
        ("text", "ONNX"),
        ("missing", "no such file"),
        ("opset_new", "opset 99"),
        ("opset_old", "opset 5"),
        ("external_missing", "external data"),
    ],
)
@pytest.mark.parametrize("cmd", ["prune", "analyze"])
def test_bad_model_files(tmp_path, kind, needle, cmd):
    f = _bad_files(tmp_path)[kind]
    before = digest(f) if f.exists() else None
    out = tmp_path / "out.onnx"
    args = ["prune", f, "-o", out] if cmd == "prune" else ["analyze", f]
    assert_one_line_error(spa(*args), 3, needle)
    assert not out.exists()
    if before is not None:
        assert digest(f) == before


def test_unwritable_output(tmp_path):
    assert_one_line_error(spa("prune", SAMPLE, "-o", tmp_path / "no" / "dir" / "o.onnx"), 5, "does not exist")


def test_existing_output_replaced_atomically(tmp_path):
    out = tmp_path / "o.onnx"
    out.write_bytes(b"old")
    r = spa("prune", SAMPLE, "-o", out, "--ratio", "0.25")
    assert r.returncode == 0, r.stderr
    onnx.checker.check_model(onnx.load(out))


def test_external_data_model_roundtrip(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    m = onnx.load(SAMPLE)
    onnx.save(m, src / "m.onnx", save_as_external_data=True, location="m.data", size_threshold=0)
    out = tmp_path / "o.onnx"
    r = spa("prune", src / "m.onnx", "-o", out, "--ratio", "0.5")
    assert r.returncode == 0, r.stderr
    onnx.checker.check_model(onnx.load(out), full_check=True)


def test_unknown_op_is_frozen_not_wrong(tmp_path):
    m = onnx.load(SAMPLE)
    # route the first activation through an op spa has no rule for
    node = next(n for n in m.graph.node if n.op_type == "Relu")
    node.op_type = "ThisOpDoesNotExist"
    node.domain = "custom.domain"
    m.opset_import.append(helper.make_opsetid("custom.domain", 1))
    p = tmp_path / "custom.onnx"
    onnx.save(m, p)
    r = spa("analyze", p, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert "ThisOpDoesNotExist (domain custom.domain)" in d["ops_without_rule"]
    assert any("has no channel rule" in g["reason"] for g in d["groups"])


def _graph_model(nodes, tmp_path: Path, name: str) -> Path:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    p = tmp_path / name
    p.write_bytes(m.SerializeToString())
    return p


def test_dangling_input_and_cycle_are_refused(tmp_path):
    dangling = _graph_model([helper.make_node("Add", ["x", "ghost"], ["y"])], tmp_path, "dangling.onnx")
    assert_one_line_error(spa("analyze", dangling), 3, "nothing defines")
    cyc = _graph_model(
        [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
         helper.make_node("Identity", ["a"], ["y"])], tmp_path, "cycle.onnx")
    assert_one_line_error(spa("prune", cyc, "-o", tmp_path / "o.onnx"), 3, "cycle")
    assert not (tmp_path / "o.onnx").exists()


def test_unsorted_nodes_are_analysed_in_topological_order(tmp_path):
    m = onnx.load(SAMPLE)
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    p = tmp_path / "unsorted.onnx"
    onnx.save(m, p)
    r = spa("prune", p, "-o", tmp_path / "o.onnx", "--oracle", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    sorted_run = json.loads(spa("prune", SAMPLE, "-o", tmp_path / "o2.onnx", "--json").stdout)
    assert d["after"]["params"] == sorted_run["after"]["params"]


def test_quiet_prints_nothing(tmp_path):
    r = spa("prune", SAMPLE, "-o", tmp_path / "o.onnx", "--quiet")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    assert (tmp_path / "o.onnx").exists()


def test_html_reports_and_file_modes(tmp_path):
    out, page = tmp_path / "o.onnx", tmp_path / "r.html"
    r = spa("prune", SAMPLE, "-o", out, "--html", page, "-q")
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    assert "→" in text and "<svg" in text
    from spa.modelfile import default_mode

    assert (out.stat().st_mode & 0o777) == (page.stat().st_mode & 0o777) == default_mode()  # not mkstemp's 0600
    r = spa("analyze", SAMPLE, "--html", tmp_path / "a.html")
    assert r.returncode == 0 and (tmp_path / "a.html").exists()
    assert_one_line_error(spa("analyze", SAMPLE, "--html", tmp_path / "nodir" / "a.html"), 5, "does not exist")


def test_model_onnxruntime_cannot_run_is_refused(tmp_path):
    """bfloat16 weights: onnxruntime's CPU provider has no bf16 Conv, so nothing can be verified: refuse."""
    from onnx import numpy_helper

    m = onnx.load(SAMPLE)
    g = m.graph
    for i, t in enumerate(g.initializer):
        if t.data_type == onnx.TensorProto.FLOAT:
            a = numpy_helper.to_array(t)
            bf = helper.make_tensor(t.name, onnx.TensorProto.BFLOAT16, a.shape,
                                    vals=(a.view(np.uint32) >> 16).astype(np.uint16).tobytes(), raw=True)
            g.initializer[i].CopyFrom(bf)
    for v in list(g.input) + list(g.output):
        v.type.tensor_type.elem_type = onnx.TensorProto.BFLOAT16
    p = tmp_path / "bf16.onnx"
    onnx.save(m, p)
    before = digest(p)
    out = tmp_path / "o.onnx"
    assert_one_line_error(spa("prune", p, "-o", out), 4, "original model either")
    # the pruned bytes were being written while verification ran: the temporary file is gone too
    assert not out.exists() and digest(p) == before and not list(tmp_path.glob(".*spa-tmp"))


def test_already_pruned_to_width_one(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert spa("prune", SAMPLE, "-o", a, "--ratio", "0.99", "-q").returncode == 0
    r = spa("prune", a, "-o", b, "--ratio", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["groups"]["pruned"] == 0 and d["after"]["params"] == d["before"]["params"]
    groups = json.loads(spa("analyze", a, "--json").stdout)["groups"]
    assert not any(g["prunable"] for g in groups)
    assert sum(g["reason"] == "single channel" for g in groups) >= 4


def test_bench_side_by_side(tmp_path):
    out = tmp_path / "o.onnx"
    assert spa("prune", SAMPLE, "-o", out, "-q").returncode == 0
    r = spa("bench", SAMPLE, out, "--runs", "5", "--warmup", "1", "--no-memory", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [row["params_ratio"] for row in d["rows"]][0] == 1.0
    assert d["rows"][1]["params_ratio"] < 1.0
    assert_one_line_error(spa("bench", SAMPLE, "--provider", "cuda", "--runs", "2"), 2, "cuda")


def test_sweep_parallel_with_plot(tmp_path):
    out_dir, png = tmp_path / "sw", tmp_path / "sweep.png"
    r = spa("sweep", SAMPLE, "--ratios", "0.5,0.25", "--jobs", "2", "--out-dir", out_dir, "--runs", "3",
            "--plot", png, "--json")
    assert r.returncode == 0, r.stderr
    pts = json.loads(r.stdout)
    assert [p["ratio"] for p in pts] == [0.0, 0.25, 0.5]
    assert pts[2]["macs"] < pts[1]["macs"] < pts[0]["macs"]
    assert len(list(out_dir.glob("*.onnx"))) == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_one_line_error(spa("sweep", SAMPLE, "--ratios", "0.5,1.2"), 2, "ratio")
    assert_one_line_error(spa("sweep", SAMPLE, "--ratios", "a,b"), 2, "ratios")


def test_prune_many_models_in_parallel(tmp_path):
    import shutil

    a, b, bad = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "bad.onnx"
    shutil.copy(SAMPLE, a)
    shutil.copy(SAMPLE, b)
    bad.write_bytes(b"not a model")
    out = tmp_path / "out"
    r = spa("prune", a, bad, b, "--out-dir", out, "--jobs", "2", "--ratio", "0.5")
    assert r.returncode == 3, (r.stdout, r.stderr)  # the failing model's exit code; the others still ran
    ok = [ln for ln in r.stdout.splitlines() if ln.startswith("ok")]
    assert len(ok) == 2 and "a.onnx" in ok[0] and "b.onnx" in ok[1], r.stdout
    assert any(ln.startswith("FAILED") and "bad.onnx" in ln for ln in r.stderr.splitlines()), r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.onnx", "b.onnx"]
    for p in (out / "a.onnx", out / "b.onnx"):
        onnx.checker.check_model(onnx.load(p), full_check=True)
        assert p.stat().st_size < SAMPLE.stat().st_size
    r = spa("prune", a, b, "--out-dir", out, "--json")
    assert r.returncode == 0, r.stderr
    assert [d["ok"] for d in json.loads(r.stdout)] == [True, True]


def test_prune_many_refuses_ambiguous_outputs(tmp_path):
    (tmp_path / "x").mkdir()
    c = tmp_path / "x" / "simple_cnn.onnx"
    c.write_bytes(SAMPLE.read_bytes())
    assert_one_line_error(spa("prune", SAMPLE, c, "--out-dir", tmp_path / "o"), 2, "rename one")
    assert_one_line_error(spa("prune", SAMPLE, c, "-o", tmp_path / "o.onnx"), 2, "--out-dir")
    assert_one_line_error(spa("prune", SAMPLE), 2, "-o/--output")
