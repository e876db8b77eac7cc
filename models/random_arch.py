"""Random CNN architectures for property-based testing of the structural pruner.

A network is described by plain data: :class:`ArchSpec`, a frozen dataclass that
holds the input geometry, a tuple of *blocks* and a *head*.  Every block and head
is itself a frozen dataclass with a class-level ``kind`` tag, so a spec is
hashable, comparable and round-trips exactly through JSON
(:meth:`ArchSpec.to_json` / :meth:`ArchSpec.from_json`).

Channel counts are never stored for a block's *input*: they follow from the
previous block (see :func:`infer_shapes`).  Composite blocks (residual, concat,
split) contain nested block sequences, which may themselves contain composites
(the strategy nests at most two levels deep).

Block kinds (``kind`` tag -> dataclass)::

    conv                Conv          Conv2d(k in 1/3/5, stride 1/2, pad k//2, groups)
                                      [+ BatchNorm2d] [+ activation]
    residual            Residual      body(x) + shortcut(x) [+ activation]; shortcut is
                                      identity or a 1x1 conv (optionally + BN)
    concat              Concat        cat([branch(x) for branch], dim=1); () = identity
    split               Split         chunk / split(int) / split(sizes) along channels,
                                      per-piece branches, cat of a permuted subset
    se                  SqueezeExcite pool -> 1x1 conv -> relu -> 1x1 conv -> gate -> x*gate
    pool                Pool          MaxPool2d(2) / AvgPool2d(2)
    upsample            Upsample      nn.Upsample(x2, nearest/bilinear) or
                                      ConvTranspose2d(k 2/4, stride 2, groups 1)
    channel_slice       ChannelSlice  x[:, start:stop]
    transpose_roundtrip TransposeRoundtrip  permute to NHWC -> op -> permute back
                                      (op: linear / relu / gelu / sigmoid / layernorm)
    channel_shuffle     ChannelShuffle  ShuffleNet view-transpose-view
    affine              Affine        x * p (+ q), p, q parameters of shape (1,C,1,1)
    instance_norm       InstanceNorm  InstanceNorm2d

Head kinds::

    gap_linear_head     GapLinearHead     global avg pool -> flatten -> Linear(s)
    flatten_linear_head FlattenLinearHead flatten(C*H*W) -> Linear(s)
    conv_head           ConvHead          conv to k channels (dense prediction)
    dual_head           DualHead          (classification, dense) tuple output

Public API: :func:`arch_strategy`, :func:`build_model`, :func:`example_input`,
:func:`export_onnx`, :func:`validate`, :func:`infer_shapes`,
:func:`output_shapes`, :func:`output_names`, :func:`catalog_specs`.

Notes for pruner tests:

* ``transpose_roundtrip`` with ``op="layernorm"`` normalises *across* channels,
  so removing a zeroed channel changes the result: the channels feeding it are
  not freely prunable.  Pass ``transpose_ops=`` to :func:`arch_strategy` to
  leave it out.
* The legacy exporter folds eval-mode BatchNorm into the preceding Conv, turns
  ``torch.chunk`` into Shape-driven Slices (or, when torch returns fewer pieces
  than asked, SplitToSequence/SequenceAt), and the channel shuffle into
  Reshape/Transpose/Reshape.  A few constructs it exports wrongly or not at all
  (see :func:`exporter_knowledge`) are rejected by :func:`validate` and never
  drawn by the strategy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Sequence, Union

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "BLOCK_KINDS",
    "HEAD_KINDS",
    "TRANSPOSE_OPS",
    "MAX_CHANNELS",
    "MAX_SPATIAL",
    "SpecError",
    "Conv",
    "Residual",
    "Concat",
    "Split",
    "SqueezeExcite",
    "Pool",
    "Upsample",
    "ChannelSlice",
    "TransposeRoundtrip",
    "ChannelShuffle",
    "Affine",
    "InstanceNorm",
    "GapLinearHead",
    "FlattenLinearHead",
    "ConvHead",
    "DualHead",
    "ArchSpec",
    "arch_strategy",
    "build_model",
    "example_input",
    "export_onnx",
    "validate",
    "infer_shapes",
    "output_shapes",
    "output_names",
    "catalog_specs",
    "exporter_knowledge",
    "chunk_exportable",
    "split_piece_sizes",
]

SPEC_VERSION = 1

#: Largest channel count of any tensor produced by a generated spec.
MAX_CHANNELS = 24
#: Largest spatial extent (H or W) of any tensor produced by a generated spec.
MAX_SPATIAL = 32
#: Largest C*H*W for which the strategy picks a flatten + Linear head.
MAX_FLATTEN_FEATURES = 8192

ACTIVATIONS = (
    "none",
    "relu",
    "leaky_relu",
    "relu6",
    "hardtanh",
    "sigmoid",
    "hardswish",
    "silu",
    "gelu",
    "tanh",
    "elu",
)
TRANSPOSE_OPS = ("linear", "relu", "gelu", "sigmoid", "layernorm")
SPLIT_MODES = ("split_sizes", "chunk", "split_int")


class SpecError(ValueError):
    """Raised when a spec is malformed or its shape/channel constraints fail."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise SpecError(msg)


# --------------------------------------------------------------------------- #
# Spec dataclasses
# --------------------------------------------------------------------------- #

_REGISTRY: dict[str, type] = {}


def _register(cls: type) -> type:
    kind = cls.kind  # type: ignore[attr-defined]
    assert kind not in _REGISTRY, kind
    _REGISTRY[kind] = cls
    return cls


@_register
@dataclass(frozen=True)
class Conv:
    """Conv2d(in, out_ch, kernel, stride, padding=kernel//2, groups) [+BN] [+act]."""

    kind: ClassVar[str] = "conv"
    out_ch: int
    kernel: int = 3
    stride: int = 1
    groups: int = 1
    bias: bool = True
    bn: bool = False
    act: str = "relu"

    def __post_init__(self) -> None:
        _check(self.kernel in (1, 3, 5), f"conv kernel {self.kernel} not in 1/3/5")
        _check(self.stride in (1, 2), f"conv stride {self.stride} not in 1/2")
        _check(self.out_ch >= 1 and self.groups >= 1, "conv widths must be >= 1")
        _check(self.act in ACTIVATIONS, f"unknown activation {self.act!r}")


@_register
@dataclass(frozen=True)
class Residual:
    """act(body(x) + shortcut(x)).

    ``shortcut``: ``"identity"`` (needs body to keep C/H/W), ``"conv"`` (1x1
    conv, with bias, stride matching the body) or ``"conv_bn"`` (1x1 conv without
    bias + BatchNorm2d).
    """

    kind: ClassVar[str] = "residual"
    body: tuple
    shortcut: str = "identity"
    act: str = "none"

    def __post_init__(self) -> None:
        _check(len(self.body) >= 1, "residual body must not be empty")
        _check(self.shortcut in ("identity", "conv", "conv_bn"), f"bad shortcut {self.shortcut!r}")
        _check(self.act in ACTIVATIONS, f"unknown activation {self.act!r}")


@_register
@dataclass(frozen=True)
class Concat:
    """torch.cat([branch(x) for branch in branches], dim=1); an empty branch is identity."""

    kind: ClassVar[str] = "concat"
    branches: tuple

    def __post_init__(self) -> None:
        _check(len(self.branches) >= 2, "concat needs at least two branches")


@_register
@dataclass(frozen=True)
class Split:
    """Split channels into pieces, run ``branches[i]`` on piece i, cat ``order``.

    ``mode``/``arg``: ``"chunk"`` -> ``torch.chunk(x, arg[0], 1)``;
    ``"split_int"`` -> ``torch.split(x, arg[0], 1)``; ``"split_sizes"`` ->
    ``torch.split(x, list(arg), 1)``.  ``branches`` has one entry per resulting
    piece (``()`` = identity).  ``order`` lists the piece indices whose branch
    outputs are concatenated (a permutation of a non-empty subset); pieces not
    in ``order`` are dropped and must have an empty branch.
    """

    kind: ClassVar[str] = "split"
    mode: str
    arg: tuple
    branches: tuple
    order: tuple

    def __post_init__(self) -> None:
        _check(self.mode in SPLIT_MODES, f"bad split mode {self.mode!r}")
        _check(len(self.order) >= 1, "split order must not be empty")


@_register
@dataclass(frozen=True)
class SqueezeExcite:
    """x * gate(conv1x1(relu(conv1x1(pool(x))))); pool 'adaptive' or 'mean'."""

    kind: ClassVar[str] = "se"
    hidden: int
    gate: str = "sigmoid"
    pool: str = "adaptive"

    def __post_init__(self) -> None:
        _check(self.hidden >= 1, "se hidden must be >= 1")
        _check(self.gate in ("sigmoid", "hardsigmoid"), f"bad se gate {self.gate!r}")
        _check(self.pool in ("adaptive", "mean"), f"bad se pool {self.pool!r}")


@_register
@dataclass(frozen=True)
class Pool:
    """2x2 stride-2 max or average pooling."""

    kind: ClassVar[str] = "pool"
    op: str = "max"

    def __post_init__(self) -> None:
        _check(self.op in ("max", "avg"), f"bad pool op {self.op!r}")


@_register
@dataclass(frozen=True)
class Upsample:
    """x2 upsampling: nn.Upsample (nearest/bilinear, out_ch must be 0) or
    ConvTranspose2d(kernel 2 or 4, stride 2, padding (kernel-2)//2, groups 1)."""

    kind: ClassVar[str] = "upsample"
    mode: str = "nearest"
    out_ch: int = 0
    kernel: int = 2
    bias: bool = False

    def __post_init__(self) -> None:
        _check(self.mode in ("nearest", "bilinear", "conv_transpose"), f"bad upsample {self.mode!r}")
        if self.mode == "conv_transpose":
            _check(self.out_ch >= 1 and self.kernel in (2, 4), "bad conv_transpose params")
        else:
            _check(self.out_ch == 0 and self.kernel == 2 and not self.bias,
                   "non-conv upsample takes no out_ch/kernel/bias")


@_register
@dataclass(frozen=True)
class ChannelSlice:
    """x[:, start:stop]."""

    kind: ClassVar[str] = "channel_slice"
    start: int
    stop: int

    def __post_init__(self) -> None:
        _check(0 <= self.start < self.stop, "channel slice needs 0 <= start < stop")


@_register
@dataclass(frozen=True)
class TransposeRoundtrip:
    """x.permute(0,2,3,1) -> op -> permute(0,3,1,2).

    ``op == "linear"``: nn.Linear(C, out_ch, bias) on the last dim; other ops
    are elementwise (relu/gelu/sigmoid) or nn.LayerNorm(C) over channels and
    require out_ch == 0 and bias False.
    """

    kind: ClassVar[str] = "transpose_roundtrip"
    op: str = "linear"
    out_ch: int = 0
    bias: bool = False

    def __post_init__(self) -> None:
        _check(self.op in TRANSPOSE_OPS, f"bad transpose op {self.op!r}")
        if self.op == "linear":
            _check(self.out_ch >= 1, "linear needs out_ch >= 1")
        else:
            _check(self.out_ch == 0 and not self.bias, f"{self.op} takes no out_ch/bias")


@_register
@dataclass(frozen=True)
class ChannelShuffle:
    """ShuffleNet channel shuffle; ``dynamic`` takes N/C/H/W from x.size()."""

    kind: ClassVar[str] = "channel_shuffle"
    groups: int
    dynamic: bool = False

    def __post_init__(self) -> None:
        _check(self.groups >= 2, "channel shuffle needs groups >= 2")


@_register
@dataclass(frozen=True)
class Affine:
    """x * p (+ q) with parameters of shape (1, C, 1, 1)."""

    kind: ClassVar[str] = "affine"
    shift: bool = True


@_register
@dataclass(frozen=True)
class InstanceNorm:
    """nn.InstanceNorm2d(C, affine=affine)."""

    kind: ClassVar[str] = "instance_norm"
    affine: bool = True


@_register
@dataclass(frozen=True)
class GapLinearHead:
    """Global average pool ('adaptive' or 'mean') -> flatten -> Linear(s)."""

    kind: ClassVar[str] = "gap_linear_head"
    out_features: int
    hidden: tuple = ()
    act: str = "relu"
    pool: str = "adaptive"

    def __post_init__(self) -> None:
        _check(self.out_features >= 1 and all(h >= 1 for h in self.hidden), "bad head widths")
        _check(self.act in ACTIVATIONS, f"unknown activation {self.act!r}")
        _check(self.pool in ("adaptive", "mean"), f"bad head pool {self.pool!r}")


@_register
@dataclass(frozen=True)
class FlattenLinearHead:
    """Flatten C*H*W ('flatten' = torch.flatten, 'view' = x.reshape(x.size(0), -1)) -> Linear(s)."""

    kind: ClassVar[str] = "flatten_linear_head"
    out_features: int
    hidden: tuple = ()
    act: str = "relu"
    flatten: str = "flatten"

    def __post_init__(self) -> None:
        _check(self.out_features >= 1 and all(h >= 1 for h in self.hidden), "bad head widths")
        _check(self.act in ACTIVATIONS, f"unknown activation {self.act!r}")
        _check(self.flatten in ("flatten", "view"), f"bad flatten style {self.flatten!r}")


@_register
@dataclass(frozen=True)
class ConvHead:
    """Conv2d(C, out_ch, kernel, padding=kernel//2) dense prediction."""

    kind: ClassVar[str] = "conv_head"
    out_ch: int
    kernel: int = 1
    bias: bool = True

    def __post_init__(self) -> None:
        _check(self.out_ch >= 1 and self.kernel in (1, 3), "bad conv head")


@_register
@dataclass(frozen=True)
class DualHead:
    """Two outputs: (classification, dense)."""

    kind: ClassVar[str] = "dual_head"
    cls: GapLinearHead
    dense: ConvHead

    def __post_init__(self) -> None:
        _check(isinstance(self.cls, GapLinearHead) and isinstance(self.dense, ConvHead),
               "dual head needs a GapLinearHead and a ConvHead")


Block = Union[
    Conv, Residual, Concat, Split, SqueezeExcite, Pool, Upsample, ChannelSlice,
    TransposeRoundtrip, ChannelShuffle, Affine, InstanceNorm,
]
Head = Union[GapLinearHead, FlattenLinearHead, ConvHead, DualHead]

BLOCK_KINDS = (
    "conv", "residual", "concat", "split", "se", "pool", "upsample", "channel_slice",
    "transpose_roundtrip", "channel_shuffle", "affine", "instance_norm",
)
HEAD_KINDS = ("gap_linear_head", "flatten_linear_head", "conv_head", "dual_head")


@_register
@dataclass(frozen=True)
class ArchSpec:
    """A whole network: input (N, in_ch, height, width) -> blocks -> head."""

    kind: ClassVar[str] = "arch"
    seed: int
    in_ch: int
    height: int
    width: int
    blocks: tuple
    head: Any

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict:
        d = _to_data(self)
        d["version"] = SPEC_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ArchSpec":
        d = dict(d)
        version = d.pop("version", SPEC_VERSION)
        _check(version == SPEC_VERSION, f"unsupported spec version {version}")
        spec = _from_data(d)
        _check(isinstance(spec, ArchSpec), "not an ArchSpec")
        return spec

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent,
                          separators=None if indent else (",", ":"))

    @classmethod
    def from_json(cls, s: str) -> "ArchSpec":
        return cls.from_dict(json.loads(s))

    # -- convenience ---------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_ch, self.height, self.width)

    def summary(self) -> str:
        """One line per block with the tensor shape after it."""
        lines = [f"input {self.input_shape} seed={self.seed}"]
        for b, shp in zip(self.blocks, infer_shapes(self)[1:]):
            lines.append(f"  {_short(b)} -> {shp}")
        lines.append(f"  {_short(self.head)} -> {output_shapes(self)}")
        return "\n".join(lines)


def _short(obj: Any) -> str:
    if isinstance(obj, (Residual,)):
        return f"residual[{', '.join(_short(b) for b in obj.body)}] sc={obj.shortcut}"
    if isinstance(obj, Concat):
        return "concat{" + " | ".join(",".join(_short(b) for b in br) or "id" for br in obj.branches) + "}"
    if isinstance(obj, Split):
        br = " | ".join(",".join(_short(b) for b in x) or "id" for x in obj.branches)
        return f"split[{obj.mode}{list(obj.arg)} order={list(obj.order)}]{{{br}}}"
    fields = ",".join(f"{f.name}={getattr(obj, f.name)}" for f in dataclasses.fields(obj))
    return f"{obj.kind}({fields})"


def _to_data(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        d = {"kind": obj.kind}
        for f in dataclasses.fields(obj):
            d[f.name] = _to_data(getattr(obj, f.name))
        return d
    if isinstance(obj, (tuple, list)):
        return [_to_data(x) for x in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _from_data(data: Any) -> Any:
    if isinstance(data, dict):
        data = dict(data)
        kind = data.pop("kind", None)
        _check(kind in _REGISTRY, f"unknown kind {kind!r}")
        cls = _REGISTRY[kind]
        names = {f.name for f in dataclasses.fields(cls)}
        _check(set(data) <= names, f"unknown fields for {kind}: {sorted(set(data) - names)}")
        return cls(**{k: _from_data(v) for k, v in data.items()})
    if isinstance(data, list):
        return tuple(_from_data(x) for x in data)
    return data


# --------------------------------------------------------------------------- #
# Shape inference / validation
# --------------------------------------------------------------------------- #

Shape = tuple  # (C, H, W)


def _conv_out(n: int, k: int, s: int) -> int:
    return (n + 2 * (k // 2) - k) // s + 1


def split_piece_sizes(mode: str, arg: Sequence[int], c: int) -> tuple[int, ...]:
    """Channel sizes of the pieces produced by a Split block on ``c`` channels."""
    _check(len(arg) >= 1 and all(isinstance(a, int) and a >= 1 for a in arg), "bad split arg")
    if mode == "chunk":
        _check(len(arg) == 1, "chunk takes one arg")
        size = -(-c // arg[0])  # torch.chunk semantics
    elif mode == "split_int":
        _check(len(arg) == 1, "split_int takes one arg")
        size = arg[0]
    else:
        _check(sum(arg) == c, f"split sizes {list(arg)} do not sum to {c}")
        return tuple(arg)
    sizes = [size] * (c // size)
    if c % size:
        sizes.append(c % size)
    return tuple(sizes)


def _seq_shape(blocks: Iterable[Any], shape: Shape) -> Shape:
    for b in blocks:
        shape = block_out_shape(b, shape)
    return shape


def _residual_stride(inp: Shape, out: Shape) -> int:
    _, h, w = inp
    _, h2, w2 = out
    if (h2, w2) == (h, w):
        return 1
    if (h2, w2) == (_conv_out(h, 1, 2), _conv_out(w, 1, 2)):
        return 2
    raise SpecError(f"residual body changes spatial size {h}x{w} -> {h2}x{w2} (not stride 1/2)")


def block_out_shape(b: Any, shape: Shape) -> Shape:
    """Output (C, H, W) of block ``b`` on input (C, H, W); raises SpecError if invalid."""
    c, h, w = shape
    _check(c >= 1 and h >= 1 and w >= 1, f"empty tensor {shape}")
    if isinstance(b, Conv):
        _check(c % b.groups == 0 and b.out_ch % b.groups == 0,
               f"conv groups {b.groups} must divide in {c} and out {b.out_ch}")
        return (b.out_ch, _conv_out(h, b.kernel, b.stride), _conv_out(w, b.kernel, b.stride))
    if isinstance(b, Residual):
        out = _seq_shape(b.body, shape)
        if b.shortcut == "identity":
            _check(out == shape, f"identity residual changes shape {shape} -> {out}")
        else:
            _residual_stride(shape, out)
        return out
    if isinstance(b, Concat):
        outs = [_seq_shape(br, shape) for br in b.branches]
        _check(len({o[1:] for o in outs}) == 1, f"concat branches disagree spatially: {outs}")
        return (sum(o[0] for o in outs), outs[0][1], outs[0][2])
    if isinstance(b, Split):
        sizes = split_piece_sizes(b.mode, b.arg, c)
        _check(len(b.branches) == len(sizes),
               f"split has {len(sizes)} pieces {sizes} but {len(b.branches)} branches")
        _check(len(set(b.order)) == len(b.order) and all(0 <= i < len(sizes) for i in b.order),
               f"bad split order {b.order}")
        outs = {}
        for i, br in enumerate(b.branches):
            if i not in b.order:
                _check(len(br) == 0, "dropped split pieces must have an empty branch")
                continue
            outs[i] = _seq_shape(br, (sizes[i], h, w))
        _check(len({o[1:] for o in outs.values()}) == 1, f"split branches disagree spatially: {outs}")
        first = outs[b.order[0]]
        return (sum(outs[i][0] for i in b.order), first[1], first[2])
    if isinstance(b, SqueezeExcite):
        return shape
    if isinstance(b, Pool):
        _check(h >= 2 and w >= 2, f"pool on {h}x{w}")
        return (c, h // 2, w // 2)
    if isinstance(b, Upsample):
        return (b.out_ch if b.mode == "conv_transpose" else c, 2 * h, 2 * w)
    if isinstance(b, ChannelSlice):
        _check(b.stop <= c, f"channel slice {b.start}:{b.stop} beyond {c} channels")
        return (b.stop - b.start, h, w)
    if isinstance(b, TransposeRoundtrip):
        return (b.out_ch if b.op == "linear" else c, h, w)
    if isinstance(b, ChannelShuffle):
        _check(c % b.groups == 0, f"shuffle groups {b.groups} must divide {c}")
        return shape
    if isinstance(b, Affine):
        return shape
    if isinstance(b, InstanceNorm):
        _check(h * w > 1, "instance norm needs more than one spatial element")
        return shape
    raise SpecError(f"not a block: {b!r}")


# What the legacy exporter's shape inference knows about a tensor (see
# exporter_knowledge): everything / rank but not the channel dim / nothing.
KNOWN_ALL, KNOWN_RANK, KNOWN_NOTHING = 2, 1, 0


def _seq_known(blocks: Iterable[Any], known: int, shape: Shape) -> int:
    for b in blocks:
        known = exporter_knowledge(b, known, shape)
        shape = block_out_shape(b, shape)
    return known


def chunk_pieces_short(c: int, chunks: int) -> bool:
    """True when ``torch.chunk(c channels, chunks)`` returns fewer than ``chunks``
    pieces (e.g. 4 in 3 -> 2,2).  The tracer then records a dynamic aten::chunk,
    which the legacy exporter turns into a Shape-driven SplitToSequence /
    SequenceAt whose outputs have no static shape at all."""
    return len(split_piece_sizes("chunk", (chunks,), c)) < chunks


def chunk_exportable(c: int, chunks: int) -> bool:
    """Whether the legacy exporter handles ``torch.chunk`` of ``c`` channels.

    For short chunks (see :func:`chunk_pieces_short`) its SplitToSequence sizes
    are ``[ceil(c/chunks)] * (chunks-1) + [rest]``; a negative rest (e.g. 5
    channels in 4 chunks) fails at runtime.
    """
    return c - (-(-c // chunks)) * (chunks - 1) >= 0


def exporter_knowledge(b: Any, known: int, shape: Shape) -> int:
    """What the legacy (TorchScript) ONNX exporter statically knows about the
    output of block ``b`` on input ``shape`` (KNOWN_ALL / KNOWN_RANK /
    KNOWN_NOTHING), given what it knows about the input.  Conservative.
    Raises SpecError for blocks the legacy exporter gets wrong.

    ``torch.chunk`` exports as Shape-driven Slices (channel dim unknown after
    it) or, for short chunks, a SplitToSequence (nothing known, and a Conv does
    not recover it); the channel shuffle exports as Reshapes (dims unknown).
    The exporter cannot export ``InstanceNorm2d(affine=False)`` unless it knows
    the channel count.
    """
    c, h, w = shape
    recovers = KNOWN_ALL if known >= KNOWN_RANK else KNOWN_NOTHING  # conv / linear
    if isinstance(b, Conv):
        return recovers
    if isinstance(b, Upsample):
        return recovers if b.mode == "conv_transpose" else known
    if isinstance(b, TransposeRoundtrip):
        return recovers if b.op == "linear" else known
    if isinstance(b, Residual):
        body = _seq_known(b.body, known, shape)
        return min(body, known if b.shortcut == "identity" else recovers)
    if isinstance(b, Concat):
        return min([_seq_known(br, known, shape) for br in b.branches])
    if isinstance(b, Split):
        if b.mode == "chunk":
            _check(chunk_exportable(c, b.arg[0]),
                   f"legacy ONNX export of torch.chunk({c} channels, {b.arg[0]}) is broken")
            piece = KNOWN_NOTHING if chunk_pieces_short(c, b.arg[0]) else min(known, KNOWN_RANK)
        else:
            piece = known
        sizes = split_piece_sizes(b.mode, b.arg, c)
        return min([_seq_known(b.branches[i], piece, (sizes[i], h, w)) for i in b.order])
    if isinstance(b, ChannelShuffle):
        return min(known, KNOWN_RANK)  # Reshape: the exporter drops the dims
    if isinstance(b, InstanceNorm):
        _check(known == KNOWN_ALL or b.affine,
               "legacy ONNX export of InstanceNorm2d(affine=False) needs a statically "
               "known channel count (not after chunk / channel shuffle)")
        return known
    return known


def infer_shapes(spec: ArchSpec) -> list[Shape]:
    """[(C,H,W) of the input, after block 0, after block 1, ...]."""
    shapes = [spec.input_shape]
    for b in spec.blocks:
        shapes.append(block_out_shape(b, shapes[-1]))
    return shapes


def _head_shapes(head: Any, shape: Shape) -> list[tuple[int, ...]]:
    c, h, w = shape
    if isinstance(head, GapLinearHead):
        return [(head.out_features,)]
    if isinstance(head, FlattenLinearHead):
        return [(head.out_features,)]
    if isinstance(head, ConvHead):
        return [(head.out_ch, h, w)]
    if isinstance(head, DualHead):
        return _head_shapes(head.cls, shape) + _head_shapes(head.dense, shape)
    raise SpecError(f"not a head: {head!r}")


def output_shapes(spec: ArchSpec, batch: int = 1) -> list[tuple[int, ...]]:
    """Shapes of the model outputs (with the batch dimension)."""
    return [(batch, *s) for s in _head_shapes(spec.head, infer_shapes(spec)[-1])]


def output_names(spec: ArchSpec) -> list[str]:
    n = len(_head_shapes(spec.head, (1, 1, 1)))
    return ["output"] + [f"output_{i}" for i in range(1, n)]


def validate(spec: ArchSpec, *, legacy_export: bool = True) -> None:
    """Raise SpecError unless ``spec`` describes a buildable network.

    With ``legacy_export`` also require that the legacy ONNX exporter can
    export it (see :func:`exporter_knowledge`).
    """
    _check(isinstance(spec, ArchSpec), "not an ArchSpec")
    _check(1 <= spec.in_ch and 1 <= spec.height and 1 <= spec.width, "bad input shape")
    _check(isinstance(spec.blocks, tuple), "blocks must be a tuple")
    output_shapes(spec)
    if legacy_export:
        _seq_known(spec.blocks, KNOWN_ALL, spec.input_shape)


# --------------------------------------------------------------------------- #
# torch modules
# --------------------------------------------------------------------------- #


def _make_act(name: str) -> nn.Module | None:
    if name == "none":
        return None
    return {
        "relu": lambda: nn.ReLU(),
        "leaky_relu": lambda: nn.LeakyReLU(0.1),
        "relu6": lambda: nn.ReLU6(),
        "hardtanh": lambda: nn.Hardtanh(-2.0, 2.0),
        "sigmoid": lambda: nn.Sigmoid(),
        "hardswish": lambda: nn.Hardswish(),
        "silu": lambda: nn.SiLU(),
        "gelu": lambda: nn.GELU(),
        "tanh": lambda: nn.Tanh(),
        "elu": lambda: nn.ELU(),
    }[name]()


def _seq_module(mods: list[nn.Module]) -> nn.Module:
    return nn.Sequential(*mods) if mods else nn.Identity()


class ResidualBlock(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module, act: nn.Module | None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.act = act if act is not None else nn.Identity()

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class ConcatBlock(nn.Module):
    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([br(x) for br in self.branches], dim=1)


class SplitBlock(nn.Module):
    def __init__(self, mode: str, arg: tuple, sizes: tuple, branches: list[nn.Module],
                 order: tuple):
        super().__init__()
        self.mode = mode
        self.sizes = tuple(sizes)
        self.arg = tuple(arg)
        self.branches = nn.ModuleList(branches)
        self.order = tuple(order)

    def forward(self, x):
        if self.mode == "chunk":
            pieces = torch.chunk(x, self.arg[0], dim=1)
        elif self.mode == "split_int":
            # Same result as torch.split(x, self.arg[0], dim=1).  The legacy
            # exporter's split(int) symbolic gets uneven splits wrong when it
            # does not know the channel count statically (e.g. after a chunk),
            # emitting [s]*n_outputs, so hand it the explicit sizes instead.
            pieces = torch.split(x, list(self.sizes), dim=1)
        else:
            pieces = torch.split(x, list(self.arg), dim=1)
        outs = [self.branches[i](pieces[i]) for i in self.order]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class SEBlock(nn.Module):
    def __init__(self, c: int, hidden: int, gate: str, pool: str):
        super().__init__()
        self.pool_kind = pool
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "adaptive" else nn.Identity()
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, c, 1)
        self.gate = nn.Sigmoid() if gate == "sigmoid" else nn.Hardsigmoid()

    def forward(self, x):
        s = self.pool(x) if self.pool_kind == "adaptive" else x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.relu(self.fc1(s))))


class ChannelSliceBlock(nn.Module):
    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x):
        return x[:, self.start:self.stop]


class TransposeRoundtripBlock(nn.Module):
    def __init__(self, op: nn.Module):
        super().__init__()
        self.op = op

    def forward(self, x):
        return self.op(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ChannelShuffleBlock(nn.Module):
    def __init__(self, shape: Shape, groups: int, dynamic: bool):
        super().__init__()
        self.c, self.h, self.w = shape
        self.groups = groups
        self.dynamic = dynamic

    def forward(self, x):
        g = self.groups
        # reshape (not view) first: x may be non-contiguous, e.g. after a permute
        if self.dynamic:
            n, c, h, w = x.size()
            x = x.reshape(n, g, c // g, h, w).transpose(1, 2).contiguous()
            return x.view(n, c, h, w)
        x = x.reshape(-1, g, self.c // g, self.h, self.w).transpose(1, 2).contiguous()
        return x.view(-1, self.c, self.h, self.w)


class AffineBlock(nn.Module):
    def __init__(self, c: int, shift: bool):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1, c, 1, 1))
        self.q = nn.Parameter(torch.zeros(1, c, 1, 1)) if shift else None

    def forward(self, x):
        y = x * self.p
        return y + self.q if self.q is not None else y


class GlobalPoolFlatten(nn.Module):
    def __init__(self, pool: str):
        super().__init__()
        self.pool_kind = pool
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "adaptive" else nn.Identity()

    def forward(self, x):
        if self.pool_kind == "adaptive":
            return torch.flatten(self.pool(x), 1)
        return x.mean(dim=(2, 3))


class FlattenBlock(nn.Module):
    def __init__(self, style: str):
        super().__init__()
        self.style = style

    def forward(self, x):
        if self.style == "view":
            # reshape: x may be non-contiguous (e.g. after a permute round trip)
            return x.reshape(x.size(0), -1)
        return torch.flatten(x, 1)


class DualHeadModule(nn.Module):
    def __init__(self, cls: nn.Module, dense: nn.Module):
        super().__init__()
        self.cls = cls
        self.dense = dense

    def forward(self, x):
        return self.cls(x), self.dense(x)


class RandomArchNet(nn.Module):
    """features (one module per spec block) followed by the head."""

    def __init__(self, features: list[nn.Module], head: nn.Module):
        super().__init__()
        self.features = nn.Sequential(*features)
        self.head = head

    def forward(self, x):
        return self.head(self.features(x))


def _build_conv(b: Conv, c: int) -> nn.Module:
    mods: list[nn.Module] = [
        nn.Conv2d(c, b.out_ch, b.kernel, stride=b.stride, padding=b.kernel // 2,
                  groups=b.groups, bias=b.bias)
    ]
    if b.bn:
        mods.append(nn.BatchNorm2d(b.out_ch))
    act = _make_act(b.act)
    if act is not None:
        mods.append(act)
    return nn.Sequential(*mods)


def _build_seq(blocks: Sequence[Any], shape: Shape) -> tuple[nn.Module, Shape]:
    mods = []
    for b in blocks:
        m, shape = _build_block(b, shape)
        mods.append(m)
    return _seq_module(mods), shape


def _build_block(b: Any, shape: Shape) -> tuple[nn.Module, Shape]:
    out = block_out_shape(b, shape)
    c, h, w = shape
    if isinstance(b, Conv):
        return _build_conv(b, c), out
    if isinstance(b, Residual):
        body, _ = _build_seq(b.body, shape)
        if b.shortcut == "identity":
            sc: nn.Module = nn.Identity()
        else:
            stride = _residual_stride(shape, out)
            conv = nn.Conv2d(c, out[0], 1, stride=stride, bias=b.shortcut == "conv")
            sc = conv if b.shortcut == "conv" else nn.Sequential(conv, nn.BatchNorm2d(out[0]))
        return ResidualBlock(body, sc, _make_act(b.act)), out
    if isinstance(b, Concat):
        return ConcatBlock([_build_seq(br, shape)[0] for br in b.branches]), out
    if isinstance(b, Split):
        sizes = split_piece_sizes(b.mode, b.arg, c)
        branches = [_build_seq(br, (sizes[i], h, w))[0] for i, br in enumerate(b.branches)]
        return SplitBlock(b.mode, b.arg, sizes, branches, b.order), out
    if isinstance(b, SqueezeExcite):
        return SEBlock(c, b.hidden, b.gate, b.pool), out
    if isinstance(b, Pool):
        return (nn.MaxPool2d(2, 2) if b.op == "max" else nn.AvgPool2d(2, 2)), out
    if isinstance(b, Upsample):
        if b.mode == "conv_transpose":
            return nn.ConvTranspose2d(c, b.out_ch, b.kernel, stride=2,
                                      padding=(b.kernel - 2) // 2, bias=b.bias), out
        if b.mode == "bilinear":
            return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), out
        return nn.Upsample(scale_factor=2, mode="nearest"), out
    if isinstance(b, ChannelSlice):
        return ChannelSliceBlock(b.start, b.stop), out
    if isinstance(b, TransposeRoundtrip):
        op: nn.Module
        if b.op == "linear":
            op = nn.Linear(c, b.out_ch, bias=b.bias)
        elif b.op == "layernorm":
            op = nn.LayerNorm(c)
        else:
            op = _make_act(b.op)  # type: ignore[assignment]
        return TransposeRoundtripBlock(op), out
    if isinstance(b, ChannelShuffle):
        return ChannelShuffleBlock(shape, b.groups, b.dynamic), out
    if isinstance(b, Affine):
        return AffineBlock(c, b.shift), out
    if isinstance(b, InstanceNorm):
        return nn.InstanceNorm2d(c, affine=b.affine), out
    raise SpecError(f"not a block: {b!r}")


def _build_mlp(in_features: int, hidden: tuple, out_features: int, act: str) -> list[nn.Module]:
    mods: list[nn.Module] = []
    for width in hidden:
        mods.append(nn.Linear(in_features, width))
        a = _make_act(act)
        if a is not None:
            mods.append(a)
        in_features = width
    mods.append(nn.Linear(in_features, out_features))
    return mods


def _build_head(head: Any, shape: Shape) -> nn.Module:
    c, h, w = shape
    if isinstance(head, GapLinearHead):
        return nn.Sequential(GlobalPoolFlatten(head.pool),
                             *_build_mlp(c, head.hidden, head.out_features, head.act))
    if isinstance(head, FlattenLinearHead):
        return nn.Sequential(FlattenBlock(head.flatten),
                             *_build_mlp(c * h * w, head.hidden, head.out_features, head.act))
    if isinstance(head, ConvHead):
        return nn.Conv2d(c, head.out_ch, head.kernel, padding=head.kernel // 2, bias=head.bias)
    if isinstance(head, DualHead):
        return DualHeadModule(_build_head(head.cls, shape), _build_head(head.dense, shape))
    raise SpecError(f"not a head: {head!r}")


def _init_parameters(model: nn.Module, gen: torch.Generator) -> None:
    """Deterministic, seed-driven init of every parameter and BN buffer."""

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.empty(t.shape).uniform_(lo, hi, generator=gen))

    def normal(t: torch.Tensor, std: float) -> None:
        t.copy_(torch.empty(t.shape).normal_(0.0, std, generator=gen))

    def scale(t: torch.Tensor) -> None:  # U(0.5, 1.5)
        uniform(t, 0.5, 1.5)

    def weight(t: torch.Tensor, fan_in: float) -> None:
        # He-uniform-ish: keeps activations O(1) through relu-family stacks.
        bound = math.sqrt(6.0 / max(fan_in, 1.0))
        uniform(t, -bound, bound)

    done: set[int] = set()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                weight(m.weight, m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
            elif isinstance(m, nn.ConvTranspose2d):
                k = m.kernel_size[0] // m.stride[0]
                weight(m.weight, m.in_channels // m.groups * k * k)
            elif isinstance(m, nn.Linear):
                weight(m.weight, m.in_features)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.LayerNorm)):
                if m.weight is not None:
                    scale(m.weight)
                    normal(m.bias, 0.1)
                if isinstance(m, nn.BatchNorm2d):
                    normal(m.running_mean, 0.1)
                    scale(m.running_var)
            elif isinstance(m, AffineBlock):
                sign = torch.where(torch.rand(m.p.shape, generator=gen) < 0.5, -1.0, 1.0)
                scale(m.p)
                m.p.mul_(sign)
                if m.q is not None:
                    normal(m.q, 0.1)
            else:
                continue
            bias = getattr(m, "bias", None)
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and bias is not None:
                normal(bias, 0.1)
            done.update(id(p) for p in m.parameters(recurse=False))
    missing = [n for n, p in model.named_parameters() if id(p) not in done]
    assert not missing, f"uninitialised parameters: {missing}"


def build_model(spec: ArchSpec) -> RandomArchNet:
    """Build the torch module for ``spec`` (eval mode, deterministic in ``spec.seed``).

    The caller's global RNG state is left untouched.
    """
    validate(spec, legacy_export=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        features = []
        shape: Shape = spec.input_shape
        for b in spec.blocks:
            m, shape = _build_block(b, shape)
            features.append(m)
        model = RandomArchNet(features, _build_head(spec.head, shape))
    _init_parameters(model, torch.Generator().manual_seed(spec.seed))
    return model.eval()


def example_input(spec: ArchSpec, batch: int = 1) -> torch.Tensor:
    """Deterministic N(0,1) input of shape (batch, in_ch, height, width)."""
    gen = torch.Generator().manual_seed(spec.seed + 1_000_003)
    return torch.randn(batch, *spec.input_shape, generator=gen)


def export_onnx(
    spec: ArchSpec,
    path: str | pathlib.Path,
    *,
    dynamo: bool = False,
    opset: int = 17,
    model: nn.Module | None = None,
) -> pathlib.Path:
    """Export ``build_model(spec)`` (or ``model``) to ``path``.

    Input is named ``"input"``, outputs ``"output"``, ``"output_1"``, ...; the
    batch axis is dynamic.  ``dynamo=False`` (default) uses the legacy
    TorchScript exporter (which folds eval-mode BatchNorm into a preceding
    Conv); ``dynamo=True`` uses torch.export.  The dynamo exporter works in
    opset 18 and down-converts for ``opset=17``, which breaks some graphs (e.g.
    chunk -> Split with ``num_outputs``); use ``opset=18`` with ``dynamo=True``.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = build_model(spec)
    names = output_names(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not dynamo:
            torch.onnx.export(
                model,
                (example_input(spec, 1),),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=names,
                dynamic_axes={n: {0: "batch"} for n in ["input", *names]},
                do_constant_folding=True,
            )
        else:
            # torch.export specialises size-1 dims, so trace with batch 2.
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            torch.onnx.export(
                model,
                (example_input(spec, 2),),
                str(path),
                dynamo=True,
                opset_version=opset,
                input_names=["input"],
                output_names=names,
                dynamic_shapes=({0: batch},),
                external_data=False,
                verbose=False,
            )
    return path


# --------------------------------------------------------------------------- #
# Hypothesis strategies
# --------------------------------------------------------------------------- #

MAX_DEPTH = 2  # composite blocks nest at most this deep


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _feasible(kind: str, c: int, h: int, w: int, depth: int, out: int | None,
              spatial: bool, transpose_ops: tuple) -> bool:
    """Can a block of ``kind`` on (c,h,w) produce ``out`` channels (None = any)?"""
    keeps = out is None or out == c
    if kind == "conv":
        return True
    if kind == "transpose_roundtrip":
        ops = [o for o in transpose_ops if c >= 2 or o != "layernorm"]
        return "linear" in ops or (keeps and bool(ops))
    if kind == "residual":
        return depth < MAX_DEPTH
    if kind == "concat":
        return depth < MAX_DEPTH and (out is None or out >= 2)
    if kind == "split":
        return depth < MAX_DEPTH and c >= 2
    if kind in ("se", "affine"):
        return keeps
    if kind == "instance_norm":
        return keeps and h * w > 1
    if kind == "pool":
        return spatial and keeps and min(h, w) >= 4
    if kind == "upsample":
        return spatial and 2 * max(h, w) <= MAX_SPATIAL
    if kind == "channel_slice":
        return c >= 2 and (out is None or out < c)
    if kind == "channel_shuffle":
        return keeps and any(2 <= g < c for g in _divisors(c))
    raise ValueError(kind)


def _lazy_st():
    from hypothesis import strategies as st

    return st


def _draw_partition(draw, total: int, k: int) -> list[int]:
    """Random composition of ``total`` into ``k`` positive parts."""
    st = _lazy_st()
    if k == 1:
        return [total]
    # a prefix of a permutation: never needs rejection, even when k - 1 == total - 1
    cuts = sorted(draw(st.permutations(range(1, total)))[: k - 1])
    return [b - a for a, b in zip([0, *cuts], [*cuts, total])]


class _Ctx:
    def __init__(self, kinds: tuple, transpose_ops: tuple):
        self.kinds = kinds
        self.transpose_ops = transpose_ops


def _draw_conv(draw, c, h, w, out, stride_ok) -> Conv:
    st = _lazy_st()
    lo, hi = (1, MAX_CHANNELS) if out is None else (out, out)
    kernel = draw(st.sampled_from((3, 1, 5)))
    stride = draw(st.sampled_from((1, 2))) if stride_ok and min(h, w) >= 4 else 1
    grouped = [g for g in _divisors(c)
               if 2 <= g < c and any(o % g == 0 for o in range(lo, hi + 1))]
    mults = [k for k in range(2, MAX_CHANNELS + 1) if lo <= k * c <= hi]
    modes = ["dense"]
    if grouped:
        modes.append("grouped")
    if c >= 2 and lo <= c <= hi:
        modes.append("depthwise")
    if c >= 2 and mults:
        modes.append("depthwise_mult")
    mode = draw(st.sampled_from(modes))
    if mode == "dense":
        groups, out_ch = 1, draw(st.integers(lo, hi))
    elif mode == "grouped":
        groups = draw(st.sampled_from(grouped))
        out_ch = draw(st.sampled_from([o for o in range(lo, hi + 1) if o % groups == 0]))
    elif mode == "depthwise":
        groups, out_ch = c, c
    else:
        groups, out_ch = c, c * draw(st.sampled_from(mults))
    return Conv(
        out_ch=out_ch, kernel=kernel, stride=stride, groups=groups,
        bias=draw(st.booleans()), bn=draw(st.booleans()),
        act=draw(st.sampled_from(ACTIVATIONS)),
    )


def _split_piece_knowledge(mode: str, arg: tuple, c: int, known: int) -> int:
    if mode != "chunk":
        return known
    return KNOWN_NOTHING if chunk_pieces_short(c, arg[0]) else min(known, KNOWN_RANK)


def _draw_seq(draw, shape: Shape, known: int, depth: int, n: int, out: int | None,
              first_stride_ok: bool, ctx: _Ctx) -> tuple:
    blocks = []
    for i in range(n):
        b = _draw_block(draw, shape, known, depth, out if i == n - 1 else None,
                        spatial=False, stride_ok=first_stride_ok and i == 0, ctx=ctx)
        blocks.append(b)
        known = exporter_knowledge(b, known, shape)
        shape = block_out_shape(b, shape)
    return tuple(blocks)


def _draw_block(draw, shape: Shape, known: int, depth: int, out: int | None, *,
                spatial: bool, stride_ok: bool, ctx: _Ctx) -> Any:
    st = _lazy_st()
    c, h, w = shape
    kinds = [k for k in ctx.kinds
             if _feasible(k, c, h, w, depth, out, spatial, ctx.transpose_ops)]
    if not kinds:
        kinds = ["conv"]
    if "conv" in kinds:  # conv is the bread and butter: weight it up, first for shrinking
        kinds = ["conv", "conv", *kinds]
    kind = draw(st.sampled_from(kinds))
    anyw = st.integers(1, MAX_CHANNELS) if out is None else st.just(out)

    if kind == "conv":
        return _draw_conv(draw, c, h, w, out, stride_ok)

    if kind == "residual":
        shortcut = draw(st.sampled_from(("identity", "conv", "conv_bn")))
        if shortcut == "identity" and out not in (None, c):
            shortcut = "conv"
        n = draw(st.integers(1, 3))
        body_out = c if shortcut == "identity" else out
        body = _draw_seq(draw, shape, known, depth + 1, n, body_out,
                         first_stride_ok=stride_ok and shortcut != "identity", ctx=ctx)
        return Residual(body=body, shortcut=shortcut, act=draw(st.sampled_from(ACTIVATIONS)))

    if kind == "concat":
        hi = MAX_CHANNELS if out is None else out
        n = draw(st.integers(2, min(3, hi)))
        ident_ok = c + (n - 1) <= hi and (out is None or out - c >= n - 1)
        use_id = ident_ok and draw(st.booleans())
        n_proc = n - int(use_id)
        s_id = c if use_id else 0
        total = draw(st.integers(s_id + n_proc, MAX_CHANNELS)) if out is None else out
        widths = _draw_partition(draw, total - s_id, n_proc)
        branches = [
            _draw_seq(draw, shape, known, depth + 1, draw(st.integers(1, 2)), wd, False, ctx)
            for wd in widths
        ]
        if use_id:
            branches.insert(draw(st.integers(0, n - 1)), ())
        return Concat(branches=tuple(branches))

    if kind == "split":
        mode = draw(st.sampled_from(SPLIT_MODES))
        if mode == "chunk":
            arg: tuple = (draw(st.sampled_from(
                [n for n in range(2, min(4, c) + 1) if chunk_exportable(c, n)])),)
        elif mode == "split_int":
            arg = (draw(st.integers(-(-c // 4), c - 1)),)
        else:
            arg = tuple(_draw_partition(draw, c, draw(st.integers(2, min(4, c)))))
        sizes = split_piece_sizes(mode, arg, c)
        hi = MAX_CHANNELS if out is None else out
        k_keep = draw(st.integers(1, min(len(sizes), hi)))
        order = tuple(draw(st.permutations(range(len(sizes))))[:k_keep])
        ident = {i for i in order if draw(st.booleans())}
        s_id = sum(sizes[i] for i in ident)
        n_proc = k_keep - len(ident)
        if n_proc == 0:
            ok = s_id <= hi and (out is None or s_id == out)
        else:
            ok = s_id + n_proc <= hi
        if not ok:
            ident, s_id, n_proc = set(), 0, k_keep
        branches: list = [()] * len(sizes)
        if n_proc:
            total = draw(st.integers(s_id + n_proc, hi)) if out is None else out
            widths = iter(_draw_partition(draw, total - s_id, n_proc))
            for i in order:
                if i not in ident:
                    branches[i] = _draw_seq(draw, (sizes[i], h, w),
                                            _split_piece_knowledge(mode, arg, c, known),
                                            depth + 1,
                                            draw(st.integers(1, 2)), next(widths), False, ctx)
        return Split(mode=mode, arg=arg, branches=tuple(branches), order=order)

    if kind == "se":
        return SqueezeExcite(
            hidden=draw(st.integers(1, max(2, min(MAX_CHANNELS, c)))),
            gate=draw(st.sampled_from(("sigmoid", "hardsigmoid"))),
            pool=draw(st.sampled_from(("adaptive", "mean"))),
        )

    if kind == "pool":
        return Pool(op=draw(st.sampled_from(("max", "avg"))))

    if kind == "upsample":
        modes = ("nearest", "bilinear", "conv_transpose") if out in (None, c) else ("conv_transpose",)
        mode = draw(st.sampled_from(modes))
        if mode != "conv_transpose":
            return Upsample(mode=mode)
        return Upsample(mode=mode, out_ch=draw(anyw), kernel=draw(st.sampled_from((2, 4))),
                        bias=draw(st.booleans()))

    if kind == "channel_slice":
        length = draw(st.integers(1, c - 1)) if out is None else out
        start = draw(st.integers(0, c - length))
        return ChannelSlice(start=start, stop=start + length)

    if kind == "transpose_roundtrip":
        ops = ctx.transpose_ops if out in (None, c) else ("linear",)
        if c == 1:  # LayerNorm over one channel outputs a constant (its bias)
            ops = tuple(o for o in ops if o != "layernorm")
        op = draw(st.sampled_from(ops))
        if op == "linear":
            return TransposeRoundtrip(op=op, out_ch=draw(anyw), bias=draw(st.booleans()))
        return TransposeRoundtrip(op=op)

    if kind == "channel_shuffle":
        return ChannelShuffle(
            groups=draw(st.sampled_from([g for g in _divisors(c) if 2 <= g < c])),
            dynamic=draw(st.booleans()),
        )

    if kind == "affine":
        return Affine(shift=draw(st.booleans()))

    if kind == "instance_norm":
        # affine=False cannot be exported when the exporter lost the channel count
        return InstanceNorm(affine=draw(st.booleans()) if known == KNOWN_ALL else True)

    raise AssertionError(kind)


def _draw_head(draw, shape: Shape, head_kinds: tuple) -> Any:
    st = _lazy_st()
    c, h, w = shape
    kinds = [k for k in head_kinds
             if k != "flatten_linear_head" or c * h * w <= MAX_FLATTEN_FEATURES]
    kind = draw(st.sampled_from(kinds or ["gap_linear_head"]))
    hidden = st.lists(st.integers(1, MAX_CHANNELS), max_size=2).map(tuple)

    def gap() -> GapLinearHead:
        return GapLinearHead(out_features=draw(st.integers(1, 10)), hidden=draw(hidden),
                             act=draw(st.sampled_from(ACTIVATIONS)),
                             pool=draw(st.sampled_from(("adaptive", "mean"))))

    def dense() -> ConvHead:
        return ConvHead(out_ch=draw(st.integers(1, 8)), kernel=draw(st.sampled_from((1, 3))),
                        bias=draw(st.booleans()))

    if kind == "gap_linear_head":
        return gap()
    if kind == "flatten_linear_head":
        return FlattenLinearHead(out_features=draw(st.integers(1, 10)), hidden=draw(hidden),
                                 act=draw(st.sampled_from(ACTIVATIONS)),
                                 flatten=draw(st.sampled_from(("flatten", "view"))))
    if kind == "conv_head":
        return dense()
    return DualHead(cls=gap(), dense=dense())


def arch_strategy(
    max_blocks: int = 6,
    *,
    min_blocks: int = 1,
    block_kinds: Iterable[str] = BLOCK_KINDS,
    head_kinds: Iterable[str] = HEAD_KINDS,
    transpose_ops: Iterable[str] = TRANSPOSE_OPS,
):
    """Hypothesis strategy of valid :class:`ArchSpec` s.

    ``block_kinds`` / ``head_kinds`` / ``transpose_ops`` restrict what is drawn
    (e.g. drop ``"layernorm"``, which normalises across channels).  A plain conv
    is always available as a fallback block.  Every drawn spec passes
    :func:`validate`, has at most :data:`MAX_CHANNELS` channels and
    :data:`MAX_SPATIAL` spatial extent anywhere.
    """
    st = _lazy_st()
    block_kinds = tuple(block_kinds)
    head_kinds = tuple(head_kinds)
    transpose_ops = tuple(transpose_ops)
    for k in block_kinds:
        _check(k in BLOCK_KINDS, f"unknown block kind {k!r}")
    for k in head_kinds:
        _check(k in HEAD_KINDS, f"unknown head kind {k!r}")
    for k in transpose_ops:
        _check(k in TRANSPOSE_OPS, f"unknown transpose op {k!r}")
    _check(0 <= min_blocks <= max_blocks, "need 0 <= min_blocks <= max_blocks")
    ctx = _Ctx(block_kinds, transpose_ops)

    @st.composite
    def _arch(draw) -> ArchSpec:
        seed = draw(st.integers(0, 2**31 - 1))
        in_ch = draw(st.integers(1, 4))
        height = draw(st.integers(8, 24))
        width = height if draw(st.booleans()) else draw(st.integers(8, 24))
        shape: Shape = (in_ch, height, width)
        known = KNOWN_ALL
        blocks = []
        for _ in range(draw(st.integers(min_blocks, max_blocks))):
            b = _draw_block(draw, shape, known, 0, None, spatial=True, stride_ok=True, ctx=ctx)
            blocks.append(b)
            known = exporter_knowledge(b, known, shape)
            shape = block_out_shape(b, shape)
        head = _draw_head(draw, shape, head_kinds)
        spec = ArchSpec(seed=seed, in_ch=in_ch, height=height, width=width,
                        blocks=tuple(blocks), head=head)
        validate(spec)
        return spec

    return _arch()


# --------------------------------------------------------------------------- #
# Hand-written catalogue: one small spec per pattern (every kind, every mode)
# --------------------------------------------------------------------------- #


def catalog_specs() -> list[ArchSpec]:
    """Small hand-written specs that together cover every block/head kind and mode."""
    relu = "relu"
    specs = [
        # plain / grouped / depthwise / depthwise-multiplier convs, GAP head
        ArchSpec(1, 3, 12, 12, (
            Conv(8, 3, 1, 1, True, True, relu),
            Conv(12, 3, 2, 4, False, True, "leaky_relu"),
            Conv(12, 5, 1, 12, True, False, "relu6"),
            Conv(24, 3, 1, 12, True, True, "hardswish"),
        ), GapLinearHead(5, (7,), "silu", "adaptive")),
        # residual: identity and projection shortcuts, stride-2 body
        ArchSpec(2, 3, 16, 13, (
            Conv(6),
            Residual((Conv(4, act="gelu"), Conv(6, act="none", bn=True)), "identity", relu),
            Residual((Conv(10, 3, 2, act="elu"), Conv(10, 1, act="none")), "conv_bn", "tanh"),
            Residual((Conv(10, act="sigmoid"),), "conv", "none"),
        ), FlattenLinearHead(3, (), relu, "flatten")),
        # concat with identity branch, nested residual
        ArchSpec(3, 2, 10, 10, (
            Conv(4),
            Concat(((), (Conv(3),), (Conv(5, 1), Residual((Conv(5, groups=5),), "identity")))),
            Conv(6, 1),
        ), ConvHead(2, 1, True)),
        # split: chunk (uneven), split_int, split_sizes with dropped piece & permuted cat
        ArchSpec(4, 4, 9, 11, (
            Conv(7),
            Split("chunk", (3,), ((Conv(4),), (), ()), (2, 0, 1)),
            Split("split_int", (3,), ((), (Conv(2, act="none"),), (SqueezeExcite(1),)), (0, 1, 2)),
            Split("split_sizes", (2, 2, 3), ((), (Conv(5),), ()), (1, 2)),
        ), DualHead(GapLinearHead(4, (), relu, "mean"), ConvHead(3, 3, False))),
        # SE, pool, upsample, slicing, transpose round trips, shuffle, affine, instance norm
        ArchSpec(5, 3, 16, 16, (
            Conv(8),
            SqueezeExcite(2, "hardsigmoid", "mean"),
            Pool("max"),
            ChannelSlice(1, 7),
            TransposeRoundtrip("linear", 9, True),
            TransposeRoundtrip("layernorm"),
            TransposeRoundtrip("gelu"),
            ChannelShuffle(3, False),
            ChannelShuffle(3, True),
            Affine(True),
            Affine(False),
            InstanceNorm(True),
            Upsample("conv_transpose", 5, 4, True),
            Pool("avg"),
            Upsample("bilinear"),
            InstanceNorm(False),
            Upsample("nearest"),
            Conv(4, 1),
        ), FlattenLinearHead(2, (6,), "tanh", "view")),
    ]
    for s in specs:
        validate(s)
    return specs
