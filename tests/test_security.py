"""Security section: each test crafts an attacking input of one class from issue 15 and checks that spa
refuses it with one line and the right exit code, and touches nothing it was not asked to write.

Most cases run the command in-process (`run_cli`); the fault-injection cases need real processes (a kill, a
signal, two concurrent runs) and use `python -m spa` through a small driver that hooks `os.replace`."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models import big_mlp
from spa import io_safety

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "models" / "samples" / "simple_cnn.onnx"


def run_cli(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`spa ARGV` in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from spa import cli

    out, err = io.StringIO(), io.StringIO()
    old_env = dict(os.environ)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    os.environ.update(env or {})
    old_argv = sys.argv
    sys.argv = ["spa", *map(str, argv)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
                code = 0
            except SystemExit as e:
                code = int(e.code or 0)
    finally:
        sys.argv = old_argv
        os.environ.clear()
        os.environ.update(old_env)
        for s, h in handlers.items():
            signal.signal(s, h)
    return code, out.getvalue(), err.getvalue()


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(("spa: error:", "spa prune: error:", "spa analyze: error:")), err
    return lines[0]


def digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())
            if p.is_file() and not p.is_symlink() and stat.S_ISREG(p.lstat().st_mode)}


def run_model(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.fixture
def ext(tmp_path: Path) -> Path:
    """A small model whose weights live in the external data file m.onnx.data."""
    big_mlp.build(tmp_path / "m.onnx", d=32, f=64, layers=3, k=5)
    return tmp_path / "m.onnx"


# ------------------------------------------------------------ 1. never write over what is read
@pytest.mark.parametrize("stream", ["0", ""])
def test_output_onto_input_external_data_refused(ext: Path, stream: str) -> None:
    before = digests(ext.parent)
    code, _, err = run_cli("prune", ext, "-o", ext.parent / "m.onnx.data", "-q", env={"SPA_STREAM_BYTES": stream})
    assert code == 2 and "external data" in one_line_error(err)
    assert digests(ext.parent) == before


@pytest.mark.parametrize("flag", ["--html", "--save-plan"])
def test_secondary_outputs_onto_inputs_refused(ext: Path, flag: str) -> None:
    d = ext.parent
    before = digests(d)
    for target in (d / "m.onnx.data", ext):  # the weights, the model
        code, _, err = run_cli("prune", ext, "-o", d / "s.onnx", flag, target, "-q")
        assert code == 2, err
        one_line_error(err)
    code, _, err = run_cli("analyze", ext, "--html", d / "m.onnx.data")
    assert code == 2 and "external data" in one_line_error(err)
    assert digests(d) == before and not (d / "s.onnx").exists()


def test_links_to_inputs_refused(ext: Path) -> None:
    d = ext.parent
    os.link(d / "m.onnx.data", d / "hard.bin")  # a hard link to the weights
    (d / "soft.onnx").symlink_to(ext)  # a symlink to the model
    before = digests(d)
    for target in ("hard.bin", "soft.onnx"):
        code, _, err = run_cli("prune", ext, "-o", d / target, "-q")
        assert code == 2, err
        one_line_error(err)
    assert digests(d) == before


def test_outputs_onto_each_other_and_plan_refused(tmp_path: Path) -> None:
    out = tmp_path / "s.onnx"
    for extra in (["--save-plan", out], ["--html", out]):
        code, _, err = run_cli("prune", SAMPLE, "-o", out, *extra, "-q")
        assert code == 2 and "same file" in one_line_error(err)
    plan = tmp_path / "p.json"
    assert run_cli("prune", SAMPLE, "-o", out, "--save-plan", plan, "-q")[0] == 0
    code, _, err = run_cli("prune", SAMPLE, "-o", plan, "--plan", plan, "-q")
    assert code == 2 and "--plan" in one_line_error(err)
    assert plan.read_text().startswith("{")


def test_check_io_is_one_list_per_direction(ext: Path, tmp_path: Path) -> None:
    """A new option is one more (label, path) pair: reads and writes are compared whatever their labels."""
    calib = tmp_path / "c.npz"
    calib.write_bytes(b"x")
    with pytest.raises(Exception, match="--teacher"):
        io_safety.check_io(models=[ext], reads=[("--teacher", calib)], writes=[("--graphml", calib)])
    assert [p.name for p in io_safety.model_files(ext)] == ["m.onnx", "m.onnx.data"]


def _const_model(values: np.ndarray, as_initializer: bool) -> onnx.ModelProto:
    t = onnx.numpy_helper.from_array(values, "w")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [values.size])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [values.size])
    nodes = [onnx.helper.make_node("Add", ["x", "w"], ["y"])]
    if not as_initializer:
        nodes.insert(0, onnx.helper.make_node("Constant", [], ["w"], value=t))
    g = onnx.helper.make_graph(nodes, "g", [x], [y], initializer=[t] if as_initializer else [])
    return onnx.helper.make_model(g)


def test_external_data_scan_skips_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan for external references steps over the initializers' raw weights (bytes spelling "location"
    there are numbers, not a reference, and need no parse), but finds a reference anywhere else: a Constant
    node's tensor, or a file it cannot walk."""
    words = np.frombuffer(b"location" * 4, dtype=np.float32).copy()
    inline = tmp_path / "inline.onnx"
    onnx.save_model(_const_model(words, as_initializer=True), str(inline))
    assert b"location" in inline.read_bytes()
    with monkeypatch.context() as mp:  # no parse: the weights' bytes are not mistaken for a reference
        mp.setattr(onnx, "load", lambda *a, **k: pytest.fail("parsed a file without external references"))
        assert io_safety.model_files(inline) == [inline]
    const = tmp_path / "const.onnx"
    m = _const_model(words, as_initializer=False)
    onnx.external_data_helper.convert_model_to_external_data(m, location="const.bin", size_threshold=0,
                                                             convert_attribute=True)
    onnx.save_model(m, str(const))
    assert [p.name for p in io_safety.model_files(const)] == ["const.onnx", "const.bin"]
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(const.read_bytes()[:-3])  # not walkable: parsed, which decides
    assert io_safety.model_files(truncated)[0] == truncated


def test_raw_data_lengths_read_from_the_headers() -> None:
    """What the loader's size check uses instead of copying each weight out of the proto to measure it."""
    m = _sample()
    m.graph.initializer[0].CopyFrom(onnx.helper.make_tensor(m.graph.initializer[0].name, onnx.TensorProto.FLOAT,
                                                            [2], [1.0, 2.0]))  # float_data: no raw_data
    blob = m.SerializeToString()
    lengths = io_safety.raw_data_lengths(blob)
    assert lengths == [len(t.raw_data) if t.HasField("raw_data") else None for t in m.graph.initializer]
    assert lengths[0] is None and lengths[1] > 0
    assert io_safety.raw_data_lengths(blob[:-3]) is None  # cut: not walkable, the loader measures instead


def test_prefetched_bytes_only_for_the_same_file(tmp_path: Path) -> None:
    """The read-ahead of the input model is used only if the file is still the one read (same inode, size and
    mtime); the loader reads it itself otherwise."""
    m = tmp_path / "m.onnx"
    m.write_bytes(SAMPLE.read_bytes())
    io_safety.prefetch(m)
    assert io_safety.take_prefetched(m) == SAMPLE.read_bytes()
    assert io_safety.take_prefetched(m) is None  # handed out once
    io_safety.prefetch(m)
    m.write_bytes(b"changed")
    assert io_safety.take_prefetched(m) is None
    io_safety.prefetch(tmp_path)  # not a regular file: nothing read
    assert io_safety.take_prefetched(tmp_path) is None


def test_pending_write_appears_only_on_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "o.onnx"
    out.write_bytes(b"old")
    w = io_safety.PendingWrite(out, b"new" * 1000)
    w.abort()  # e.g. verification failed while it was being written
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["o.onnx"]
    w = io_safety.PendingWrite(out, b"new" * 1000)
    assert w.commit() == 3000 and out.read_bytes() == b"new" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.onnx"]
    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io_safety.os, "fsync", full)  # the disk filled up under the writer: exit 5 at commit
    w = io_safety.PendingWrite(out, b"newer")
    with pytest.raises(io_safety.WriteFailed, match="No space left"):
        w.commit()
    assert out.read_bytes() == b"new" * 1000 and sorted(p.name for p in tmp_path.iterdir()) == ["o.onnx"]


# ------------------------------------------------------------ 2. special files are never replaced
def _specials(d: Path) -> dict[str, Path]:
    out = {}
    os.mkfifo(d / "fifo")
    out["FIFO"] = d / "fifo"
    (d / "fd1").symlink_to("/proc/self/fd/1")
    out["symbolic link"] = d / "fd1"
    try:
        os.mknod(d / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a copy of /dev/null (needs root)
        out["character device"] = d / "null"
    except PermissionError:
        pass
    return out


def test_special_destinations_refused_and_kept(tmp_path: Path) -> None:
    for kind, p in _specials(tmp_path).items():
        mode = p.lstat().st_mode
        for flag in ("-o", "--save-plan", "--html"):
            argv = ["-o", tmp_path / "s.onnx", flag, p] if flag != "-o" else ["-o", p]
            code, _, err = run_cli("prune", SAMPLE, *argv, "-q")
            assert code == 5 and kind in one_line_error(err), (flag, err)
            assert p.lstat().st_mode == mode
    assert not (tmp_path / "s.onnx").exists()


def test_unwritable_and_too_long_destinations_exit_5(tmp_path: Path) -> None:
    code, _, err = run_cli("prune", SAMPLE, "-o", "/sys/x.onnx", "-q")
    assert code == 5, err
    one_line_error(err)
    code, _, err = run_cli("prune", SAMPLE, "-o", tmp_path / ("a" * 256 + ".onnx"), "-q")
    assert code == 5 and "long" in one_line_error(err)
    long = tmp_path / ("b" * 250 + ".onnx")  # 255 bytes: the name fits, so must the temporary one
    assert run_cli("prune", SAMPLE, "-o", long, "-q")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [long.name]


# ------------------------------------------------------------ 4. every destination checked before the work
@pytest.mark.parametrize("flag", ["--html", "--save-plan"])
def test_missing_directory_of_a_secondary_output_fails_first(tmp_path: Path, flag: str) -> None:
    code, _, err = run_cli("prune", SAMPLE, "-o", tmp_path / "s.onnx", flag, tmp_path / "nodir" / "x", "-q")
    assert code == 5 and "does not exist" in one_line_error(err)
    assert list(tmp_path.iterdir()) == []  # the model was not written either


def test_analyze_html_checked_first(tmp_path: Path) -> None:
    code, out, err = run_cli("analyze", SAMPLE, "--html", tmp_path / "nodir" / "r.html")
    assert code == 5 and out == ""
    one_line_error(err)


# ------------------------------------------------------------ 3. streamed writes: one commit point
def test_streamed_output_never_replaces_a_users_data_file(ext: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.onnx"
    (tmp_path / "o.onnx.data").write_bytes(b"the user's own file")
    assert run_cli("prune", ext, "-o", out, "-q", env={"SPA_STREAM_BYTES": "0"})[0] == 0
    assert (tmp_path / "o.onnx.data").read_bytes() == b"the user's own file"
    x = np.ones((2, 32), np.float32)
    assert run_model(out, x).shape == (2, 5)
    # a second run replaces the first one's data file (spa's own, no longer referenced), nothing else
    first = {p.name for p in tmp_path.glob("o.onnx.*.data")}
    assert run_cli("prune", ext, "-o", out, "-q", "--ratio", "0.25", env={"SPA_STREAM_BYTES": "0"})[0] == 0
    second = {p.name for p in tmp_path.glob("o.onnx.*.data")}
    assert len(first) == len(second) == 1 and first != second
    assert (tmp_path / "o.onnx.data").read_bytes() == b"the user's own file"


DRIVER = textwrap.dedent("""
    import os, sys, time
    mode, k = sys.argv[1], int(sys.argv[2])
    real, calls = os.replace, [0]
    def hooked(a, b, *r, **kw):
        calls[0] += 1
        if mode == "kill" and calls[0] == k:
            os._exit(137)  # as SIGKILL: no clean-up runs
        res = real(a, b, *r, **kw)
        if mode == "slow" and calls[0] == 1:
            time.sleep(float(os.environ.get("SPA_TEST_SLEEP", "0.5")))
        return res
    os.replace = hooked
    if mode == "term":  # SIGTERM arrives while the model is being assembled
        import signal
        from spa import stream
        finish = stream.Staging.finish
        def late(self, *a, **kw):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            return finish(self, *a, **kw)
        stream.Staging.finish = late
    sys.argv = ["spa"] + sys.argv[3:]
    from spa.cli import main
    main()
""")


def _driver(tmp_path: Path, mode: str, k: int, *argv: object, wait: bool = True):
    drv = tmp_path / "driver.py"
    drv.write_text(DRIVER)
    env = dict(os.environ, SPA_STREAM_BYTES="0", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(drv), mode, str(k), *map(str, argv)]
    if not wait:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)


def _reference(ext: Path, ratio: str, where: Path) -> np.ndarray:
    where.mkdir()
    assert run_cli("prune", ext, "-o", where / "r.onnx", "-q", "--ratio", ratio)[0] == 0
    return run_model(where / "r.onnx", np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32))


def test_kill_at_every_step_of_a_streamed_write(ext: Path, tmp_path: Path) -> None:
    """A kill before, between and after the two renames of a streamed write: the output is the old complete
    model or the new complete one, never a mixture; a later run removes the dead run's staging directory."""
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
    old_y, new_y = _reference(ext, "0.25", tmp_path / "a"), _reference(ext, "0.5", tmp_path / "b")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.onnx"
    results = []
    for k in (1, 2, 3):  # kill at the data rename, at the model rename (between the two), after both
        assert run_cli("prune", ext, "-o", out, "-q", "--ratio", "0.25", env={"SPA_STREAM_BYTES": "0"})[0] == 0
        r = _driver(tmp_path, "kill", k, "prune", ext, "-o", out, "-q", "--ratio", "0.5")
        assert r.returncode == (137 if k < 3 else 0), r.stderr
        y = run_model(out, x)
        results.append("old" if np.array_equal(y, old_y) else "new" if np.array_equal(y, new_y) else "mixed")
        refs = io_safety.model_files(out)[1:]
        assert len(refs) == 1 and refs[0].exists()
    assert results == ["old", "old", "new"]
    stale = [p for p in out_dir.iterdir() if p.name.endswith(".spa-staging")]
    assert stale  # the killed runs left their staging directories ...
    for p in stale:
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    assert run_cli("prune", ext, "-o", out, "-q", env={"SPA_STREAM_BYTES": "0"})[0] == 0
    assert not [p for p in out_dir.iterdir() if p.name.endswith(".spa-staging")]  # ... the next run removed them


def test_concurrent_streamed_writes_to_one_path(ext: Path, tmp_path: Path) -> None:
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
    ys = [_reference(ext, r, tmp_path / f"ref{r}") for r in ("0.25", "0.5")]
    out = tmp_path / "o.onnx"
    procs = [_driver(tmp_path, "slow", 0, "prune", ext, "-o", out, "-q", "--ratio", r, wait=False)
             for r in ("0.25", "0.5")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    y = run_model(out, x)
    assert any(np.array_equal(y, ref) for ref in ys)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".spa-staging", ".spa-tmp"))]


# ------------------------------------------------------------ 5. no staging directory left behind
def test_streamed_failures_leave_no_staging(ext: Path, tmp_path: Path) -> None:
    m = onnx.load(ext, load_external_data=False)
    t = next(t for t in m.graph.initializer if t.name == "l0.w1")
    for e in t.external_data:
        if e.key == "offset":
            e.value = str(10**9)  # past the end of the data file
    onnx.save(m, ext.parent / "bad.onnx")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_cli("prune", ext.parent / "bad.onnx", "-o", out / "o.onnx", "-q",
                           env={"SPA_STREAM_BYTES": "0"})
    assert code == 3, err
    one_line_error(err)
    assert list(out.iterdir()) == []


def test_sigterm_cleans_the_staging_directory(ext: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    r = _driver(tmp_path, "term", 0, "prune", ext, "-o", out / "o.onnx", "-q")
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    one_line_error(r.stderr)
    assert list(out.iterdir()) == []


def test_stale_debris_of_live_or_recent_writers_is_kept(tmp_path: Path) -> None:
    live = tmp_path / f".o.onnx.{os.getpid()}.0123abcd.spa-staging"
    recent = tmp_path / ".o.onnx.999999999.0123abcd.spa-tmp"
    dead = tmp_path / ".o.onnx.999999999.89abcdef.spa-staging"
    foreign = tmp_path / ".o.onnx.999999999.spa-staging"  # not our exact pattern
    for p in (live, dead, foreign):
        p.mkdir()
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    recent.write_bytes(b"")
    assert io_safety.remove_stale(tmp_path) == [dead]
    assert live.exists() and recent.exists() and foreign.exists() and not dead.exists()


# ------------------------------------------------------------ 6, 8, 9. malformed models: exit 3, one line
def _sample() -> onnx.ModelProto:
    return onnx.load(SAMPLE)


def _rename(m: onnx.ModelProto, old: str, new: str) -> None:
    for t in m.graph.initializer:
        if t.name == old:
            t.name = new
    for n in m.graph.node:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new


def _duplicate_initializer(m: onnx.ModelProto) -> None:
    from onnx import numpy_helper

    t = m.graph.initializer[0]
    m.graph.initializer.append(numpy_helper.from_array(np.ones_like(numpy_helper.to_array(t)), t.name))


def _shadowed_input(m: onnx.ModelProto) -> None:
    t = m.graph.initializer[0]
    m.graph.input.append(onnx.helper.make_tensor_value_info(t.name, onnx.TensorProto.FLOAT, [1, 2, 3]))


def _short_raw_data(m: onnx.ModelProto) -> None:
    t = next(t for t in m.graph.initializer if len(t.raw_data) > 8)
    t.raw_data = t.raw_data[:-4]


def _huge_dims(m: onnx.ModelProto) -> None:
    next(t for t in m.graph.initializer if t.dims).dims[0] = 10**12


def _corrupt_constant(m: onnx.ModelProto) -> None:
    v = onnx.helper.make_tensor("v", onnx.TensorProto.FLOAT, [4, 4], [1.0] * 16)
    del v.float_data[3:]  # 3 values for a 4x4 tensor
    m.graph.node.insert(0, onnx.helper.make_node("Constant", [], ["c"], value=v))


def _huge_kernel(m: onnx.ModelProto) -> None:
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    next(a for a in conv.attribute if a.name == "kernel_shape").ints[:] = [10**9, 10**9]


def _wide_input(m: onnx.ModelProto) -> None:
    m.graph.input[0].type.tensor_type.shape.dim[-1].dim_value = 10**9


def _nan_weight(m: onnx.ModelProto) -> None:
    from onnx import numpy_helper

    t = next(t for t in m.graph.initializer if len(t.dims) == 4)
    a = numpy_helper.to_array(t).copy()
    a[0, 0, 0, 0] = np.nan
    t.CopyFrom(numpy_helper.from_array(a, t.name))


MALFORMED = {"duplicate initializer": (_duplicate_initializer, "defined twice"),
             "input shadowed by an initializer of another shape": (_shadowed_input, "shadowed"),
             "raw data shorter than the shape": (_short_raw_data, "needs"),
             "dims declaring 1e12 rows": (_huge_dims, "needs"),
             "Constant with too few values": (_corrupt_constant, "needs"),
             "kernel_shape 1e9": (_huge_kernel, "inconsistent"),
             "graph input 1e9 wide": (_wide_input, "SPA_MAX_INPUT_BYTES"),
             "NaN in a weight": (_nan_weight, "NaN")}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_models_exit_3(tmp_path: Path, case: str) -> None:
    craft, words = MALFORMED[case]
    m = _sample()
    craft(m)
    onnx.save(m, tmp_path / "bad.onnx")
    for argv in (["prune", tmp_path / "bad.onnx", "-o", tmp_path / "o.onnx", "-q", "--no-self-check"],
                 ["analyze", tmp_path / "bad.onnx"]):
        if argv[0] == "analyze" and case == "NaN in a weight":
            continue  # analysis does not rank channels
        code, _, err = run_cli(*argv)
        assert code == 3 and words in one_line_error(err), (argv[0], err)
    assert not (tmp_path / "o.onnx").exists()


def test_input_limit_is_raised_by_its_env(tmp_path: Path) -> None:
    m = _sample()
    m.graph.input[0].type.tensor_type.shape.dim[-1].dim_value = 10**9
    onnx.save(m, tmp_path / "wide.onnx")
    from spa import modelfile

    with pytest.raises(Exception, match="SPA_MAX_INPUT_BYTES"):
        modelfile.load(tmp_path / "wide.onnx")
    os.environ[modelfile.INPUT_BYTES_ENV] = str(10**13)
    try:
        modelfile.load(tmp_path / "wide.onnx")  # only the declared size is looked at: no allocation
    finally:
        del os.environ[modelfile.INPUT_BYTES_ENV]


@pytest.mark.parametrize("entry", [("offset", "-5"), ("location", "m.onnx.data\0x"), ("length", "abc")])
@pytest.mark.parametrize("stream", ["0", ""])
def test_bad_external_entries_exit_3(ext: Path, tmp_path: Path, entry: tuple[str, str], stream: str) -> None:
    m = onnx.load(ext, load_external_data=False)
    t = next(t for t in m.graph.initializer if t.name == "l0.w1")
    keys = [e.key for e in t.external_data]
    if entry[0] not in keys:
        e = t.external_data.add()
        e.key = entry[0]
    next(e for e in t.external_data if e.key == entry[0]).value = entry[1]
    onnx.save(m, ext.parent / "bad.onnx")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_cli("prune", ext.parent / "bad.onnx", "-o", out / "o.onnx", "-q",
                           env={"SPA_STREAM_BYTES": stream})
    assert code == 3, err
    one_line_error(err)
    assert list(out.iterdir()) == []


def test_big_non_model_file_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:  # sparse: 3 GB declared, nothing stored
        f.truncate(3 * 2**30)
    import tracemalloc

    tracemalloc.start()
    code, _, err = run_cli("analyze", big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 3 and "2 GiB" in one_line_error(err)
    assert peak < 200 * 2**20


def test_self_check_blames_a_malformed_file_not_spa() -> None:
    from spa import api

    m = _sample()
    _huge_kernel(m)
    assert "malformed" in api._blame(m)  # the message chosen when the self-check fails
    assert "bug in spa" in api._blame(_sample())


# ------------------------------------------------------------ 8. plans and arguments: exit 2, one line
@pytest.mark.parametrize("text", ['{"groups": [{"key": "k", "size": 4, "keep": [0.5]}]}',
                                  '{"groups": [{"key": "k", "size": 4, "keep": ["1"]}]}',
                                  '{"groups": [{"key": "k", "size": 4, "keep": [NaN]}]}',
                                  '{"groups": [{"key": "k", "size": "4", "keep": [1]}]}',
                                  '{"groups": [], "ratio": "x"}',
                                  "[" * 100000 + "]" * 100000,
                                  "\xff\xfe"])
def test_hostile_plans_exit_2(tmp_path: Path, text: str) -> None:
    plan = tmp_path / "p.json"
    plan.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    code, _, err = run_cli("prune", SAMPLE, "-o", tmp_path / "o.onnx", "--plan", plan, "-q")
    assert code == 2 and "not a spa plan" in one_line_error(err)
    assert not (tmp_path / "o.onnx").exists()


def test_plan_from_a_device_exit_2(tmp_path: Path) -> None:
    code, _, err = run_cli("prune", SAMPLE, "-o", tmp_path / "o.onnx", "--plan", "/dev/zero", "-q")
    assert code == 2 and "regular file" in one_line_error(err)


@pytest.mark.parametrize("argv", [["--ratio", "0.5abc"], ["--seed", "-1"], ["--jobs", "0"], ["--bogus"]])
def test_bad_arguments_one_line_exit_2(tmp_path: Path, argv: list[str]) -> None:
    code, out, err = run_cli("prune", SAMPLE, "-o", tmp_path / "o.onnx", *argv)
    assert code == 2 and out == ""
    one_line_error(err)


def test_enospc_while_streaming_exit_5(ext: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from spa import stream

    def full(self, arr):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(stream.Staging, "_write_array", full)
    code, _, err = run_cli("prune", ext, "-o", tmp_path / "o.onnx", "-q", env={"SPA_STREAM_BYTES": "0"})
    assert code == 5 and "No space left" in one_line_error(err)
    assert [p.name for p in tmp_path.iterdir() if p.name != "m.onnx" and not p.name.startswith("m.onnx")] == []


CTRL_C = textwrap.dedent("""
    import os, signal, sys
    target_module = sys.argv[1]
    class CtrlC:  # a real SIGINT the moment the named module starts to import
        def find_spec(self, name, path=None, target=None):
            if name == target_module:
                os.kill(os.getpid(), signal.SIGINT)
            return None
    sys.meta_path.insert(0, CtrlC())
    sys.argv = ["spa"] + sys.argv[2:]
    from spa.__main__ import run
    run()
""")


@pytest.mark.parametrize("module", ["typer", "onnx"])  # while the command line loads / the command starts
def test_ctrl_c_at_start_up_is_one_line(tmp_path: Path, module: str) -> None:
    drv = tmp_path / "ctrl_c.py"
    drv.write_text(CTRL_C)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # a runner that started us in the background without job control ignores SIGINT, and a child inherits
    # that: Ctrl-C must reach the child as it reaches a user's shell, so its disposition is reset first
    r = subprocess.run([sys.executable, str(drv), module, "analyze", str(SAMPLE)], cwd=ROOT, env=env,
                       capture_output=True, text=True, check=False, timeout=120,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert r.returncode == 130 and "interrupted" in one_line_error(r.stderr), r.stderr


# ------------------------------------------------------------ 7. untrusted strings stay text
def test_model_strings_are_printed_as_text(tmp_path: Path) -> None:
    import json

    m = _sample()
    name = "conv[/bold]w\x1b[2J\x1b]0;pwn\x07"
    _rename(m, m.graph.initializer[0].name, name)
    path = tmp_path / "model[v2].onnx"
    onnx.save(m, path)
    code, out, err = run_cli("analyze", path, "--all")
    assert code == 0, err
    assert "model[v2].onnx" in out and "conv[/bold]w" in out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out
    code, out, _ = run_cli("analyze", path, "--json", "--all")
    assert code == 0 and "\x1b" not in out
    json.loads(out)  # JSON stays valid ...
    assert json.dumps(name)[1:-1] in out  # ... and keeps the name exactly, its control characters escaped
    code, _, err = run_cli("prune", path, "-o", tmp_path / "o.onnx", "--ignore", "\x1b]0;x\x07[", "-q")
    assert code == 2 and "\x1b" not in err and "\x07" not in err


# ------------------------------------------------------------ 10. pickles: the extra is checked first
def test_convert_checks_the_extra_before_unpickling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Payload()))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "skl2onnx" else real(n, *a))
    code, _, err = run_cli("convert", tmp_path / "evil.pkl", "-o", tmp_path / "o.onnx")
    assert code == 2 and "skl2onnx" in one_line_error(err)
    assert not marker.exists()
    code, out, _ = run_cli("convert", "--help")
    assert "runs code" in out


# ------------------------------------------------------------ the Python API and the >2 GB in-memory path
def test_api_prune_checks_its_output_too(ext: Path) -> None:
    from spa import api
    from spa.errors import BadArgument

    before = digests(ext.parent)
    for stream in (0, None):
        with pytest.raises(BadArgument, match="external data"):
            api.prune(ext, output=ext.parent / "m.onnx.data", stream_bytes=stream)
    assert digests(ext.parent) == before


def test_over_2gb_in_memory_model_is_written_as_a_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model too large for one protobuf goes through the same staging as a streamed one (the 2 GB limit is
    lowered here): weights in a fresh data file, the model renamed last, the user's <out>.data untouched."""
    from spa import modelfile

    monkeypatch.setattr(modelfile, "TWO_GB", 1000)
    out = tmp_path / "o.onnx"
    (tmp_path / "o.onnx.data").write_bytes(b"mine")
    modelfile.save_atomic(onnx.load(SAMPLE), out)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 and (tmp_path / "o.onnx.data").read_bytes() == b"mine"
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    sess = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess(out).run(None, {"input": x})[0], sess(SAMPLE).run(None, {"input": x})[0])
