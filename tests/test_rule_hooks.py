"""The rule layer as an explicit, extensible set (spa/rules): rules passed at call time, duplicate claims refused,
and the optional hooks (MACs, consumer matrices) giving the numbers the op tables outside rules/ gave before.

The pinned MAC and consumer figures were measured with the code before the hooks (commit ab112db, whose
spa.report and spa.calib held per-op tables): moving the formulas into the rules must not change them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import spa
from models import patterns, recurrent
from spa.analysis import analyze
from spa.api import compute_plan, prepare
from spa.calib import find_consumers
from spa.view import ModelView
from spa.plan import keep_mask
from spa.report import model_stats
from spa.rewrite import Rewriter
from spa.rules import DEFAULT, NodeCtx, Rule, RuleSet
from spa.verify import oracle_error

SAMPLES = Path(__file__).resolve().parents[1] / "models" / "samples"
CUSTOM = "test.spa"


def _custom_op_model() -> onnx.ModelProto:
    """x (N,3,8,8) -> Conv (3->8) -> MySwish (domain test.spa, a model-local function: x·sigmoid(x)) -> Conv
    (8->4) -> y. onnxruntime runs the function; spa has no rule for it."""
    rng = np.random.default_rng(0)
    w0 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w0")
    b0 = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b0")
    w1 = numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "w1")
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["t"], name="c0", pads=[1, 1, 1, 1]),
             helper.make_node("MySwish", ["t"], ["s"], name="swish", domain=CUSTOM),
             helper.make_node("Conv", ["s", "w1"], ["y"], name="c1")]
    g = helper.make_graph(nodes, "custom", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], [w0, b0, w1])
    fn = helper.make_function(CUSTOM, "MySwish", ["X"], ["Y"],
                              [helper.make_node("Sigmoid", ["X"], ["S"]), helper.make_node("Mul", ["X", "S"], ["Y"])],
                              [helper.make_opsetid("", 17)])
    return helper.make_model(g, functions=[fn], opset_imports=[helper.make_opsetid("", 17),
                                                               helper.make_opsetid(CUSTOM, 1)])


class MySwish(Rule):
    """y = x·sigmoid(x) element by element: every axis passes through."""

    ops = ("MySwish",)
    domain = CUSTOM

    def couple(self, n: NodeCtx) -> None:
        n.same(n.inp(0), n.out())


def _group_of(a, tensor: str, axis: int):
    return next(g for g in a.groups if any(m.tensor == tensor and m.axis == axis for m in g.members))


def test_unknown_custom_op_freezes_its_channels():
    a = analyze(prepare(_custom_op_model())[0])
    assert "MySwish (domain test.spa)" in a.unknown_ops
    g = _group_of(a, "w0", 0)
    assert not g.prunable and "no channel rule" in g.why


@pytest.mark.parametrize("rule", [MySwish, MySwish()], ids=["class", "instance"])
def test_user_rule_at_call_time_makes_the_channels_prunable(rule):
    m = _custom_op_model()
    rep = spa.analyze(m, rules=[rule])
    assert not rep.analysis.unknown_ops
    assert _group_of(rep.analysis, "w0", 0).prunable
    # the analysis carries the set it was made with: the rewriter and the oracle use the same rules
    assert isinstance(rep.analysis.rules.rule_for(m.graph.node[1]), MySwish)
    a = rep.analysis
    keep = keep_mask(a, compute_plan(a, ratio=0.5, criterion="l1"))
    pruned = Rewriter(a, keep).apply()
    assert [list(t.dims) for t in pruned.graph.initializer if t.name == "w1"] == [[4, 4, 1, 1]]
    assert oracle_error(a, keep, pruned) < 1e-5
    assert spa.check(m, trials=2, rules=[rule]).ok
    # the default set is left as it was
    assert DEFAULT.rule_for(m.graph.node[1]) is None


def test_a_user_rule_replaces_the_default_rule_for_its_op():
    class FrozenRelu(Rule):
        ops = ("Relu",)

        def couple(self, n: NodeCtx) -> None:
            n.bail("this user keeps Relu widths")

    m = patterns.build("conv_bn_relu")
    before = analyze(prepare(m)[0])
    after = analyze(prepare(m)[0], rules=[FrozenRelu])
    relu = next(n for n in m.graph.node if n.op_type == "Relu")
    assert isinstance(after.rules.rule_for(relu), FrozenRelu)
    assert type(after.rules.rule_for(m.graph.node[0])) is type(DEFAULT.rule_for(m.graph.node[0]))  # Conv: default
    frozen = [g for g in after.groups if any("this user keeps Relu widths" in r for r in g.frozen)]
    assert frozen and len(after.prunable) < len(before.prunable)


def test_two_rules_claiming_one_op_are_refused():
    class A(Rule):
        ops = ("Relu", "MySwish")

    class B(Rule):
        ops = ("Relu",)

    with pytest.raises(ValueError, match="two rules claim op 'Relu'.*A and B"):
        RuleSet([A, B])
    with pytest.raises(ValueError, match="two rules claim op 'Relu'"):
        analyze(prepare(_custom_op_model())[0], rules=[A, B])
    assert RuleSet([A]).ops() == [("", "Relu"), ("", "MySwish")]
    # another domain is another op
    B.domain = CUSTOM
    assert len(RuleSet([A, B]).ops()) == 3


def test_rules_are_rule_objects():
    with pytest.raises(TypeError, match="not a channel rule"):
        RuleSet([object()])  # type: ignore[list-item]

    class NoOps(Rule):
        pass

    with pytest.raises(ValueError, match="claims no op"):
        RuleSet([NoOps])


def test_without_leaves_an_op_to_the_unknown_path():
    rs = DEFAULT.without("LSTM", "GRU", "RNN")
    m = recurrent.layer("LSTM")
    a = analyze(prepare(m)[0], rules=rs)
    assert "LSTM" in a.unknown_ops and a.rules is rs
    assert "LSTM" not in analyze(prepare(m)[0]).unknown_ops  # the default set still has it


# MACs per op as spa.report counted them before the hooks (ab112db)
OLD_MACS = {
    "simple_cnn": {"Conv": 2211840, "Gemm": 33408},
    "resnet18_tiny": {"Conv": 7520256, "Gemm": 1280},
    "conv_transpose": {"Conv": 105984, "ConvTranspose": 12288},
    "conv_transpose_grouped": {"Conv": 124416, "ConvTranspose": 8192},
    "grouped_conv": {"Conv": 91648},
    "depthwise_multiplier": {"Conv": 96768},
    "gemm_transA": {"Conv": 50688, "Gemm": 130},
    "matmul_init_left": {"Conv": 78336, "MatMul": 6144},
    "nonlocal_block": {"Conv": 79360, "MatMul": 40960},
    "qlinear_conv": {"Conv": 50688, "QLinearConv": 18432},
    "qoperator_qgemm": {"QGemm": 156, "QLinearConv": 50688},
    "dynamic_matmul_integer": {"ConvInteger": 50688, "MatMulInteger": 380},
    "LSTM": {"LSTM": 3840, "MatMul": 456},
    "GRU_bi_layout1": {"GRU": 5760, "MatMul": 696},
    "RNN": {"MatMul": 408, "RNN": 960},
}


def _model(name: str) -> onnx.ModelProto:
    if (SAMPLES / f"{name}.onnx").exists():
        return onnx.load(str(SAMPLES / f"{name}.onnx"))
    if name in ("LSTM", "RNN"):
        return recurrent.layer(name)
    if name == "GRU_bi_layout1":
        return recurrent.layer("GRU", direction="bidirectional", layout=1)
    return patterns.build(name)


@pytest.mark.parametrize("name", sorted(OLD_MACS))
def test_mac_hooks_give_the_old_numbers(name):
    assert model_stats(ModelView.build(_model(name))).macs_by_op == OLD_MACS[name]


def test_ops_without_a_mac_hook_count_nothing():
    st = model_stats(ModelView.build(_model("conv_transpose")), rules=DEFAULT.without("ConvTranspose"))
    assert st.macs_by_op == {"Conv": 105984}


# consumers (op, weight axis of the input channels, has a bias, transA) as spa.calib found them before (ab112db)
OLD_CONSUMERS = {
    "simple_cnn": {("Conv", 1, True, False): 2, ("Gemm", 1, True, False): 2},
    "resnet18_tiny": {("Conv", 1, True, False): 13, ("Gemm", 1, True, False): 1},
    "matmul_init_right": {("Conv", 1, True, False): 1, ("MatMul", 0, True, False): 2},
    "gemm_transA": {("Conv", 1, True, False): 1, ("Gemm", 1, True, False): 1, ("Gemm", 1, True, True): 1},
    "gemm_transB": {("Conv", 1, True, False): 1, ("Gemm", 1, True, False): 2},
    "grouped_conv": {("Conv", 1, True, False): 2},
    "nhwc_flatten": {("Conv", 1, True, False): 1, ("MatMul", 0, False, False): 1, ("MatMul", 0, True, False): 1},
}


@pytest.mark.parametrize("name", sorted(OLD_CONSUMERS))
def test_consumer_hooks_find_the_old_consumers(name):
    a = analyze(prepare(_model(name))[0])
    cons = find_consumers(a)
    got = Counter((c.op, c.in_axis, c.bias is not None, c.trans_a) for c in cons.values())
    assert dict(got) == OLD_CONSUMERS[name]
    for (w, axis), c in cons.items():
        node = a.view.model.graph.node[c.node]
        spec = a.rules.rule_for(node).consumer(node, a.view)
        assert (spec.weight, spec.in_axis, spec.op) == (w, axis, c.op)
