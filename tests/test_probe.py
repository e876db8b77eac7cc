"""spa.probe: data-free obspa's choice between energy-allocation caps by the output error on fresh prior samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import spa
from spa import calib, probe
from spa.analysis import analyze
from spa.api import prepare
from spa.criteria.obspa import compensate
from spa.plan import GroupPlan, Plan
from spa.rewrite import Rewriter
from spa.sensitivity import ENERGY_CAP, REFIT_ENERGY_CAP, energy_plans

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "models" / "samples" / "simple_cnn.onnx"


def _error(*batches: tuple[list[np.ndarray], list[np.ndarray]]) -> float:
    e = probe.OutputError()
    for reference, outputs in batches:
        e.add(reference, outputs)
    return e.value


def test_output_error_is_relative_over_float_outputs_and_never_lets_nan_win():
    y = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)
    ids = np.array([1, 2], np.int64)
    assert _error(([y, ids], [y, ids + 1])) == 0.0  # integer outputs are not compared
    assert _error(([y], [2 * y])) == pytest.approx(1.0)
    assert _error(([y, y], [y, 0 * y])) == pytest.approx(0.5)  # the mean over outputs
    assert _error(([y[:1]], [2 * y[:1]]), ([y[1:]], [y[1:]])) == pytest.approx(np.sum(y[0] ** 2) / np.sum(y ** 2))
    bad = y.copy()
    bad[0, 0] = np.nan
    assert _error(([y], [bad])) == float("inf")


def _setup(ratio: float = 0.3):
    view, _ = prepare(onnx.load(str(SAMPLE)))
    a = analyze(view)
    stats = calib.collect(a, "strokes", samples=16, seed=0)
    probes = calib.source_feeds(a, "strokes", None, samples=12, seed=probe.PROBE_SEED)
    return a, stats, probes


def test_the_probe_error_is_the_error_of_the_model_spa_writes():
    """Each candidate's error (measured on the zeroed original with its OBS update) equals the output error of the
    physically pruned model written from the same plan and update; the chosen one has the smallest."""
    a, stats, probes = _setup()
    caps = (REFIT_ENERGY_CAP, ENERGY_CAP)
    plans = dict(zip(caps, energy_plans(a, stats, 0.3, [c * 0.3 for c in caps], seed=0)))
    best, tried = probe.choose(a, plans, lambda keep: compensate(a, keep, stats), probes, batch=4)
    assert [c.cap for c in tried] == list(caps)
    y = _outputs(a.view.model, probes)
    for c in tried:
        z = _outputs(Rewriter(a, c.keep, overrides=c.overrides).apply(), probes)
        error = np.mean([np.sum((q - p) ** 2) / np.sum(p ** 2) for p, q in zip(y, z)])
        assert error == pytest.approx(c.error, rel=1e-3)
    assert best.error == min(c.error for c in tried)
    _, again = probe.choose(a, plans, lambda keep: compensate(a, keep, stats), probes, batch=12)  # one batch
    assert [c.error for c in again] == pytest.approx([c.error for c in tried], rel=1e-6)


def _outputs(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of `model` on all of `feeds` in one onnxruntime run, in float64."""
    from spa.verify import session

    return [o.astype(np.float64) for o in session(model).run(None, feeds)]


def test_the_probe_rejects_a_plan_that_removes_the_channels_that_matter():
    """Against the energy plan, a plan of the same channel counts that removes what the energy plan keeps (the
    channels that carry the signal) loses, whichever order they are given in."""
    a, stats, probes = _setup()
    good = energy_plans(a, stats, 0.5, [0.55], seed=0)[0]
    swapped = [sorted(set(range(g.size)) - set(g.keep)) + sorted(g.keep) for g in good.groups]
    bad = Plan([GroupPlan(g.key, g.size, sorted(s[:len(g.keep)])) for g, s in zip(good.groups, swapped)],
               good.criterion, good.ratio, good.mode)
    assert any(b.keep != g.keep for b, g in zip(bad.groups, good.groups))
    for plans in ({1.0: good, 2.0: bad}, {1.0: bad, 2.0: good}):
        best, tried = probe.choose(a, plans, lambda keep: compensate(a, keep, stats), probes, batch=4)
        assert best.plan is good
        assert max(c.error for c in tried) > 1.2 * best.error  # 0.129 vs 0.082 when written


def test_data_free_default_reports_the_probe_and_explicit_allocations_skip_it(monkeypatch):
    """Data-free obspa's default (energy allocation on float inputs up to DATA_FREE_ENERGY_MAX_RATIO) probes both
    caps and reports them: the chosen cap is the one of least error, no group loses more than it x the ratio,
    and the oracle holds. `--allocate energy` keeps ENERGY_CAP unprobed; a model above spa.probe.MAX_BYTES of
    weights keeps REFIT_ENERGY_CAP unprobed."""
    _, rep = spa.prune(str(SAMPLE), ratio=0.3, criterion="obspa", calib_samples=16, oracle=True)
    got = rep.calibration["allocation"]
    assert set(got["probe_errors"]) == {f"{REFIT_ENERGY_CAP:g}", f"{ENERGY_CAP:g}"}
    assert got["cap"] == float(min(got["probe_errors"], key=got["probe_errors"].get))
    assert got["probe_samples"] == probe.PROBE_SAMPLES
    assert max(1 - len(g.keep) / g.size for g in rep.plan.groups) <= got["cap"] * 0.3 + 1e-9
    assert rep.oracle is not None and rep.oracle <= 1e-5
    _, asked = spa.prune(str(SAMPLE), ratio=0.3, criterion="obspa", calib_samples=16, allocation="energy")
    assert "allocation" not in asked.calibration and asked.plan.mode == "energy"
    monkeypatch.setattr(probe, "MAX_BYTES", 0)
    _, big = spa.prune(str(SAMPLE), ratio=0.3, criterion="obspa", calib_samples=16)
    assert "allocation" not in big.calibration and big.plan.mode == "energy"
    assert max(1 - len(g.keep) / g.size for g in big.plan.groups) <= REFIT_ENERGY_CAP * 0.3 + 1e-9


def test_cli_says_the_probed_cap_in_the_title_and_in_json(tmp_path):
    def cli(out: str, *more: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "spa", "prune", str(SAMPLE), "-o", str(tmp_path / out), "-c",
                               "obspa", "--ratio", "0.3", "--calib-samples", "16", *more], capture_output=True,
                              text=True, cwd=ROOT, check=True)

    r = cli("a.onnx")
    got = json.loads(cli("b.onnx", "--json").stdout)["calibration"]["allocation"]
    assert f"cap {got['cap']:g}x probed" in " ".join(r.stdout.split())


@pytest.mark.parametrize("batch", [1, 2])
def test_the_probe_runs_a_fixed_batch_model_in_its_batch(batch):
    """A model exported with a fixed batch gets its probe samples in whole batches of that size (32 is a multiple),
    and the probed prune passes the oracle."""
    from models.data_inputs import fixed_batch_cnn

    _, rep = spa.prune(fixed_batch_cnn(batch), ratio=0.3, criterion="obspa", calib_samples=5, oracle=True)
    assert rep.calibration["allocation"]["probe_samples"] == probe.PROBE_SAMPLES
    assert rep.oracle is not None and rep.oracle <= 1e-5


def test_no_probe_where_max_group_ratio_makes_both_caps_one():
    """--max-group-ratio below both caps' limits leaves one plan: nothing is probed, the cap binds every group."""
    _, rep = spa.prune(str(SAMPLE), ratio=0.3, criterion="obspa", calib_samples=16, max_group_ratio=0.3)
    assert "allocation" not in rep.calibration and rep.plan.mode == "energy"
    assert max(1 - len(g.keep) / g.size for g in rep.plan.groups) <= 0.3 + 1e-9
