"""Grouped (non-depthwise) convolutions in both modes: in-group positions (default; the same positions removed
from every group, `group` kept) and whole groups (`group` shrinks).

The zero-group oracle must hold in both modes on every pattern with a grouped or depthwise conv; where dead
channels sit at the same in-group position of every group, `--ratio 0.25 -c l1` in positions mode removes
exactly them (outputs unchanged), which the whole-group mode cannot.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import spa
from models import patterns as P
from spa.verify import random_inputs, run

GROUPED = [name for name, build in P.PATTERNS.items()
           if any(n.op_type in ("Conv", "ConvTranspose") and any(a.name == "group" and a.i > 1 for a in n.attribute)
                  for n in build().graph.node)]
DEAD = ["grouped_conv_dead_positions", "grouped_conv_residual"]


def _attr(m: onnx.ModelProto, node: str, key: str) -> int:
    n = next(n for n in m.graph.node if n.name == node)
    return next(a.i for a in n.attribute if a.name == key)


def _change(m: onnx.ModelProto, pm: onnx.ModelProto) -> float:
    f = random_inputs(m, seed=3, batch=2)
    y0, y1 = run(m, f)[0], run(pm, f)[0]
    return float(np.abs(y0 - y1).max() / np.abs(y0).max())


def test_grouped_patterns_found():
    assert {"grouped_conv", "depthwise_conv", "conv_transpose_grouped", *DEAD, "grouped_conv_concat"} <= set(GROUPED)


@pytest.mark.parametrize("mode", ["positions", "groups"])
@pytest.mark.parametrize("name", GROUPED)
def test_oracle_both_modes(name, mode):
    m = P.PATTERNS[name]()
    _, rep = spa.prune(m, ratio=0.5, criterion="random", oracle=True, group_conv=mode)
    assert rep.oracle <= 1e-5
    assert spa.check(m, group_conv=mode, trials=2).ok


def test_positions_keep_group_count():
    pm, rep = spa.prune(P.PATTERNS["grouped_conv"](), ratio=0.5, oracle=True)
    w = {t.name: numpy_helper.to_array(t) for t in pm.graph.initializer}
    assert _attr(pm, "n_g2", "group") == 2 and _attr(pm, "n_g4", "group") == 4
    assert w["g2.w"].shape == (4, 2, 3, 3)  # 8 -> 4 outputs (2 per group), 4 -> 2 inputs per group
    assert w["g4.w"].shape == (8, 1, 3, 3)  # 16 -> 8 outputs, 2 -> 1 input per group
    assert rep.oracle <= 1e-5


@pytest.mark.parametrize("name", DEAD)
def test_dead_positions_choice(name):
    """Only positions mode removes exactly the dead channels; a whole group holds live ones."""
    m = P.PATTERNS[name]()
    pm, rep = spa.prune(m, ratio=0.25, criterion="l1", oracle=True)
    assert rep.plan.removed >= 1 and _change(m, pm) < 1e-6
    assert _attr(pm, "n_g", "group") == 4
    pg, rep_g = spa.prune(m, ratio=0.25, criterion="l1", oracle=True, group_conv="groups")
    assert rep_g.oracle <= 1e-5  # consistent graph, wrong choice: live channels go with each group
    assert _change(m, pg) > 0.05


def test_concat_feeds_positions():
    """An in-group position of a conv fed by a concat spans both concat inputs: they are pruned together."""
    m = P.PATTERNS["grouped_conv_concat"]()
    pm, rep = spa.prune(m, ratio=0.5, oracle=True)
    w = {t.name: numpy_helper.to_array(t) for t in pm.graph.initializer}
    assert w["a.w"].shape[0] == w["bb.w"].shape[0] == 4 and w["g.w"].shape[1] == 2
    assert _attr(pm, "n_g", "group") == 4 and rep.oracle <= 1e-5


def test_cli_group_conv(tmp_path):
    src = tmp_path / "g.onnx"
    onnx.save(P.PATTERNS["grouped_conv"](), str(src))
    cmd = [sys.executable, "-m", "spa", "prune", str(src), "-o", str(tmp_path / "s.onnx"), "--ratio", "0.5"]
    r = subprocess.run(cmd + ["--group-conv", "groups"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert _attr(onnx.load(str(tmp_path / "s.onnx")), "n_g2", "group") == 1
    r = subprocess.run(cmd + ["--group-conv", "blocks"], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and r.stderr.strip().startswith("spa: error:") and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("mode", [pytest.param("positions", marks=pytest.mark.slow), "groups"])
@pytest.mark.parametrize("name", ["resnext", "regnet"])
def test_zoo_grouped_models_both_modes(name, mode):
    """Tiny ResNeXt and RegNetY (zoo, random init): random plans keep the zero-group oracle in both modes, and
    positions mode keeps every conv's group count (the default mode is also in tests/test_zoo_oracle.py)."""
    from models import quantized as Q

    m = Q.zoo(name)
    res = spa.check(m, group_conv=mode, trials=1)
    assert res.ok, res.failures
    pm, rep = spa.prune(m, ratio=0.5, criterion="l1", oracle=True, group_conv=mode)
    assert rep.oracle <= 1e-5 and rep.after.params < rep.before.params
    groups = [next((a.i for a in n.attribute if a.name == "group"), 1) for n in m.graph.node if n.op_type == "Conv"]
    after = [next((a.i for a in n.attribute if a.name == "group"), 1) for n in pm.graph.node if n.op_type == "Conv"]
    grouped = [(g, h) for g, h in zip(groups, after) if g > 1]
    assert grouped
    if mode == "positions":
        assert all(g == h for g, h in grouped)
    else:
        assert any(h < g for g, h in grouped)
