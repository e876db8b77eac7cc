"""Data criteria on every model spa can prune: the batch follows the model (a fixed batch of 1 or 2 used to
crash obspa/act/wanda in onnxruntime and taylor/snip in the torch round trip), inputs the sources cannot make
are refused with one line, and wide consumers keep H as diagonal blocks (bounded memory) without breaking
the oracle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import spa
from models.data_inputs import fixed_batch_cnn, shape_input_cnn
from spa import calib
from spa.analysis import analyze
from spa.api import compute_scores, prepare
from spa.criteria.obspa import compensate
from spa.plan import keep_mask

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5
DATA_CRITERIA = ["obspa", "act", "wanda", "taylor", "snip"]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spa", *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("criterion", DATA_CRITERIA)
def test_fixed_batch_model_with_every_data_criterion(criterion, batch):
    """Every input dim static, the batch baked into a Reshape: statistics are gathered in batches of exactly
    the model's batch, summed to the samples asked for (rounded up to whole batches), and the pruned model
    passes the oracle (the self-check too)."""
    m = fixed_batch_cnn(batch)
    pruned, rep = spa.prune(m, ratio=0.5, criterion=criterion, calib_samples=5, oracle=True)
    assert rep.groups_pruned > 0 and rep.after.params < rep.before.params
    assert rep.oracle is not None and rep.oracle <= TOL
    assert rep.calibration["batch"] == batch
    assert rep.calibration["samples"] == (5 if batch == 1 else 6)
    assert [d.dim_value for d in pruned.graph.input[0].type.tensor_type.shape.dim] == [batch, 3, 16, 16]


def test_fixed_batch_calibration_is_filled_to_whole_batches():
    """5 real samples for a model whose batch is 2: the last batch repeats the first sample instead of failing
    (and the re-fit's two rescaled copies of the 6 keep whole batches)."""
    x = np.random.default_rng(0).standard_normal((5, 3, 16, 16)).astype(np.float32)
    _, rep = spa.prune(fixed_batch_cnn(2), ratio=0.5, criterion="obspa", calib={"x": x}, calib_source="calib",
                       refit=True, oracle=True)
    assert rep.oracle is not None and rep.oracle <= TOL
    assert rep.calibration == {"source": "calib", "samples": 18, "batch": 2, "consumers": {"dense": 3},
                               "augment": "rescaled copies of each image (x0.8, x1.2)", "rounds": 16}


@pytest.mark.parametrize("batch", [2, 3])
def test_fixed_batch_calib_prior_keeps_whole_batches(batch, monkeypatch):
    """obspa's --calib default on images (calib-prior) with a fixed batch: the real samples filled up to whole
    batches and rescaled, then the prior's images in whole batches, and the re-fit reads exactly those."""
    from spa.criteria import obspa as ob

    seen = []
    real_refit = ob.refit

    def spy(a, keep, layers, overrides, feeds, **kw):
        seen.append(len(feeds["x"]))
        return real_refit(a, keep, layers, overrides, feeds, **kw)

    monkeypatch.setattr(ob, "refit", spy)
    x = np.random.default_rng(0).standard_normal((5, 3, 16, 16)).astype(np.float32)
    _, rep = spa.prune(fixed_batch_cnn(batch), ratio=0.3, criterion="obspa", calib={"x": x}, calib_samples=7,
                       oracle=True)
    real = -(-5 // batch) * batch
    want = 3 * real + -(-7 // batch) * batch
    assert rep.calibration["source"] == "calib-prior" and rep.calibration["samples"] == want == seen[0]
    assert want % batch == 0 and rep.oracle is not None and rep.oracle <= TOL


def test_torch_export_with_fixed_batch_cli(tmp_path):
    """The issue's case: torch.onnx.export without dynamic_axes ([1, 3, H, W]), obspa from the command line."""
    from models import zoo_torch

    p = zoo_torch.export("resnet18", tmp_path / "r18.onnx", size="tiny", dynamic_batch=False)
    r = _cli("prune", str(p), "-o", str(tmp_path / "o.onnx"), "-c", "obspa", "--calib-samples", "4", "--oracle",
             "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["oracle_rel_error"] <= TOL and d["calibration"]["batch"] == 1


def test_calib_with_the_wrong_fixed_spatial_size_is_one_line(tmp_path):
    onnx.save(fixed_batch_cnn(1), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.zeros((4, 3, 12, 12), np.float32))
    r = _cli("prune", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"), "-c", "obspa", "--calib",
             str(tmp_path / "c.npz"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "[4, 3, 12, 12]" in r.stderr and "[1, 3, 16, 16]" in r.stderr
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("criterion", ["obspa", "taylor"])
def test_unsynthesisable_input_is_refused_with_one_line(criterion, tmp_path):
    """An int64 input that is a Reshape's target shape: no random value runs the model. Exit 2, one line naming
    the input and --calib; with real inputs the statistics are gathered."""
    onnx.save(shape_input_cnn(), tmp_path / "m.onnx")
    r = _cli("prune", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"), "-c", criterion)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "'shape'" in r.stderr and "--calib" in r.stderr
    assert not (tmp_path / "o.onnx").exists()
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((3, 3, 8, 8)).astype(np.float32),
             "shape": np.tile(np.array([1, 256], np.int64), (3, 1))}
    # (verification itself feeds random values, which this model cannot run either: not tested here)
    _, rep = spa.prune(shape_input_cnn(), ratio=0.5, criterion=criterion, calib=feeds, verify=False)
    # obspa's re-fit adds rescaled copies of each image x, the shape input repeated beside them (spa.augment)
    assert rep.groups_pruned == 1 and rep.calibration["batch"] == 1
    assert rep.calibration["samples"] == (9 if criterion == "obspa" else 3)


def test_block_parts_keep_channels_whole_and_the_bias_in_every_block():
    comps = np.array([2, 0, 1, 0, 2, 1, 1, 3])  # component per input index (interleaved, like an NHWC Flatten)
    parts = calib.block_parts(comps, per_index=2, bias=True, width=6)  # at most 3 indices per block
    cols = [p[:-1] for p in parts]
    assert all(p[-1] == 16 for p in parts)  # the bias column (id = 8 indices x 2) in each
    assert np.array_equal(np.sort(np.concatenate(cols)), np.arange(16))  # every column once
    assert all(len(c) <= 6 for c in cols)
    for ch in range(4):  # a channel of at most 3 indices lies in one block
        mine = (np.flatnonzero(comps == ch)[:, None] * 2 + np.arange(2)).ravel()
        assert sum(np.isin(mine, c).any() for c in cols) == 1
    wide = calib.block_parts(np.zeros(5, int), per_index=1, bias=False, width=2)  # one channel, 5 indices
    assert [len(p) for p in wide] == [2, 2, 1]


def _scores_and_update(m: onnx.ModelProto):
    view, _ = prepare(m)
    a = analyze(view)
    stats = calib.collect(a, "binary", samples=6, trust="off")  # blocked consumers have no trust check
    scores = compute_scores(a, "obspa", data=stats)
    plan = spa.api.compute_plan(a, ratio=0.5, criterion="obspa", data=stats)
    keep = keep_mask(a, plan)
    return a, stats, scores, keep, compensate(a, keep, stats)


def test_one_block_equals_the_dense_path(monkeypatch):
    """Blocked statistics with a single block covering every column are the dense H: same scores, same
    weight updates (to float32 rounding of the bias, which the blocked path adds up per block)."""
    m = fixed_batch_cnn(1)
    _, dstats, dscores, dkeep, dover = _scores_and_update(m)
    monkeypatch.setenv(calib.DENSE_COLS_ENV, "0")
    monkeypatch.setattr(calib, "BLOCK_COLS", 10**6)
    monkeypatch.setattr(calib, "BLOCK_BYTES", 1 << 40)
    _, bstats, bscores, bkeep, bover = _scores_and_update(m)
    assert {c.kind for c in dstats.values()} == {"dense"} and {c.kind for c in bstats.values()} == {"blocked"}
    assert all(len(c.parts) == 1 for c in bstats.values())
    for g in dscores:
        np.testing.assert_allclose(bscores[g], dscores[g], rtol=1e-9)
    assert np.array_equal(dkeep, bkeep) and dover.keys() == bover.keys()
    for k in dover:
        np.testing.assert_allclose(bover[k], dover[k], rtol=1e-5, atol=1e-6 * np.abs(dover[k]).max())


@pytest.mark.parametrize("criterion", ["obspa", "act", "wanda"])
def test_forced_blocks_keep_the_oracle_and_finite_scores(criterion, monkeypatch):
    """A small threshold forces several diagonal blocks per consumer (the 1024-input Gemm gets 16-column
    blocks, its bias in each): scores are finite, the compensated model passes the oracle, the report
    names the approximation."""
    monkeypatch.setenv(calib.DENSE_COLS_ENV, "40")
    monkeypatch.setattr(calib, "BLOCK_COLS", 16)
    m = fixed_batch_cnn(1)
    _, rep = spa.prune(m, ratio=0.5, criterion=criterion, calib_samples=6, oracle=True)
    assert rep.oracle is not None and rep.oracle <= TOL
    assert rep.calibration["consumers"] == {"blocked": 2, "dense": 1}  # c1 (72 columns) and fc0 (1024) blocked
    _, stats, scores, _, over = _scores_and_update(m)
    assert all(np.isfinite(s).all() and (s > 0).all() for s in scores.values())
    fc0 = stats[("fc0.w", 1)]
    assert fc0.kind == "blocked" and len(fc0.parts) == 64 and over


def test_calibrated_obspa_with_blocked_statistics(monkeypatch):
    """With real inputs obspa re-fits every consumer and spreads the ratio by output energy: both read blocked
    statistics too (they asked for the one dense H, an internal error on a VGG-16 with --calib)."""
    monkeypatch.setenv(calib.DENSE_COLS_ENV, "40")
    monkeypatch.setattr(calib, "BLOCK_COLS", 16)
    m = fixed_batch_cnn(1)
    x = calib.noise_inputs(prepare(m)[0], 6, seed=1)
    _, rep = spa.prune(m, ratio=0.5, criterion="obspa", calib=x, oracle=True)
    assert rep.oracle is not None and rep.oracle <= TOL
    assert rep.calibration["consumers"] == {"blocked": 2, "dense": 1}


def test_the_refit_blocks_from_its_own_width(monkeypatch):
    """Where the re-fit follows (real inputs), consumers wider than REFIT_DENSE_COLS get blocked statistics; without
    it, DENSE_COLS decides (fc0's 1024 columns: blocked at 100 with the re-fit only)."""
    monkeypatch.setattr(calib, "REFIT_DENSE_COLS", 100)
    m = fixed_batch_cnn(1)
    x = calib.noise_inputs(prepare(m)[0], 4, seed=1)
    kinds = {refit: spa.prune(m, ratio=0.5, criterion="obspa", calib=x, refit=refit)[1].calibration["consumers"]
             for refit in (True, False)}
    assert kinds == {True: {"blocked": 1, "dense": 2}, False: {"dense": 3}}


def test_total_budget_narrows_the_widest_consumers_first(monkeypatch):
    """All H together over H_BYTES: blocks narrow until they fit, the 1024-input Gemm first; the prune still
    passes the oracle."""
    view, _ = prepare(fixed_batch_cnn(1))
    cons = calib.find_consumers(analyze(view))
    assert {c.kind for c in cons.values()} == {"dense"}
    monkeypatch.setattr(calib, "H_BYTES", 8 * (1024 * 72 + 72 * 72 + 32 * 32))  # blocks of at most 72 columns
    cons = calib.find_consumers(analyze(view))
    kinds = {k[0]: c.kind for k, c in cons.items()}
    assert kinds == {"c1.w": "dense", "fc0.w": "blocked", "y.w": "dense"}
    assert max(len(p) for p in cons[("fc0.w", 1)].parts) <= 64 + 1
    _, rep = spa.prune(fixed_batch_cnn(1), ratio=0.5, criterion="obspa", calib_samples=6, oracle=True)
    assert rep.oracle is not None and rep.oracle <= TOL and rep.calibration["consumers"]["blocked"] == 1


def test_json_names_the_approximation(tmp_path):
    onnx.save(fixed_batch_cnn(1), tmp_path / "m.onnx")
    r = _cli("prune", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"), "-c", "obspa", "--calib-samples",
             "4", "--json", env={calib.DENSE_COLS_ENV: "100"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["calibration"]["consumers"] == {"blocked": 1, "dense": 2}
    bad = _cli("prune", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o2.onnx"), "-c", "obspa",
               env={calib.DENSE_COLS_ENV: "many"})
    assert bad.returncode == 2 and calib.DENSE_COLS_ENV in bad.stderr and "Traceback" not in bad.stderr


def test_capture_batch_shrinks_with_wide_activations(monkeypatch):
    """Where the model leaves the batch free, one batch's captured consumer inputs stay under CAPTURE_BYTES."""
    from models.patterns import build

    view, _ = prepare(build("flatten_to_gemm"))
    cons = calib.find_consumers(analyze(view))
    assert calib.batch_size(view, cons) == calib.BATCH
    monkeypatch.setattr(calib, "CAPTURE_BYTES", 1)
    assert calib.batch_size(view, cons) == 1


def test_rows_held_under_a_total_bound_give_the_same_h(monkeypatch):
    """With every consumer's rows added to H after each batch (PENDING_TOTAL exceeded at once), H is the
    same sum, to float32 rounding of the partial products."""
    view, _ = prepare(fixed_batch_cnn(1))
    a = analyze(view)
    ref = calib.collect(a, "binary", samples=6)
    monkeypatch.setattr(calib, "PENDING_TOTAL", 0)
    got = calib.collect(a, "binary", samples=6)
    for k, c in ref.items():
        assert got[k].rows == c.rows
        np.testing.assert_allclose(got[k].H, c.H, rtol=1e-5, atol=1e-6 * np.abs(c.H).max())
