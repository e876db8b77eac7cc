"""Real third-party ONNX files (models/wild.py): PP-OCRv4 det/rec/cls (Paddle), Magika (JAX/Keras -> tf2onnx),
NudeNet YOLOv8n (Ultralytics torch), Silero VAD (TorchScript, LSTM inside If), ddddocr's dynamic-int8 CRNN.

For each: `spa analyze` on the untouched file gives every frozen group a reason; pruning at 0.3 (with the
registry's real-looking static input shape) gives a checker-valid model that onnxruntime runs, with the same
output names and shapes and fewer parameters; the zero-group oracle on real-looking inputs holds within 1e-5.
A model whose package is not installed is skipped.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

import spa
from models import wild
from spa.verify import run

NAMES = list(wild.WILD)
TOL = 1e-5

# pruning the untouched file (symbolic dims fed as 1 by spa's verification): the models that cannot be
# verified that way, and why; xfail(strict) so that a fix in spa shows up
RAW_FAILS = {
    "silero_vad": "its int64 sample-rate scalar input must be 8000 or 16000 and its state's batch axis is axis 1: "
                  "random verification inputs (any size) cannot run the original",
}


def _param(name: str):
    m = wild.WILD[name]
    marks = [pytest.mark.slow] if m.slow else []
    return pytest.param(name, marks=marks, id=name)


PARAMS = [_param(n) for n in NAMES]


def _need(name: str) -> None:
    try:
        wild.path(name)
    except wild.WildModelMissing as e:
        pytest.skip(str(e))


@functools.cache
def _pruned(name: str):
    return spa.prune(wild.load(name), ratio=0.3, criterion="l1")


@pytest.mark.parametrize("name", PARAMS)
def test_analyze_gives_every_frozen_group_a_reason(name: str) -> None:
    _need(name)
    rep = spa.analyze(str(wild.path(name)))
    groups = rep.analysis.groups
    frozen = [g for g in groups if not g.prunable]
    assert rep.analysis.prunable, f"{name}: nothing prunable"
    assert frozen, f"{name}: a real model always has frozen groups (its graph input at least)"
    for g in frozen:
        assert g.why.strip(), f"{name}: group {g.id} frozen without a reason"
    # no group is frozen by a rule that tripped over a node
    assert not [g.why for g in frozen if "rule error" in g.why]


@pytest.mark.parametrize("name", PARAMS)
def test_prune_is_valid_runs_and_keeps_the_interface(name: str) -> None:
    _need(name)
    original = wild.load(name)
    pruned, rep = _pruned(name)
    onnx.checker.check_model(pruned, full_check=True)
    assert [o.name for o in pruned.graph.output] == [o.name for o in original.graph.output]
    assert [i.name for i in pruned.graph.input] == [i.name for i in original.graph.input]
    feeds = wild.inputs(name)
    before, after = run(original, feeds), run(pruned, feeds)
    assert [a.shape for a in after] == [b.shape for b in before]
    assert all(np.isfinite(a).all() for a in after)
    assert rep.after.params < rep.before.params
    assert rep.after.macs < rep.before.macs
    assert rep.groups_pruned > 0


@pytest.mark.parametrize("name", PARAMS)
def test_zero_group_oracle_on_real_inputs(name: str) -> None:
    _need(name)
    pruned, rep = _pruned(name)
    err = wild.oracle_error(name, wild.load(name), pruned, rep.plan)
    assert err <= TOL, f"{name}: zero-group oracle error {err:.2e}"


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=RAW_FAILS[n])) if n in RAW_FAILS else n
     for n in NAMES],
)
def test_prune_untouched_file(name: str) -> None:
    """What `spa prune FILE --ratio 0.3` does today on the file as shipped."""
    _need(name)
    _, rep = spa.prune(str(wild.path(name)), ratio=0.3)
    assert rep.after.params < rep.before.params


def test_a_wrong_output_declaration_is_fixed_and_said() -> None:
    """ddddocr's CRNN (PyTorch 1.9) declares [1, seqlen] and returns [T, 1, 8210]: the pruned model is compared
    with what the original returns, the declaration is corrected (rank 3, symbolic dims) and the report says so
    (issue 13 item 5)."""
    _need("ddddocr_old")
    pruned, rep = spa.prune(str(wild.path("ddddocr_old")), ratio=0)
    assert any("declared [1, None]" in n and "8210" in n for n in rep.notes), rep.notes
    assert len(pruned.graph.output[0].type.tensor_type.shape.dim) == 3


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(wild.WILD, "nowhere", wild.WildModel("nowhere", "no-such-dist", "no_such_module_xyz",
                                                              "m.onnx", "-", 0, "-"))
    with pytest.raises(wild.WildModelMissing, match="pip install no-such-dist"):
        wild.path("nowhere")
    assert not wild.available("nowhere")
