"""Recurrent layers (spa/rules/recurrent.py): LSTM, GRU and RNN lose hidden units and input channels.

Hand-built layers (models/recurrent.py) cover every optional input and attribute: both directions, layout 1,
initial states, peepholes, GRU linear_before_reset, sequence_lens, clip, activations, each of Y / Y_h / Y_c
consumed. Each is pruned at 0.5 with the zero-group oracle (onnxruntime; layout 1, which onnxruntime does not
run, in onnx's reference evaluator). The CHOICE: planted dead hidden units and dead input channels are the ones
`l1` removes, and the outputs do not change. Then the exporters: torch legacy and dynamo (stacked and
bidirectional), Keras through tf2onnx (LSTM op; GRU as a Loop, frozen with the recurrent state named).
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import spa
from models import recurrent as R
from spa.analysis import analyze
from spa.api import prepare
from spa.plan import keep_mask
from spa.verify import oracle_error, run

TOL = 1e-5

CASES = {
    f"{kind}-{direction}": {"kind": kind, "direction": direction}
    for kind in ("LSTM", "GRU", "RNN") for direction in ("forward", "reverse", "bidirectional")
} | {
    "LSTM-peepholes": {"kind": "LSTM", "direction": "bidirectional", "peepholes": True},
    "GRU-linear_before_reset": {"kind": "GRU", "direction": "bidirectional", "linear_before_reset": 1},
    "LSTM-seq_lens-clip": {"kind": "LSTM", "seq_lens": True, "clip": 2.0},
    "RNN-sigmoid": {"kind": "RNN", "activations": ["Sigmoid"]},
    "GRU-no-states-Y_h-only": {"kind": "GRU", "init_states": False, "consume": ("Y_h",)},
    "LSTM-Y_c-only": {"kind": "LSTM", "direction": "bidirectional", "consume": ("Y_c",)},
}
LAYOUT1 = {f"{kind}-layout1": {"kind": kind, "direction": "bidirectional", "layout": 1} for kind in ("LSTM", "GRU", "RNN")}


def build(case: dict, **extra) -> onnx.ModelProto:
    c = dict(case) | extra
    return R.layer(c.pop("kind"), **c)


def rnn_node(m: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in m.graph.node if n.op_type in ("LSTM", "GRU", "RNN"))


def inits(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def hidden_size(n: onnx.NodeProto) -> int:
    return next(helper.get_attribute_value(a) for a in n.attribute if a.name == "hidden_size")


def check_shapes(m: onnx.ModelProto, h: int) -> None:
    """Every tensor of the pruned layer agrees on the new hidden size (and the initial states/peepholes)."""
    n, vals = rnn_node(m), inits(m)
    g = R.GATES[n.op_type]
    assert hidden_size(n) == h
    assert vals[n.input[1]].shape[1] == g * h and vals[n.input[2]].shape[1:] == (g * h, h)
    assert vals[n.input[3]].shape[1] == 2 * g * h
    for i in (5, 6):
        if i < len(n.input) and n.input[i]:
            assert vals[n.input[i]].shape[-1] == h
    if n.op_type == "LSTM" and len(n.input) > 7 and n.input[7]:
        assert vals[n.input[7]].shape[1] == 3 * h


@pytest.mark.parametrize("name", list(CASES))
def test_layer_oracle(name):
    m = build(CASES[name])
    pruned, rep = spa.prune(m, ratio=0.5, oracle=True)
    assert rep.oracle is not None and rep.oracle < TOL, rep.oracle
    hidden = [g for g in spa.analyze(m).analysis.groups if any(mb.tensor == "R" and mb.axis == 2 for mb in g.members)]
    assert len(hidden) == 1 and hidden[0].prunable and hidden[0].size == 8
    assert hidden[0].width == R.GATES[CASES[name]["kind"]]  # the gates of a unit are one channel
    check_shapes(pruned, 4)
    assert rep.after.params < rep.before.params
    feeds = {"x": np.random.default_rng(1).normal(size=(5, 2, 3)).astype(np.float32)}
    # not vacuous: live units were removed, so the outputs do change
    assert max(np.abs(a - b).max() for a, b in zip(run(m, feeds), run(pruned, feeds))) > 1e-3


@pytest.mark.parametrize("name", list(LAYOUT1))
def test_layout1_oracle_in_reference_evaluator(name):
    """onnxruntime rejects layout = 1 (batch first): the oracle runs in onnx's reference evaluator."""
    m = build(LAYOUT1[name])
    pruned, rep = spa.prune(m, ratio=0.5, oracle="float64", verify=False)
    onnx.checker.check_model(pruned, full_check=True)
    assert rep.oracle is not None and rep.oracle < 1e-9, rep.oracle
    check_shapes(pruned, 4)
    x = {"x": np.random.default_rng(1).normal(size=(2, 5, 3)).astype(np.float32)}
    outs = ReferenceEvaluator(pruned).run(None, x)
    assert [o.shape for o in outs] == [o.shape for o in ReferenceEvaluator(m).run(None, x)]


@pytest.mark.parametrize("kind,direction", [("LSTM", "bidirectional"), ("GRU", "forward"), ("RNN", "bidirectional")])
def test_dead_units_are_the_ones_removed(kind, direction):
    """Units with zero gate rows, zero R columns and zero consumer columns (their biases, peepholes and initial
    states stay live: they run but reach nothing) and dead input channels go first under l1; the outputs stay."""
    dead, dead_in = (1, 6), (2,)
    m = R.layer(kind, direction=direction, peepholes=True, dead=dead, dead_inputs=dead_in)
    pruned, rep = spa.prune(m, ratio=0.25, criterion="l1", oracle=True)
    assert rep.oracle < TOL
    n = rnn_node(pruned)
    assert hidden_size(n) == 6
    before, after = inits(m), inits(pruned)
    keep_h = [k for k in range(8) if k not in dead]
    np.testing.assert_array_equal(after["R"], before["R"][:, :, keep_h][:, np.concatenate(
        [np.array(keep_h) + j * 8 for j in range(R.GATES[kind])])])
    np.testing.assert_array_equal(after["w_in"], np.delete(before["w_in"], dead_in, axis=1))
    feeds = {"x": np.random.default_rng(2).normal(size=(5, 2, 3)).astype(np.float32)}
    for a, b in zip(run(m, feeds), run(pruned, feeds)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_graph_input_state_is_frozen():
    """A state fed by the caller (Silero VAD's `state`) cannot shrink: the hidden group is frozen, with why."""
    m = R.layer("GRU")
    g = m.graph
    h0 = next(t for t in g.initializer if t.name == "h0")
    g.input.append(helper.make_tensor_value_info("h0", onnx.TensorProto.FLOAT, list(h0.dims)))
    g.initializer.remove(h0)
    rep = spa.analyze(m)
    hidden = next(gr for gr in rep.analysis.groups if any(mb.tensor == "R" and mb.axis == 2 for mb in gr.members))
    assert not hidden.prunable and "graph input 'h0'" in hidden.why


def test_obspa_falls_back_to_magnitude_for_recurrent_consumers():
    """OBSPA re-fits Conv/Gemm/MatMul consumers only: the LSTM's W columns are not re-fitted, and the heads
    after it are; the oracle (with the compensated weights) still holds."""
    m = R.layer("LSTM", direction="bidirectional", batch_first=True, init_states=False)
    _, rep = spa.prune(m, ratio=0.5, criterion="obspa", oracle=True)
    assert rep.oracle < TOL and rep.groups_pruned == 2


def test_loop_recurrent_state_reason():
    rep = spa.analyze(R.unrolled("Loop"))
    state = next(g for g in rep.analysis.groups if any(mb.tensor == "w0" and mb.axis == 1 for mb in g.members))
    assert not state.prunable
    assert "Loop 'while_loop': recurrent state 'h0' of width 6 carried through the Loop body" in state.why
    assert "pruning it needs the body's rule" in state.why


# ----------------------------------------------------------------------------------------- exporters
@functools.cache
def torch_export(kind: str, bidirectional: bool, num_layers: int, dynamo: bool) -> onnx.ModelProto:
    pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    return R.torch_rnn(kind, bidirectional=bidirectional, num_layers=num_layers, dynamo=dynamo)


TORCH = [("LSTM", True, 2, False), ("GRU", False, 1, False), ("RNN", True, 1, False),
         ("LSTM", True, 2, True), ("GRU", False, 2, True), ("RNN", False, 1, True)]


@pytest.mark.parametrize("kind,bi,layers,dynamo", TORCH,
                         ids=[f"{k}-{'bi' if b else 'uni'}-{n}l-{'dynamo' if d else 'legacy'}" for k, b, n, d in TORCH])
def test_torch_exports(kind, bi, layers, dynamo):
    """Legacy: LSTM/GRU/RNN ops with a ConstantOfShape zero state sliced per layer (dropped when a layer is
    pruned, so stacked layers stay independent). Dynamo: LSTM/GRU ops with a zero initializer as state; RNN is
    unrolled into MatMul/Tanh, which the linear rules already follow."""
    m = torch_export(kind, bi, layers, dynamo)
    pruned, rep = spa.prune(m, ratio=0.5, oracle=True)
    assert rep.oracle is not None and rep.oracle < TOL, rep.oracle
    nodes = [n for n in pruned.graph.node if n.op_type == kind]
    if dynamo and kind == "RNN":
        assert not nodes and rep.groups_pruned >= 1
        return
    assert len(nodes) == layers
    for n in nodes:  # every layer pruned on its own, its zero state dropped
        assert hidden_size(n) == 4
        assert all(not n.input[i] for i in range(5, min(len(n.input), 7)))
    assert rep.groups_pruned == layers + 1  # each layer's hidden units, and the channels of the Linear before


@pytest.mark.keras
def test_keras_lstm_and_gru():
    pytest.importorskip("tf2onnx")
    lstm = R.keras_rnn("LSTM", bidirectional=True)
    pruned, rep = spa.prune(lstm, ratio=0.5, oracle=True)
    assert rep.oracle < TOL and hidden_size(rnn_node(pruned)) == 3
    gru = R.keras_rnn("GRU")
    rep = spa.analyze(gru)
    assert not rep.analysis.prunable
    whys = " ".join(g.why for g in rep.analysis.groups)
    assert "recurrent state" in whys and "of width 6 carried through the Loop body" in whys


def test_macs_count_every_step_direction_and_gate():
    """T·B·dirs·G·H·(I + H): the recurrent MACs shrink with the hidden and input widths."""
    m = R.layer("LSTM", direction="bidirectional", dead=(1, 6), dead_inputs=(2,))
    _, rep = spa.prune(m, ratio=0.25, criterion="l1")
    rnn = rep.before.macs_by_op["LSTM"], rep.after.macs_by_op["LSTM"]
    assert rnn == (5 * 2 * 2 * 4 * 8 * (4 + 8), 5 * 2 * 2 * 4 * 6 * (3 + 6))


@pytest.mark.parametrize("name", ["LSTM-peepholes", "GRU-linear_before_reset", "RNN-reverse"])
def test_random_plans_and_oracle_sensitivity(name):
    """spa.check's random plans (local and global) hold the oracle; and the oracle is not blind to the
    recurrent weights: the pruned model with two hidden columns of R swapped fails it."""
    m = build(CASES[name])
    res = spa.check(m, trials=4)
    assert res.ok, res.failures
    pruned, rep = spa.prune(m, ratio=0.5)
    view, _ = prepare(m)
    a = analyze(view)
    keep = keep_mask(a, rep.plan)
    assert oracle_error(a, keep, pruned) < TOL
    for t in pruned.graph.initializer:
        if t.name == "R":
            r = numpy_helper.to_array(t).copy()
            r[:, :, [0, 1]] = r[:, :, [1, 0]]
            t.CopyFrom(numpy_helper.from_array(r, "R"))
    assert oracle_error(a, keep, pruned) > 1e-3


def test_scan_recurrent_state_reason():
    """Scan: the states come first (inputs minus num_scan_inputs); the scanned sequence is frozen with them."""
    rep = spa.analyze(R.unrolled("Scan"))
    for w in ("w0", "w_h"):
        g = next(g for g in rep.analysis.groups if any(mb.tensor == w and mb.axis == 1 for mb in g.members))
        assert not g.prunable and "recurrent state 'h0' of width 6 carried through" in g.why, g.why


@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["legacy", "dynamo"])
def test_torch_last_hidden_head(dynamo):
    """A classifier on h_n[-1]: the exporters concatenate every layer's Y_h, which couples the layers' hidden
    units (one group, pruned together); the oracle holds."""
    pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    m = R.torch_rnn("LSTM", bidirectional=True, num_layers=2, dynamo=dynamo, last_hidden=True)
    pruned, rep = spa.prune(m, ratio=0.5, oracle=True)
    assert rep.oracle is not None and rep.oracle < TOL, rep.oracle
    assert [hidden_size(n) for n in pruned.graph.node if n.op_type == "LSTM"] == [4, 4]
