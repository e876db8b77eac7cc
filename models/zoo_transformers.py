"""Transformer zoo (random init) for spa's tests and benchmarks.

Same interface style as :mod:`models.zoo_torch` (whose init, registry and
export helpers are reused): a ``ZOO`` of specs, ``build(name, size)``,
``example_inputs(name, size, batch)`` and ``export(name, path, ...)``.

Models (all PyTorch, nothing is downloaded):

* ``vit``: timm-style ViT (patch Conv, cls token + position embedding, pre-norm
  blocks with ONE fused qkv Linear and ``reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)``).
* ``vit_sep``: the same with separate q/k/v Linears and ``F.scaled_dot_product_attention``.
* ``mha``: torchvision-style ViT built on ``nn.MultiheadAttention``.
* ``swin``: Swin blocks (window partition by reshape/permute, relative position
  bias gathered with a constant index, shifted windows with ``torch.roll`` and a
  constant attention mask, patch merging).
* ``convnext``: ConvNeXt (depthwise 7x7, NHWC LayerNorm + Linear MLP, layer
  scale, channels-first LayerNorm as permute+LN+permute, 2x2 s2 downsampling).
* ``bert``: ``transformers.BertModel`` from a small ``BertConfig`` (inputs
  ``input_ids``, ``attention_mask``; outputs ``last_hidden_state``, ``pooler_output``).
* ``llama``: ``transformers.LlamaForCausalLM`` from a small ``LlamaConfig``
  (grouped-query attention 4 heads / 2 kv heads, RMSNorm, SwiGLU, rotary
  embeddings, no KV cache; input ``input_ids``, output ``logits``).

Sizes: ``"tiny"`` (export + prune in ~1-2 s) and ``"full"`` (ViT-S/16, Swin-T,
ConvNeXt-T, BERT-base, a SmolLM-135M-shaped Llama).

Image models take ``input`` (N, 3, H, W) and return ``output``; the exported
batch axis is dynamic ("N"), and for bert/llama the sequence axis too ("S").
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from converters.torch_export import DYNAMO_MIN_OPSET, downconvert, quiet
from models.zoo_torch import (
    SEED,
    _check_size,
    _make_builder,
    count_params,
)

__all__ = ["ZOO", "TransformerSpec", "build", "count_params", "example_input", "example_inputs", "export"]


def _param_init(seed_offset: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(SEED + 100 + seed_offset)


# ---------------------------------------------------------------------------
# ViT (timm layout) and its variants
# ---------------------------------------------------------------------------


class Attention(nn.Module):
    """timm ``Attention``: one fused qkv Linear, explicit softmax(q k^T * scale) v."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class SepAttention(nn.Module):
    """Separate q/k/v Linears and ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)

        x = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)))
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class MHAttention(nn.Module):
    """torchvision ViT's self-attention: ``nn.MultiheadAttention`` (batch_first)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, bias=qkv_bias, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(x, x, x, need_weights=False)
        return out


_ATTN: dict[str, type[nn.Module]] = {"fused": Attention, "sep": SepAttention, "mha": MHAttention}


class Mlp(nn.Sequential):
    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)); x + mlp(ln(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, attn: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _ATTN[attn](dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(
        self,
        img: int = 224,
        patch: int = 16,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        attn: str = "fused",
    ):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        n = (img // patch) ** 2
        g = _param_init()
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim, generator=g) * 0.1)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim, generator=g) * 0.1)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, attn) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def _vit_factory(attn: str) -> Callable[[str], nn.Module]:
    def factory(size: str) -> nn.Module:
        if size == "full":  # ViT-S/16
            return ViT(224, 16, 384, 12, 6, 4.0, 1000, attn)
        return ViT(32, 4, 64, 2, 4, 2.0, 10, attn)

    return factory


# ---------------------------------------------------------------------------
# Swin
# ---------------------------------------------------------------------------


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, ws * ws, C)."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def window_reverse(w: torch.Tensor, ws: int, H: int, W: int) -> torch.Tensor:
    """(B * nW, ws * ws, C) -> (B, H, W, C)."""
    C = w.shape[-1]
    x = w.view(-1, H // ws, W // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


class WindowAttention(nn.Module):
    """Swin window attention with a learned relative position bias table."""

    def __init__(self, dim: int, ws: int, num_heads: int):
        super().__init__()
        self.ws = ws
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        g = _param_init(1)
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * ws - 1) ** 2, num_heads, generator=g) * 0.5)
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1], persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(N, N, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(-1, nw, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B_, N, C))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, res: int, num_heads: int, ws: int, shift: int):
        super().__init__()
        if res <= ws:  # as in Swin: one window, no shift
            ws, shift = res, 0
        self.res, self.ws, self.shift = res, ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        mask = None
        if shift:
            img = torch.zeros(1, res, res, 1)
            cnt = 0
            for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
                for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
                    img[:, hs, wsl, :] = cnt
                    cnt += 1
            mw = window_partition(img, ws).squeeze(-1)
            mask = mw.unsqueeze(1) - mw.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H = W = self.res
        B, _L, C = x.shape
        y = self.norm1(x).view(B, H, W, C)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = window_reverse(self.attn(window_partition(y, self.ws), self.attn_mask), self.ws, H, W)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(B, H * W, C)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Concat of the 4 strided 2x2 sub-grids -> LayerNorm(4C) -> Linear(4C, 2C)."""

    def __init__(self, dim: int, res: int):
        super().__init__()
        self.res = res
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _L, C = x.shape
        x = x.view(B, self.res, self.res, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class Swin(nn.Module):
    def __init__(
        self,
        img: int = 224,
        patch: int = 4,
        dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        heads: tuple[int, ...] = (3, 6, 12, 24),
        ws: int = 7,
        num_classes: int = 1000,
    ):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.patch_norm = nn.LayerNorm(dim)
        res = img // patch
        layers: list[nn.Module] = []
        for i, (d, h) in enumerate(zip(depths, heads)):
            layers += [SwinBlock(dim, res, h, ws, 0 if j % 2 == 0 else ws // 2) for j in range(d)]
            if i < len(depths) - 1:
                layers.append(PatchMerging(dim, res))
                dim, res = 2 * dim, res // 2
        self.layers = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_norm(self.patch_embed(x).flatten(2).transpose(1, 2))
        x = self.norm(self.layers(x))
        return self.head(x.mean(dim=1))


def _swin(size: str) -> nn.Module:
    if size == "full":  # Swin-T
        return Swin()
    # 16x16 tokens, window 4 (shift 2) -> merge -> 8x8, window 4 (shift 2)
    return Swin(32, 2, 16, (2, 2), (2, 4), 4, 10)


# ---------------------------------------------------------------------------
# ConvNeXt
# ---------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """Channels-first LayerNorm written as permute -> LayerNorm -> permute."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim: int, seed_offset: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        g = _param_init(10 + seed_offset)
        self.gamma = nn.Parameter(torch.rand(dim, generator=g) * 0.9 + 0.1)  # layer scale, U(0.1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(
        self,
        depths: tuple[int, ...] = (3, 3, 9, 3),
        dims: tuple[int, ...] = (96, 192, 384, 768),
        num_classes: int = 1000,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6)]
        k = 0
        for i, (d, c) in enumerate(zip(depths, dims)):
            if i > 0:
                layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], c, 2, 2)]
            for _ in range(d):
                layers.append(CNBlock(c, k))
                k += 1
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(-2, -1))
        return self.head(self.norm(x))


def _convnext(size: str) -> nn.Module:
    if size == "full":  # ConvNeXt-T
        return ConvNeXt()
    return ConvNeXt((1, 2, 1), (16, 32, 64), 10)


# ---------------------------------------------------------------------------
# Hugging Face models (built from a config, never downloaded)
# ---------------------------------------------------------------------------


class BertWrapper(nn.Module):
    """``BertModel`` with positional tensors in and a plain tuple out (exporters need both)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return out.last_hidden_state, out.pooler_output


class CausalLMWrapper(nn.Module):
    """``LlamaForCausalLM`` without KV cache: input_ids -> logits.

    With ``ones_mask`` an all-ones attention mask is passed: without a mask,
    transformers runs a packed-sequence check on the position ids
    (``torch.diff``) that the legacy exporter cannot export (aten::diff).
    """

    def __init__(self, model: nn.Module, ones_mask: bool = False):
        super().__init__()
        self.model = model
        self.ones_mask = ones_mask

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = torch.ones_like(input_ids) if self.ones_mask else None
        return self.model(input_ids=input_ids, attention_mask=mask, use_cache=False, return_dict=True).logits


_BERT = {
    "tiny": {
        "vocab_size": 512,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "max_position_embeddings": 64,
    },
    "full": {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
    },
}
_LLAMA = {
    "tiny": {
        "vocab_size": 512,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": 128,
        "tie_word_embeddings": False,
    },
    # SmolLM-135M shape
    "full": {
        "vocab_size": 49152,
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "intermediate_size": 1536,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
    },
}
_SEQ = {"bert": {"tiny": 16, "full": 128}, "llama": {"tiny": 16, "full": 128}}
_SEQ["llama_onesmask"] = _SEQ["llama"]


def _bert(size: str) -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(**_BERT[size], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.1)
    return BertWrapper(BertModel(cfg))


def _llama(size: str, ones_mask: bool = False) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**_LLAMA[size], use_cache=False, initializer_range=0.1)
    model = LlamaForCausalLM(cfg)
    g = _param_init(2)
    with torch.no_grad():  # RMSNorm is not a torch norm type, so randomize_norms skips it
        for m in model.modules():
            if type(m).__name__ == "LlamaRMSNorm":
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
    return CausalLMWrapper(model, ones_mask)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerSpec:
    name: str
    build: Callable[..., nn.Module]  # build(size="tiny"|"full") -> eval-mode module
    input_shape: Callable[[str], tuple[int, ...]]  # size -> shape of the first input at batch 1
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]  # input/output name -> {axis: dim name}
    description: str = ""


def _img(tiny: int, full: int = 224) -> Callable[[str], tuple[int, ...]]:
    def shape(size: str = "tiny") -> tuple[int, ...]:
        _check_size(size)
        return (1, 3, tiny if size == "tiny" else full, tiny if size == "tiny" else full)

    return shape


def _tokens(name: str) -> Callable[[str], tuple[int, ...]]:
    def shape(size: str = "tiny") -> tuple[int, ...]:
        _check_size(size)
        return (1, _SEQ[name][size])

    return shape


_NS = {0: "N", 1: "S"}
_IMG_IO = (("input",), ("output",), {"input": {0: "N"}, "output": {0: "N"}})
_LM_IO = (("input_ids",), ("logits",), {"input_ids": _NS, "logits": _NS})
_ENTRIES: list[tuple[str, Callable[[str], nn.Module], Callable[[str], tuple[int, ...]], tuple, str]] = [
    ("vit", _vit_factory("fused"), _img(32), _IMG_IO, "ViT (timm Attention, fused qkv); full: ViT-S/16"),
    ("vit_sep", _vit_factory("sep"), _img(32), _IMG_IO, "ViT, separate q/k/v + F.scaled_dot_product_attention"),
    ("mha", _vit_factory("mha"), _img(32), _IMG_IO, "ViT on nn.MultiheadAttention (torchvision style)"),
    (
        "swin",
        _swin,
        _img(32),
        _IMG_IO,
        "Swin (window attention, rel. pos. bias, shifted windows, patch merging); full: Swin-T",
    ),
    ("convnext", _convnext, _img(32), _IMG_IO, "ConvNeXt (dw 7x7, NHWC LN + MLP, layer scale); full: ConvNeXt-T"),
    (
        "bert",
        _bert,
        _tokens("bert"),
        (
            ("input_ids", "attention_mask"),
            ("last_hidden_state", "pooler_output"),
            {"input_ids": _NS, "attention_mask": _NS, "last_hidden_state": _NS, "pooler_output": {0: "N"}},
        ),
        "transformers BertModel; full: bert-base",
    ),
    (
        "llama",
        _llama,
        _tokens("llama"),
        _LM_IO,
        "transformers LlamaForCausalLM (GQA 4/2, RMSNorm, SwiGLU, RoPE); full: SmolLM-135M shape",
    ),
    (
        "llama_onesmask",
        functools.partial(_llama, ones_mask=True),
        _tokens("llama"),
        _LM_IO,
        "llama with an internal all-ones attention mask (exportable by the legacy exporter)",
    ),
]

ZOO: dict[str, TransformerSpec] = {
    name: TransformerSpec(name, _make_builder(name, fac, shp), shp, io[0], io[1], io[2], desc)
    for name, fac, shp, io, desc in _ENTRIES
}


def _spec(name: str) -> TransformerSpec:
    try:
        return ZOO[name]
    except KeyError:
        raise KeyError(f"unknown transformer zoo model {name!r}; available: {sorted(ZOO)}") from None


def build(name: str, size: str = "tiny") -> nn.Module:
    """Build zoo model ``name`` in eval mode with deterministic (seed 0) init."""
    return _spec(name).build(size)


def _vocab(name: str, size: str) -> int:
    return (_BERT if name == "bert" else _LLAMA)[size]["vocab_size"]


def example_inputs(name: str, size: str = "tiny", batch: int = 1, seq: int | None = None) -> dict[str, torch.Tensor]:
    """Deterministic named inputs (in forward order).

    Images: N(0, 1).  Tokens: uniform ids; bert's attention mask hides the last
    quarter of the last sequence, so that the exported graph cannot have
    specialised on an all-ones mask.
    """
    spec = _spec(name)
    shape = spec.input_shape(size)
    g = torch.Generator().manual_seed(1234)
    if len(shape) == 4:
        return {"input": torch.randn((batch,) + tuple(shape[1:]), generator=g)}
    s = seq or shape[1]
    out = {"input_ids": torch.randint(0, _vocab(name, size), (batch, s), generator=g)}
    if "attention_mask" in spec.input_names:
        mask = torch.ones(batch, s, dtype=torch.int64)
        mask[-1, s - max(1, s // 4) :] = 0
        out["attention_mask"] = mask
    return out


def example_input(name: str, size: str = "tiny", batch: int = 1) -> torch.Tensor:
    """The first input (the image for vision models, input_ids for token models)."""
    return next(iter(example_inputs(name, size, batch).values()))


def export(
    name: str,
    path: str | os.PathLike,
    *,
    size: str = "tiny",
    dynamo: bool = False,
    opset: int | None = None,
    dynamic: bool = True,
    model: nn.Module | None = None,
) -> pathlib.Path:
    """Export zoo model ``name`` to one self-contained ONNX file at ``path``.

    Input/output names are the spec's (``input``/``output`` for images).  With
    ``dynamic`` the batch axis ("N", and "S" for token models) is dynamic.
    ``opset`` defaults to 17 for the legacy exporter and 18 (its native opset)
    for ``dynamo=True``; a lower opset for dynamo goes through the converters'
    ``downconvert``.  The legacy exporter is traced at batch 1, the dynamo one
    at batch 2 so that the batch dim is not specialised.
    """
    import onnx

    spec = _spec(name)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = build(name, size)
    model.eval()

    if not dynamo:
        opset = 17 if opset is None else opset
        args = tuple(example_inputs(name, size, batch=1).values())
        dynamic_axes = {n: dict(axes) for n, axes in spec.dynamic.items()} if dynamic else None
        # Not under torch.no_grad(): there nn.MultiheadAttention takes its inference fast path
        # (aten::_native_multi_head_attention), which the legacy exporter cannot export.
        with quiet():
            torch.onnx.export(
                model,
                args,
                str(path),
                dynamo=False,
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        return path

    opset = DYNAMO_MIN_OPSET if opset is None else opset
    args = tuple(example_inputs(name, size, batch=2 if dynamic else 1).values())
    dynamic_shapes = None
    if dynamic:
        dims = {d: torch.export.Dim(d, min=1 if d == "N" else 2, max=1024) for d in ("N", "S")}
        dynamic_shapes = tuple({ax: dims[d] for ax, d in spec.dynamic[n].items()} for n in spec.input_names)
    with quiet(), torch.no_grad():
        prog = torch.onnx.export(
            model,
            args,
            None,
            dynamo=True,
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_shapes=dynamic_shapes,
            opset_version=max(opset, DYNAMO_MIN_OPSET),
            external_data=False,
            optimize=True,
            verbose=False,
        )
    proto = prog.model_proto
    if opset < DYNAMO_MIN_OPSET:
        proto = downconvert(proto, opset)
    onnx.save_model(proto, str(path))
    return path


def max_rel_error(
    path: str | os.PathLike,
    name: str,
    size: str = "tiny",
    batch: int = 2,
    seq: int | None = None,
    model: nn.Module | None = None,
) -> float:
    """max |onnxruntime - torch| / max |torch| over all outputs, on ``example_inputs(batch, seq)``."""
    import numpy as np
    import onnxruntime as ort

    model = build(name, size) if model is None else model
    inputs = example_inputs(name, size, batch, seq)
    with torch.no_grad():
        ref = model(*inputs.values())
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed_names = {i.name for i in sess.get_inputs()}
    got = sess.run(None, {k: v.numpy() for k, v in inputs.items() if k in feed_names})
    err = 0.0
    for r, o in zip(refs, got, strict=True):
        r = r.numpy()
        if r.shape != o.shape:
            raise AssertionError(f"{name}: output shape {o.shape} != torch {r.shape}")
        err = max(err, float(np.abs(o - r).max() / max(np.abs(r).max(), 1e-12)))
    return err


if __name__ == "__main__":  # pragma: no cover - quick inventory
    for n, s in ZOO.items():
        print(f"{n:10s} tiny={count_params(s.build('tiny')):>10,d}  input={s.input_shape('tiny')}")
