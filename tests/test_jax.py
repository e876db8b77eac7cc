"""JAX / Flax -> ONNX (jax2onnx): exported models equal JAX, keep a dynamic batch, and prune with an exact oracle.

Skipped where jax2onnx is not installed (``pip install 'spa[jax]'``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("jax2onnx")
from flax import nnx

import spa
from converters.jax_export import export_jax, is_jax_source
from models import zoo_jax
from spa.errors import BadArgument, SpaError
from spa.verify import session

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("jax")
    paths = {}
    for name in ("small_cnn", "linen_mlp", "layernorm_cnn"):
        paths[name] = d / f"{name}.onnx"
        info = export_jax(zoo_jax.BUILDERS[name](), [zoo_jax.SHAPES[name]], paths[name])
        assert info.max_error <= 1e-4 and info.path == paths[name]
    return paths


@pytest.mark.parametrize("name", ["small_cnn", "linen_mlp"])
def test_export_equals_jax_at_any_batch_and_prunes_exactly(exported, name):
    path = exported[name]
    m = onnx.load(str(path))
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["output"]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    fn = zoo_jax.BUILDERS[name]()
    if isinstance(fn, nnx.Module):
        fn.eval()  # what the export compares against: BatchNorm with its running statistics
    x = np.random.default_rng(3).standard_normal((5, *zoo_jax.SHAPES[name][1:])).astype(np.float32)
    want = np.asarray(fn(x))
    got = session(m).run(None, {"input": x})[0]
    assert np.abs(got - want).max() / max(1.0, np.abs(want).max()) <= 1e-4

    pruned, rep = spa.prune(str(path), ratio=0.5, oracle=True)
    assert rep.oracle is not None and rep.oracle <= 1e-5
    assert rep.groups_pruned >= 2 and rep.after.params < 0.6 * rep.before.params
    y = session(pruned).run(None, {"input": x})[0]
    assert y.shape == want.shape


def test_layernorm_model_prunes_exactly(exported):
    """Flax LayerNorm over channels comes out decomposed (ReduceMean/Sub/Mul/Div); whatever spa decides for the
    normalised channels (frozen, or lossy), the plain conv group prunes and the oracle holds."""
    rep = spa.analyze(str(exported["layernorm_cnn"]))
    assert sum(g.size == 12 and g.prunable for g in rep.analysis.groups) >= 1
    _, pr = spa.prune(str(exported["layernorm_cnn"]), ratio=0.5, oracle=True)
    assert pr.groups_pruned >= 1 and pr.oracle is not None and pr.oracle <= 1e-5


def test_nnx_module_left_in_training_mode():
    m = zoo_jax.small_cnn()
    assert m.bn1.use_running_average is False
    before = np.asarray(m.bn1.mean.get_value()).copy()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        export_jax(m, [(2, 16, 16, 3)], Path(d) / "m.onnx", dynamic_batch=False)
        assert onnx.load(str(Path(d) / "m.onnx")).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    assert m.bn1.use_running_average is False
    assert np.array_equal(np.asarray(m.bn1.mean.get_value()), before)


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(BadArgument, match="input shape"):
        export_jax(zoo_jax.linen_mlp(), [(2, 0)], tmp_path / "x.onnx")
    with pytest.raises(SpaError, match="fails on inputs of shapes") as e:
        export_jax(zoo_jax.linen_mlp(), [(2, 13)], tmp_path / "x.onnx")
    assert "\n" not in str(e.value)
    with pytest.raises(BadArgument, match="output names"):
        export_jax(zoo_jax.linen_mlp(), [(2, 12)], tmp_path / "x.onnx", output_names=["a", "b"])
    assert not list(tmp_path.iterdir())  # nothing half-written


def spa_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spa", *args], check=False, capture_output=True, text=True, cwd=ROOT)


def test_cli_convert_detects_jax_sources(tmp_path):
    assert is_jax_source(ROOT / "models" / "zoo_jax.py")
    assert not is_jax_source(ROOT / "models" / "zoo_torch.py")
    r = spa_cli("convert", "models/zoo_jax.py:linen_mlp", "-o", str(tmp_path / "mlp.onnx"))
    assert r.returncode == 2 and r.stderr.strip().startswith("spa: error: --input-shape is required for JAX")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a fresh process pays jax2onnx's plugin import (~6-16 s here)
def test_cli_convert_jax_writes_a_prunable_model(tmp_path):
    out = tmp_path / "mlp.onnx"
    r = spa_cli("convert", "models/zoo_jax.py:linen_mlp", "-o", str(out), "--input-shape", "1,12")
    assert r.returncode == 0, r.stderr
    assert "jax, jax2onnx, opset 17" in r.stdout and out.is_file()
    r = spa_cli("prune", str(out), "-o", str(tmp_path / "p.onnx"), "--ratio", "0.5", "--oracle")
    assert r.returncode == 0, r.stderr
