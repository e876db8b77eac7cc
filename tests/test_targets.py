"""--target-macs / --target-params: bisection over the global ratio meets the target closely."""

from __future__ import annotations

from pathlib import Path

import pytest

import spa
from spa.errors import BadArgument

SAMPLE = str(Path(__file__).resolve().parents[1] / "models" / "samples" / "resnet18_tiny.onnx")


@pytest.mark.parametrize("frac", [0.8, 0.5, 0.3])
def test_target_macs(frac):
    _, rep = spa.prune(SAMPLE, target_macs=frac, round_to=1, oracle=True)
    got = rep.after.macs / rep.before.macs
    assert got <= frac and got > frac - 0.08, got
    assert rep.plan.mode == "global" and rep.oracle <= 1e-5


def test_target_params_with_round_to():
    _, rep = spa.prune(SAMPLE, target_params=0.5, round_to=8)
    assert rep.after.params <= 0.5 * rep.before.params
    for gp in rep.plan.groups:
        assert len(gp.keep) % 8 == 0 or len(gp.keep) == gp.size


def test_unreachable_and_invalid_targets():
    with pytest.raises(BadArgument, match="unreachable"):
        spa.prune(SAMPLE, target_macs=0.001, max_group_ratio=0.5)
    with pytest.raises(BadArgument):
        spa.prune(SAMPLE, target_macs=1.5)
    with pytest.raises(BadArgument):
        spa.prune(SAMPLE, target_macs=0.5, target_params=0.5)


@pytest.mark.slow
def test_target_latency_meets_measured_target():
    """Timing-dependent (bisection over measured latency), so only in the slow suite."""
    _, rep = spa.prune(SAMPLE, target_latency=0.9, round_to=1)
    assert rep.seconds["target_reached"] <= 0.9
    assert rep.after.macs < rep.before.macs


def test_one_target_at_a_time():
    with pytest.raises(BadArgument, match="one of"):
        spa.prune(SAMPLE, target_latency=0.5, target_params=0.5)
