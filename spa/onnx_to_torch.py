"""ONNX -> trainable PyTorch module (fine-tuning pruned models).

``onnx_to_torch(model)`` returns an :class:`OnnxModule` that executes the ONNX graph node by node with torch
ops.  Float initializers become ``nn.Parameter`` s (trainable); integer / bool initializers, the values of
``Constant`` nodes and BatchNormalization's running mean and variance become buffers.  In ``train()`` mode a
BatchNormalization normalises with the batch's statistics and updates those buffers (``bn_momentum``), as
``torch.nn.BatchNorm`` does, so fine-tuning on new data re-estimates them; in ``eval()`` mode it uses them.  Shape computations (Shape -> Gather -> Concat -> Reshape ...) are evaluated
with torch ops on every forward, so a dynamic batch keeps working.

Ops live in the declarative registry ``OPS: dict[op_type, fn(node, inputs, attrs) -> list[Tensor]]``;
``inputs`` holds one tensor per node input (``None`` for an omitted optional input) and ``attrs`` the node's
attributes as Python values (tensor attributes as torch tensors) plus ``"_opset"`` (the default-domain
opset of the model).  Extending the converter is one decorated function::

    @op("Celu")
    def _celu(node, x, a):
        return [F.celu(x[0], a.get("alpha", 1.0))]

An op missing from the registry raises :class:`UnsupportedOp` (a one-line :class:`spa.errors.SpaError`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from .errors import BadModel

__all__ = ["OPS", "SUPPORTED", "OnnxModule", "UnsupportedOp", "batchnorm_train", "check_roundtrip", "onnx_to_torch"]


class UnsupportedOp(BadModel):
    """The graph uses an op (or an op variant) the converter does not implement."""


Tensor = torch.Tensor
OpFn = Callable[[onnx.NodeProto, "list[Tensor | None]", dict], "list[Tensor]"]
OPS: dict[str, OpFn] = {}


def op(*names: str):
    def deco(fn: OpFn) -> OpFn:
        for n in names:
            OPS[n] = fn
        return fn

    return deco


def _unsupported(node: onnx.NodeProto, what: str) -> UnsupportedOp:
    return UnsupportedOp(f"onnx_to_torch: unsupported {what} in node {node.name or node.output[0]!r} ({node.op_type})")


_DT = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}


def _ints(t: Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _to_torch(arr: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(arr, copy=True))


def _attrs(node: onnx.NodeProto, opset: int) -> dict:
    out: dict = {"_opset": opset}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.TENSOR:
            v = _to_torch(numpy_helper.to_array(v))
        elif isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[a.name] = v
    return out


def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


# ----------------------------------------------------------------------------------------- constants
@op("Constant")
def _constant(node, x, a):
    if "value" in a:
        return [a["value"]]
    if "value_float" in a:
        return [torch.tensor(a["value_float"], dtype=torch.float32)]
    if "value_floats" in a:
        return [torch.tensor(a["value_floats"], dtype=torch.float32)]
    if "value_int" in a:
        return [torch.tensor(a["value_int"], dtype=torch.int64)]
    if "value_ints" in a:
        return [torch.tensor(a["value_ints"], dtype=torch.int64)]
    raise _unsupported(node, "Constant attribute")


@op("ConstantOfShape")
def _constant_of_shape(node, x, a):
    v = a.get("value", torch.zeros(1, dtype=torch.float32)).reshape(-1)
    return [torch.full(_ints(x[0]), v[0].item(), dtype=v.dtype, device=x[0].device)]


@op("Range")
def _range(node, x, a):
    s, l, d = (t.reshape(()) for t in x)
    return [torch.arange(s.item(), l.item(), d.item(), dtype=s.dtype, device=s.device)]


@op("Shape")
def _shape(node, x, a):
    s = torch._shape_as_tensor(x[0]).to(torch.int64)
    r = x[0].dim()
    start, end = a.get("start", 0), a.get("end", r)
    start, end = max(0, min(r, _axis(start, r))), max(0, min(r, _axis(end, r)))
    return [s[start:end] if (start, end) != (0, r) else s]


@op("Size")
def _size(node, x, a):
    return [torch.tensor(x[0].numel(), dtype=torch.int64)]


# ----------------------------------------------------------------------------------------- conv / linear
def _conv_pads(node, a, x: Tensor, kernel: list[int], strides, dilations) -> list[int]:
    """ONNX pads [b1, b2, ..., e1, e2, ...] with auto_pad resolved."""
    n = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        return list(a.get("pads", [0] * (2 * n)))
    if auto == "VALID":
        return [0] * (2 * n)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(n):
            size = x.shape[2 + i]
            out = -(-size // strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
            small = total // 2
            b = small if auto == "SAME_UPPER" else total - small
            begin.append(b)
            end.append(total - b)
        return begin + end
    raise _unsupported(node, f"auto_pad={auto}")


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX [b1..bn, e1..en] over the last n dims -> F.pad order (last dim first)."""
    n = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(n)):
        out += [pads[i], pads[n + i]]
    return out


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@op("Conv")
def _conv(node, x, a):
    inp, w = x[0], x[1]
    b = x[2] if len(x) > 2 else None
    n = w.dim() - 2
    if n not in _CONV:
        raise _unsupported(node, f"{n}-d Conv")
    kernel = list(w.shape[2:])
    strides = list(a.get("strides", [1] * n))
    dil = list(a.get("dilations", [1] * n))
    pads = _conv_pads(node, a, inp, kernel, strides, dil)
    if pads[:n] == pads[n:]:
        padding = pads[:n]
    else:
        inp = F.pad(inp, _torch_pad(pads))
        padding = [0] * n
    return [_CONV[n](inp, w, b, strides, padding, dil, a.get("group", 1))]


@op("ConvTranspose")
def _conv_transpose(node, x, a):
    inp, w = x[0], x[1]
    b = x[2] if len(x) > 2 else None
    n = w.dim() - 2
    if n not in _CONVT:
        raise _unsupported(node, f"{n}-d ConvTranspose")
    group = a.get("group", 1)
    kernel = list(w.shape[2:])
    strides = list(a.get("strides", [1] * n))
    dil = list(a.get("dilations", [1] * n))
    opad = list(a.get("output_padding", [0] * n))
    auto = a.get("auto_pad", "NOTSET")
    if "output_shape" in a or auto in ("SAME_UPPER", "SAME_LOWER"):
        want = list(a["output_shape"])[-n:] if "output_shape" in a else [inp.shape[2 + i] * strides[i] for i in range(n)]
        begin, end = [], []
        for i in range(n):
            total = strides[i] * (inp.shape[2 + i] - 1) + opad[i] + (kernel[i] - 1) * dil[i] + 1 - want[i]
            small = total // 2
            bb = total - small if auto == "SAME_UPPER" else small
            begin.append(bb)
            end.append(total - bb)
        pads = begin + end
    elif auto == "VALID":
        pads = [0] * (2 * n)
    else:
        pads = list(a.get("pads", [0] * (2 * n)))
    if pads[:n] == pads[n:] and all(p >= 0 for p in pads):
        return [_CONVT[n](inp, w, b, strides, pads[:n], opad, group, dil)]
    y = _CONVT[n](inp, w, b, strides, 0, opad, group, dil)
    return [F.pad(y, [-p for p in _torch_pad(pads)])]


@op("Gemm")
def _gemm(node, x, a):
    A, B = x[0], x[1]
    C = x[2] if len(x) > 2 else None
    if a.get("transA", 0):
        A = A.t()
    if a.get("transB", 0):
        B = B.t()
    y = A @ B
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    if alpha != 1.0:
        y = y * alpha
    if C is not None and beta != 0.0:
        y = y + (C if beta == 1.0 else C * beta)
    return [y]


@op("MatMul")
def _matmul(node, x, a):
    return [torch.matmul(x[0], x[1])]


@op("Einsum")
def _einsum(node, x, a):
    return [torch.einsum(a["equation"].replace(" ", ""), *x)]


# ----------------------------------------------------------------------------------------- normalisation
def _chan(t: Tensor, rank: int) -> Tensor:
    return t.reshape([1, -1] + [1] * (rank - 2))


@op("BatchNormalization")
def _batchnorm(node, x, a):
    inp, scale, bias, mean, var = x[:5]
    eps = a.get("epsilon", 1e-5)
    r = inp.dim()
    y = (inp - _chan(mean, r)) / torch.sqrt(_chan(var, r) + eps) * _chan(scale, r) + _chan(bias, r)
    return [y] + [None] * (len(node.output) - 1)


def batchnorm_train(node: onnx.NodeProto, x: list[Tensor | None], a: dict, momentum: float) -> list[Tensor | None]:
    """BatchNormalization in training mode: normalise with the batch's statistics and move the running mean and
    variance (buffers, updated in place) towards them by ``momentum`` (``torch.nn.BatchNorm``'s convention)."""
    inp, scale, bias, mean, var = x[:5]
    y = F.batch_norm(inp, mean, var, scale, bias, training=True, momentum=momentum, eps=a.get("epsilon", 1e-5))
    return [y] + [None] * (len(node.output) - 1)


@op("InstanceNormalization")
def _instancenorm(node, x, a):
    return [F.instance_norm(x[0], weight=x[1], bias=x[2], eps=a.get("epsilon", 1e-5))]


@op("LayerNormalization")
def _layernorm(node, x, a):
    inp, scale = x[0], x[1]
    bias = x[2] if len(x) > 2 else None
    ax = _axis(a.get("axis", -1), inp.dim())
    eps = a.get("epsilon", 1e-5)
    shape = list(inp.shape[ax:])
    if list(scale.shape) == shape and (bias is None or list(bias.shape) == shape):
        y = F.layer_norm(inp, shape, scale, bias, eps)
    else:
        dims = list(range(ax, inp.dim()))
        mu = inp.mean(dims, keepdim=True)
        var = ((inp - mu) ** 2).mean(dims, keepdim=True)
        y = (inp - mu) / torch.sqrt(var + eps) * scale
        if bias is not None:
            y = y + bias
    return [y] + [None] * (len(node.output) - 1)


# ----------------------------------------------------------------------------------------- elementwise
def _binary(fn):
    return lambda node, x, a: [fn(x[0], x[1])]


def _div(p: Tensor, q: Tensor) -> Tensor:
    if p.dtype.is_floating_point or q.dtype.is_floating_point:
        return p / q
    return torch.div(p, q, rounding_mode="trunc")


def _pow(p: Tensor, q: Tensor) -> Tensor:
    return torch.pow(p, q).to(p.dtype)


def _mod(node, x, a):
    if a.get("fmod", 0):
        return [torch.fmod(x[0], x[1])]
    return [torch.remainder(x[0], x[1])]


for _name, _fn in {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": _div, "Pow": _pow,
    "Equal": torch.eq, "Greater": torch.gt, "Less": torch.lt, "GreaterOrEqual": torch.ge,
    "LessOrEqual": torch.le, "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
}.items():
    OPS[_name] = _binary(_fn)
OPS["Mod"] = _mod


def _nary(fn):
    def run(node, x, a):
        y = x[0]
        for t in x[1:]:
            y = fn(y, t)
        return [y]

    return run


OPS["Max"] = _nary(torch.maximum)
OPS["Min"] = _nary(torch.minimum)
OPS["Sum"] = _nary(torch.add)


@op("Mean")
def _mean(node, x, a):
    return [_nary(torch.add)(node, x, a)[0] / len(x)]


@op("Where")
def _where(node, x, a):
    return [torch.where(x[0].bool(), x[1], x[2])]


def _unary(fn):
    return lambda node, x, a: [fn(x[0])]


for _name, _fn in {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf, "Neg": torch.neg,
    "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt, "Reciprocal": torch.reciprocal, "Abs": torch.abs,
    "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round, "Sign": torch.sign, "Sin": torch.sin,
    "Cos": torch.cos, "Not": torch.logical_not, "HardSwish": F.hardswish,
    "Softsign": lambda t: t / (1 + t.abs()), "Mish": lambda t: t * torch.tanh(F.softplus(t)),
    "Softplus": lambda t: torch.log1p(torch.exp(-t.abs())) + t.clamp_min(0),
}.items():
    OPS[_name] = _unary(_fn)


@op("Identity")
def _identity(node, x, a):
    return [x[0]]


@op("Dropout")
def _dropout(node, x, a):
    out = [x[0]]
    if len(node.output) > 1:
        out.append(torch.ones_like(x[0], dtype=torch.bool))
    return out


@op("LeakyRelu")
def _leaky(node, x, a):
    return [F.leaky_relu(x[0], a.get("alpha", 0.01))]


@op("PRelu")
def _prelu(node, x, a):
    return [torch.where(x[0] < 0, x[0] * x[1], x[0])]


@op("HardSigmoid")
def _hardsigmoid(node, x, a):
    return [torch.clamp(x[0] * a.get("alpha", 0.2) + a.get("beta", 0.5), 0.0, 1.0)]


@op("Elu")
def _elu(node, x, a):
    return [F.elu(x[0], a.get("alpha", 1.0))]


@op("Selu")
def _selu(node, x, a):
    alpha = a.get("alpha", 1.67326319217681884765625)
    gamma = a.get("gamma", 1.05070102214813232421875)
    return [gamma * torch.where(x[0] > 0, x[0], alpha * (torch.exp(x[0]) - 1))]


@op("Celu")
def _celu(node, x, a):
    return [F.celu(x[0], a.get("alpha", 1.0))]


@op("Gelu", "com.microsoft::Gelu")
def _gelu(node, x, a):
    return [F.gelu(x[0], approximate=a.get("approximate", "none"))]


@op("Clip")
def _clip(node, x, a):
    lo = x[1] if len(x) > 1 else None
    hi = x[2] if len(x) > 2 else None
    if a["_opset"] < 11:
        lo = a.get("min", None)
        hi = a.get("max", None)
    if lo is None and hi is None:
        return [x[0]]
    return [torch.clamp(x[0], lo, hi)]


@op("Cast")
def _cast(node, x, a):
    to = a["to"]
    if to not in _DT:
        raise _unsupported(node, f"Cast to type {to}")
    return [x[0].to(_DT[to])]


@op("CastLike")
def _cast_like(node, x, a):
    return [x[0].to(x[1].dtype)]


# ----------------------------------------------------------------------------------------- pooling
def _pool_args(node, a, x: Tensor):
    k = list(a["kernel_shape"])
    n = len(k)
    strides = list(a.get("strides", [1] * n))
    dil = list(a.get("dilations", [1] * n))
    pads = _conv_pads(node, a, x, k, strides, dil)
    return k, n, strides, dil, pads


@op("MaxPool")
def _maxpool(node, x, a):
    inp = x[0]
    k, n, strides, dil, pads = _pool_args(node, a, inp)
    if n not in (1, 2, 3):
        raise _unsupported(node, f"{n}-d MaxPool")
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    ceil = bool(a.get("ceil_mode", 0))
    want_idx = len(node.output) > 1 and node.output[1] != ""
    if pads[:n] == pads[n:] and all(2 * p <= kk for p, kk in zip(pads[:n], k)):
        padding = pads[:n]
    else:
        if want_idx:
            raise _unsupported(node, "MaxPool indices with asymmetric pads")
        inp = F.pad(inp, _torch_pad(pads), value=-math.inf)
        padding = [0] * n
    if not want_idx:
        return [fn(inp, k, strides, padding, dil, ceil_mode=ceil)]
    if a.get("storage_order", 0):
        raise _unsupported(node, "MaxPool storage_order=1")
    y, idx = fn(inp, k, strides, padding, dil, ceil_mode=ceil, return_indices=True)
    plane = int(np.prod(inp.shape[2:]))
    nc = inp.shape[0] * inp.shape[1]
    offs = (torch.arange(nc, device=inp.device) * plane).reshape(inp.shape[0], inp.shape[1], *([1] * n))
    return [y, idx + offs]


@op("AveragePool")
def _avgpool(node, x, a):
    inp = x[0]
    k, n, strides, dil, pads = _pool_args(node, a, inp)
    if n not in (1, 2, 3) or any(d != 1 for d in dil):
        raise _unsupported(node, f"{n}-d AveragePool with dilations {dil}")
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    ceil = bool(a.get("ceil_mode", 0))
    cip = bool(a.get("count_include_pad", 0))
    if pads[:n] == pads[n:] and all(2 * p <= kk for p, kk in zip(pads[:n], k)):
        return [fn(inp, k, strides, pads[:n], ceil_mode=ceil, count_include_pad=cip)]
    tp = _torch_pad(pads)
    num = fn(F.pad(inp, tp), k, strides, 0, ceil_mode=ceil)
    if cip:
        return [num]
    ones = torch.ones((1, 1) + tuple(inp.shape[2:]), dtype=inp.dtype, device=inp.device)
    den = fn(F.pad(ones, tp), k, strides, 0, ceil_mode=ceil)
    return [num / den]


@op("GlobalAveragePool")
def _gap(node, x, a):
    return [x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True)]


@op("GlobalMaxPool")
def _gmp(node, x, a):
    return [x[0].amax(dim=tuple(range(2, x[0].dim())), keepdim=True)]


# ----------------------------------------------------------------------------------------- reductions
def _reduce(fn):
    def run(node, x, a):
        inp = x[0]
        axes = a.get("axes", None)
        if axes is None and len(x) > 1 and x[1] is not None:
            axes = _ints(x[1])
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return [inp]
            axes = list(range(inp.dim()))
        axes = sorted(_axis(v, inp.dim()) for v in axes)
        return [fn(inp, axes, keep)]

    return run


def _prod(t, axes, keep):
    for ax in sorted(axes, reverse=True):
        t = t.prod(ax, keepdim=keep) if keep else t.prod(ax)
    return t


for _name, _fn in {
    "ReduceMean": lambda t, ax, k: t.mean(ax, keepdim=k),
    "ReduceSum": lambda t, ax, k: t.sum(ax, keepdim=k),
    "ReduceMax": lambda t, ax, k: t.amax(ax, keepdim=k),
    "ReduceMin": lambda t, ax, k: t.amin(ax, keepdim=k),
    "ReduceProd": _prod,
    "ReduceL1": lambda t, ax, k: t.abs().sum(ax, keepdim=k),
    "ReduceL2": lambda t, ax, k: (t * t).sum(ax, keepdim=k).sqrt(),
    "ReduceSumSquare": lambda t, ax, k: (t * t).sum(ax, keepdim=k),
    "ReduceLogSumExp": lambda t, ax, k: torch.logsumexp(t, ax, keepdim=k),
}.items():
    OPS[_name] = _reduce(_fn)


def _argreduce(fn):
    def run(node, x, a):
        if a.get("select_last_index", 0):
            raise _unsupported(node, "select_last_index=1")
        return [fn(x[0], dim=a.get("axis", 0), keepdim=bool(a.get("keepdims", 1)))]

    return run


OPS["ArgMax"] = _argreduce(torch.argmax)
OPS["ArgMin"] = _argreduce(torch.argmin)


def _softmax(fn):
    def run(node, x, a):
        inp = x[0]
        if a["_opset"] >= 13:
            return [fn(inp, dim=a.get("axis", -1))]
        ax = _axis(a.get("axis", 1), inp.dim())
        if ax == inp.dim() - 1:  # the 2-D coercion changes nothing; a re-export keeps the batch symbolic
            return [fn(inp, dim=-1)]
        flat = inp.reshape(1, -1) if ax == 0 else inp.flatten(ax).flatten(0, ax - 1)
        return [fn(flat, dim=1).reshape(inp.shape)]

    return run


OPS["Softmax"] = _softmax(torch.softmax)
OPS["LogSoftmax"] = _softmax(torch.log_softmax)


# ----------------------------------------------------------------------------------------- shape ops
@op("Concat")
def _concat(node, x, a):
    ts = [t for t in x if t is not None]
    return [torch.cat(ts, dim=_axis(a["axis"], ts[0].dim()))]


@op("Split")
def _split(node, x, a):
    inp = x[0]
    ax = _axis(a.get("axis", 0), inp.dim())
    sizes = _ints(x[1]) if len(x) > 1 and x[1] is not None else a.get("split", None)
    if sizes is None:
        k = a.get("num_outputs", len(node.output))
        dim = inp.shape[ax]
        sizes = -(-dim // k)
    return list(torch.split(inp, sizes, dim=ax))


@op("Slice")
def _slice(node, x, a):
    inp = x[0]
    if a["_opset"] < 10:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(x[1]), _ints(x[2])
        axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
        steps = _ints(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    idx: list = [slice(None)] * inp.dim()
    negative = []
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = _axis(ax, inp.dim())
        if st > 0:
            idx[ax] = slice(s, e, st)
        else:
            negative.append((ax, s, e, st))
    y = inp[tuple(idx)]
    for ax, s, e, st in negative:
        dim = y.shape[ax]
        s = max(-dim - 1, min(dim, s)) if abs(s) < 2**62 else (dim if s > 0 else -dim - 1)
        e = max(-dim - 1, min(dim, e)) if abs(e) < 2**62 else (dim if e > 0 else -dim - 1)
        r = list(range(*slice(s, e, st).indices(dim)))
        y = y.index_select(ax, torch.tensor(r, dtype=torch.int64, device=y.device))
    return [y]


@op("Pad")
def _pad(node, x, a):
    inp = x[0]
    mode = a.get("mode", "constant")
    if a["_opset"] < 11:
        pads, value = list(a["pads"]), a.get("value", 0.0)
        axes = None
    else:
        pads = _ints(x[1])
        value = x[2].reshape(-1)[0].item() if len(x) > 2 and x[2] is not None and x[2].numel() else 0.0
        axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else None
    r = inp.dim()
    if axes is not None:
        full = [0] * (2 * r)
        k = len(axes)
        for i, ax in enumerate(axes):
            ax = _axis(ax, r)
            full[ax], full[r + ax] = pads[i], pads[k + i]
        pads = full
    tp = _torch_pad(pads)
    while len(tp) > 2 and tp[-1] == 0 and tp[-2] == 0:
        tp = tp[:-2]
    tmode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if tmode is None:
        raise _unsupported(node, f"Pad mode={mode}")
    if tmode == "constant":
        return [F.pad(inp, tp, value=value)]
    return [F.pad(inp, tp, mode=tmode)]


@op("Flatten")
def _flatten(node, x, a):
    inp = x[0]
    ax = _axis(a.get("axis", 1), inp.dim())
    if ax == 0:
        return [inp.reshape(1, -1)]
    y = inp.flatten(ax) if ax < inp.dim() else inp.unsqueeze(-1)
    return [y.flatten(0, ax - 1)]


@op("Reshape")
def _reshape(node, x, a):
    inp = x[0]
    if len(x) > 1 and torch.jit.is_tracing():
        return [_traced_reshape(inp, x[1], bool(a.get("allowzero", 0)))]
    shape = _ints(x[1]) if len(x) > 1 else list(a["shape"])
    if not a.get("allowzero", 0):
        shape = [inp.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return [inp.reshape(shape)]


def _traced_reshape(inp: Tensor, shape: Tensor, allowzero: bool) -> Tensor:
    """Reshape to a shape tensor kept as a tensor while torch.onnx.export traces the module: Python ints (`_ints`)
    would bake the example's sizes into the exported graph, so a shape computed from Shape (PP-OCRv4 rec pruned at
    0.3: Shape -> Slice -> Concat -> Reshape) would hold the example's batch and fail on any other batch."""
    s = shape.to(torch.int64).reshape(-1)
    if not allowzero:  # ONNX: a 0 copies the input's size at that position
        have = torch._shape_as_tensor(inp).to(torch.int64)
        n, r = s.numel(), have.numel()
        have = have[:n] if n <= r else torch.cat([have, torch.ones(n - r, dtype=torch.int64)])
        s = torch.where(s == 0, have, s)
    return torch._reshape_from_tensor(inp, s)


@op("Transpose")
def _transpose(node, x, a):
    perm = a.get("perm", list(reversed(range(x[0].dim()))))
    return [x[0].permute(*perm)]


@op("Squeeze")
def _squeeze(node, x, a):
    inp = x[0]
    axes = a.get("axes", None)
    if axes is None and len(x) > 1 and x[1] is not None:
        axes = _ints(x[1])
    if axes is None:
        return [inp.squeeze()] if inp.dim() else [inp]
    axes = sorted((_axis(v, inp.dim()) for v in axes), reverse=True)
    for ax in axes:
        inp = inp.squeeze(ax)
    return [inp]


@op("Unsqueeze")
def _unsqueeze(node, x, a):
    inp = x[0]
    axes = a.get("axes", None)
    if axes is None:
        axes = _ints(x[1])
    r = inp.dim() + len(axes)
    for ax in sorted(_axis(v, r) for v in axes):
        inp = inp.unsqueeze(ax)
    return [inp]


@op("Expand")
def _expand(node, x, a):
    shape = torch.broadcast_shapes(tuple(x[0].shape), tuple(_ints(x[1])))
    return [x[0].expand(shape)]


@op("Tile")
def _tile(node, x, a):
    return [x[0].repeat(_ints(x[1]))]


@op("Gather")
def _gather(node, x, a):
    data, idx = x[0], x[1].to(torch.int64)
    ax = _axis(a.get("axis", 0), data.dim())
    idx = torch.where(idx < 0, idx + data.shape[ax], idx)
    out = data.index_select(ax, idx.reshape(-1))
    return [out.reshape(tuple(data.shape[:ax]) + tuple(idx.shape) + tuple(data.shape[ax + 1:]))]


@op("GatherElements")
def _gather_elements(node, x, a):
    data, idx = x[0], x[1].to(torch.int64)
    ax = _axis(a.get("axis", 0), data.dim())
    idx = torch.where(idx < 0, idx + data.shape[ax], idx)
    return [torch.gather(data, ax, idx)]


@op("DepthToSpace")
def _depth_to_space(node, x, a):
    inp, bs = x[0], a["blocksize"]
    n, c, h, w = inp.shape
    if a.get("mode", "DCR") == "DCR":
        y = inp.reshape(n, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
    else:
        y = inp.reshape(n, c // (bs * bs), bs, bs, h, w).permute(0, 1, 4, 2, 5, 3)
    return [y.reshape(n, c // (bs * bs), h * bs, w * bs)]


@op("SpaceToDepth")
def _space_to_depth(node, x, a):
    inp, bs = x[0], a["blocksize"]
    n, c, h, w = inp.shape
    y = inp.reshape(n, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4)
    return [y.reshape(n, c * bs * bs, h // bs, w // bs)]


# ----------------------------------------------------------------------------------------- resize
def _src_coords(mode: str, out: int, size: int, scale: float, device) -> Tensor:
    i = torch.arange(out, dtype=torch.float64, device=device)
    if mode == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if out > 1 else torch.zeros_like(i)
    if mode == "align_corners":
        return i * (size - 1) / (out - 1) if out > 1 else torch.zeros_like(i)
    if mode == "asymmetric":
        return i / scale
    if mode == "tf_half_pixel_for_nn":
        return (i + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adj = out / (scale * size)
        center = size / 2
        return center * (1 - adj) + (i + 0.5) / scale - 0.5
    raise ValueError(mode)


def _nearest(c: Tensor, rule: str) -> Tensor:
    if rule == "floor":
        return torch.floor(c)
    if rule == "ceil":
        return torch.ceil(c)
    frac = c - torch.floor(c)
    if rule == "round_prefer_floor":
        return torch.where(frac == 0.5, torch.floor(c), torch.round(c))
    if rule == "round_prefer_ceil":
        return torch.where(frac == 0.5, torch.ceil(c), torch.round(c))
    raise ValueError(rule)


@op("Resize", "Upsample")
def _resize(node, x, a):
    inp = x[0]
    r = inp.dim()
    opset = a["_opset"]
    mode = a.get("mode", "nearest")
    if node.op_type == "Upsample":
        scales = list(a["scales"]) if "scales" in a else [float(v) for v in x[1].reshape(-1).tolist()]
        sizes, axes, ctm = None, list(range(r)), "asymmetric"
    else:
        ctm = a.get("coordinate_transformation_mode", "half_pixel" if opset >= 11 else "asymmetric")
        if opset < 11:
            scales, sizes = [float(v) for v in x[1].reshape(-1).tolist()], None
        else:
            sc = x[2] if len(x) > 2 and x[2] is not None and x[2].numel() else None
            sz = x[3] if len(x) > 3 and x[3] is not None and x[3].numel() else None
            scales = [float(v) for v in sc.reshape(-1).tolist()] if sc is not None else None
            sizes = _ints(sz)
        axes = [_axis(v, r) for v in a.get("axes", range(r))]
        if a.get("antialias", 0):
            raise _unsupported(node, "Resize antialias=1")
        if a.get("keep_aspect_ratio_policy", "stretch") != "stretch" and sizes is not None:
            raise _unsupported(node, "Resize keep_aspect_ratio_policy")
    if mode not in ("nearest", "linear", "bilinear"):
        raise _unsupported(node, f"Resize mode={mode}")
    if ctm == "tf_crop_and_resize":
        raise _unsupported(node, "Resize tf_crop_and_resize")
    rule = a.get("nearest_mode", "round_prefer_floor") if node.op_type == "Resize" and opset >= 11 else "floor"
    y = inp
    for j, ax in enumerate(axes):
        size = inp.shape[ax]
        if sizes is not None:
            out = sizes[j]
            scale = out / size
        else:
            scale = scales[j]
            out = int(math.floor(size * scale))
        if out == size and scale == 1.0:
            continue
        c = _src_coords(ctm, out, size, scale, inp.device)
        if mode == "nearest":
            i = _nearest(c, rule).clamp(0, size - 1).to(torch.int64)
            y = y.index_select(ax, i)
        else:
            c = c.clamp(0, size - 1)
            i0 = torch.floor(c).to(torch.int64)
            i1 = (i0 + 1).clamp(max=size - 1)
            lam = (c - i0.to(c.dtype)).to(y.dtype).reshape([-1] + [1] * (r - 1 - ax))
            y0, y1 = y.index_select(ax, i0), y.index_select(ax, i1)
            y = y0 + (y1 - y0) * lam
    return [y]


SUPPORTED: set[str] = set(OPS)


# ----------------------------------------------------------------------------------------- module
def _key(node: onnx.NodeProto) -> str:
    """Registry key: the op type for the default domain, "domain::op" otherwise (e.g. "com.microsoft::Gelu")."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def _sanitize(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name) or "t"
    if base[0].isdigit():
        base = "t_" + base
    cand, k = base, 1
    while cand in taken:
        cand = f"{base}_{k}"
        k += 1
    taken.add(cand)
    return cand


class OnnxModule(torch.nn.Module):
    """Executes an ONNX graph with torch ops; float initializers become nn.Parameters (trainable), int/shape
    constants buffers. forward(*inputs) returns a tensor (one output) or a tuple, in graph-output order.

    ``param_names`` maps each initializer's ONNX name to its attribute name on the module;
    ``input_names`` / ``output_names`` are the graph's (non-initializer) inputs and outputs. ``bn_momentum`` is
    how far a training-mode forward moves BatchNormalization's running statistics towards the batch's
    (``run(..., extra=names)`` also returns intermediate values, e.g. the logits before a final Softmax)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        bad = sorted({
            (n.domain + "::" if n.domain not in ("", "ai.onnx") else "") + n.op_type
            for n in g.node
            if _key(n) not in OPS
        })
        if bad:
            raise UnsupportedOp(f"onnx_to_torch: unsupported op(s): {', '.join(bad)}")
        taken = set(dir(self)) | {"opset", "param_names", "input_names", "output_names", "bn_momentum"}
        self.bn_momentum = 0.1
        # running statistics are estimated, not trained: buffers (a training-mode forward updates them in place)
        stats = {n.input[k] for n in g.node if n.op_type == "BatchNormalization" for k in (3, 4) if len(n.input) > k}
        self.param_names: dict[str, str] = {}
        self._values: dict[str, str] = {}  # onnx value name -> attribute holding it
        for init in g.initializer:
            arr = numpy_helper.to_array(init)
            t = _to_torch(arr)
            attr = _sanitize(init.name, taken)
            if t.dtype.is_floating_point and init.name not in stats:
                self.register_parameter(attr, torch.nn.Parameter(t))
            else:
                self.register_buffer(attr, t)
            self.param_names[init.name] = attr
            self._values[init.name] = attr
        inits = {i.name for i in g.initializer}
        self.input_names = [i.name for i in g.input if i.name not in inits]
        self.output_names = [o.name for o in g.output]
        self._nodes: list[tuple[OpFn, list[str], list[str], dict, onnx.NodeProto]] = []
        for node in g.node:
            a = _attrs(node, self.opset)
            if node.op_type == "Constant":
                (t,) = _constant(node, [], a)
                attr = _sanitize("const_" + node.output[0], taken)
                self.register_buffer(attr, t)
                self._values[node.output[0]] = attr
                continue
            self._nodes.append((OPS[_key(node)], list(node.input), list(node.output), a, node))

    def forward(self, *inputs: Tensor):
        out, _ = self.run(*inputs)
        return out[0] if len(out) == 1 else out

    def run(self, *inputs: Tensor, extra: tuple[str, ...] = ()) -> tuple[tuple[Tensor, ...], dict[str, Tensor]]:
        """The graph outputs (a tuple, in graph order) and the values named in ``extra`` (any tensor of the graph;
        distillation reads the logits before a Softmax output this way)."""
        if len(inputs) != len(self.input_names):
            raise TypeError(f"expected {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        env: dict[str, Tensor | None] = {n: getattr(self, attr) for n, attr in self._values.items()}
        env.update(zip(self.input_names, inputs))
        for fn, ins, outs, a, node in self._nodes:
            args = [env[n] if n else None for n in ins]
            while args and args[-1] is None:
                args.pop()
            if self.training and node.op_type == "BatchNormalization":
                res = batchnorm_train(node, args, a, self.bn_momentum)
            else:
                res = fn(node, args, a)
            for name, val in zip(outs, res):
                if name:
                    env[name] = val
        missing = [n for n in extra if env.get(n) is None]
        if missing:
            raise KeyError(f"no value(s) {missing} in the graph")
        return tuple(env[n] for n in self.output_names), {n: env[n] for n in extra}


def onnx_to_torch(model: onnx.ModelProto | str | Path) -> OnnxModule:
    """Build a trainable :class:`OnnxModule` from an ONNX model (or its path). Raises UnsupportedOp."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    return OnnxModule(model)


def check_roundtrip(model: onnx.ModelProto | str | Path, n_batches: int = 2, batch: int = 2, tol: float = 1e-5) -> float:
    """Max relative |torch - onnxruntime| (relative to each output's max |value|) over `n_batches` random input
    sets (spa.verify.random_inputs). Raises UnsupportedOp for an op the converter lacks; VerificationFailed when
    the error exceeds `tol` (pass tol=None to only measure)."""
    from .errors import VerificationFailed
    from .verify import random_inputs, session

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    module = onnx_to_torch(model).eval()
    sess = session(model)
    worst = 0.0
    for seed in range(n_batches):
        feeds = random_inputs(model, seed=seed, batch=batch)
        ref = sess.run(None, feeds)
        with torch.no_grad():
            got = module(*[torch.from_numpy(feeds[n]) for n in module.input_names])
        got = got if isinstance(got, tuple) else (got,)
        for name, r, t in zip(module.output_names, ref, got):
            t = t.numpy()
            if t.shape != r.shape:
                raise VerificationFailed(f"onnx_to_torch: output {name!r} shape {t.shape} != onnxruntime {r.shape}")
            if r.size == 0:
                continue
            if not np.issubdtype(r.dtype, np.floating):
                err = 0.0 if np.array_equal(t, r) else math.inf
            else:
                r64, t64 = r.astype(np.float64), t.astype(np.float64)
                err = float(np.max(np.abs(t64 - r64)) / max(float(np.max(np.abs(r64))), 1e-12))
            worst = max(worst, err)
    if tol is not None and not worst <= tol:
        raise VerificationFailed(f"onnx_to_torch: torch vs onnxruntime relative error {worst:.3g} > {tol:g}")
    return worst
