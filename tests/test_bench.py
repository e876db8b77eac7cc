"""spa.tools.bench: fields filled and consistent, interleaved compare keeps input order, table ratios, provider errors.
No timing assertions: machines are noisy."""

from __future__ import annotations

from pathlib import Path

import pytest

from spa import api, modelfile
from spa.tools import bench
from spa.errors import BadArgument

ROOT = Path(__file__).resolve().parents[1]
SIMPLE = ROOT / "models" / "samples" / "simple_cnn.onnx"


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "simple_cnn_pruned.onnx"
    model, _ = api.prune(SIMPLE, ratio=0.5)
    modelfile.save_atomic(model, out)
    return out


@pytest.fixture(scope="module")
def pair(pruned) -> list[bench.Bench]:
    return bench.compare([SIMPLE, pruned], warmup=2, runs=9, threads=1)


def _consistent(b: bench.Bench, path: Path, runs: int) -> None:
    st = api.analyze(path).stats
    assert b.path == str(path)
    assert (b.params, b.macs, b.macs_by_op) == (st.params, st.macs, st.macs_by_op)
    assert b.size_bytes == path.stat().st_size
    assert b.provider == "CPUExecutionProvider"
    assert len(b.latency_ms) == runs
    assert all(t > 0 for t in b.latency_ms)
    assert b.p10_ms <= b.median_ms <= b.p90_ms
    assert min(b.latency_ms) <= b.p10_ms and b.p90_ms <= max(b.latency_ms)
    assert b.peak_rss_mb > 0


def test_bench_fields(pruned):
    b = bench.bench(pruned, warmup=1, runs=7, threads=1, batch=2)
    _consistent(b, pruned, 7)
    assert (b.batch, b.threads, b.spin) == (2, 1, False)
    assert b.as_dict()["latency_ms"] == b.latency_ms


def test_compare_input_order_and_stats(pair, pruned):
    a, b = pair
    _consistent(a, SIMPLE, 9)
    _consistent(b, pruned, 9)
    assert b.params < a.params and b.macs < a.macs  # structural, not timing


def test_compare_repeated_and_reordered(pruned):
    bs = bench.compare([pruned, SIMPLE, pruned], warmup=0, runs=3, memory=False, threads=2, spin=True)
    assert all(x.spin and x.threads == 2 for x in bs)
    assert [x.path for x in bs] == [str(pruned), str(SIMPLE), str(pruned)]
    assert bs[0].params == bs[2].params != bs[1].params
    assert all(len(x.latency_ms) == 3 and x.peak_rss_mb == 0.0 for x in bs)
    assert bench.compare([]) == []


def test_peak_rss_excludes_this_process():
    # a child forked straight from a big process inherits its high-water mark on Linux; the measurement must
    # not: hold ~400 MiB here, a tiny model's fresh process stays far below that
    import numpy as np

    ballast = np.ones(100 * 2**20, dtype=np.float32)  # 400 MiB, touched
    b = bench.bench(SIMPLE, warmup=0, runs=1)
    assert ballast[-1] == 1.0
    assert 0 < b.peak_rss_mb < 300


def test_table_rows_arithmetic(pair):
    rows = bench.table_rows(pair)
    a, b = pair
    assert [r["path"] for r in rows] == [a.path, b.path]
    assert rows[0]["model"] == "simple_cnn.onnx"
    for key in ("params_ratio", "macs_ratio", "size_ratio", "latency_ratio", "speedup", "rss_ratio"):
        assert rows[0][key] == pytest.approx(1.0)
    r = rows[1]
    assert r["params_ratio"] == pytest.approx(b.params / a.params)
    assert r["macs_ratio"] == pytest.approx(b.macs / a.macs)
    assert r["size_ratio"] == pytest.approx(b.size_bytes / a.size_bytes)
    assert r["latency_ratio"] == pytest.approx(b.median_ms / a.median_ms)
    assert r["speedup"] == pytest.approx(a.median_ms / b.median_ms)
    assert r["rss_ratio"] == pytest.approx(b.peak_rss_mb / a.peak_rss_mb)
    text = bench.format_table(rows)
    assert len(text.splitlines()) == 4 and "speed-up" in text


def test_table_rows_synthetic():
    def mk(path, params, macs, size, med, rss):
        return bench.Bench(path, params, macs, {}, size, "CPUExecutionProvider", 1, 1, [med], med, med, med, rss)

    rows = bench.table_rows([mk("a.onnx", 100, 1000, 400, 10.0, 50.0), mk("b.onnx", 25, 300, 100, 4.0, 0.0)])
    assert rows[1]["params_ratio"] == 0.25
    assert rows[1]["macs_ratio"] == 0.3
    assert rows[1]["size_ratio"] == 0.25
    assert rows[1]["latency_ratio"] == 0.4
    assert rows[1]["speedup"] == 2.5
    assert rows[1]["rss_ratio"] == 0.0
    zero = bench.table_rows([mk("a.onnx", 0, 0, 1, 1.0, 0.0), mk("b.onnx", 1, 1, 1, 1.0, 1.0)])
    assert zero[1]["params_ratio"] is None and zero[1]["rss_ratio"] is None
    assert bench.table_rows([]) == []


def test_providers_available():
    p = bench.providers_available()
    assert p[0] == "cpu" and set(p) <= {"cpu", "cuda"}


def test_cuda_without_gpu_is_bad_argument(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert bench.providers_available() == ["cpu"]
    with pytest.raises(BadArgument) as e:
        bench.bench(SIMPLE, provider="cuda", runs=1)
    msg = str(e.value)
    assert "cuda" in msg.lower() and "\n" not in msg
    assert e.value.exit_code == 2


@pytest.mark.parametrize(
    "kw", [{"provider": "tpu"}, {"runs": 0}, {"batch": 0}, {"threads": -1}, {"warmup": -1}, {"runs": 2.5}]
)
def test_bad_arguments(kw):
    with pytest.raises(BadArgument) as e:
        bench.bench(SIMPLE, **kw)
    assert "\n" not in str(e.value)
