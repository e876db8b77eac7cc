"""Tiny hand-built ONNX models, one per channel-coupling pattern, for spa's rule tests.

Every model is built directly with ``onnx.helper`` so the opset and the exact ops are under control. Layout of
most patterns (the "sandwich")::

    x (N,3,8,8) -> Conv c0 (3->8) -> Relu r0 -> Conv c1 (8->C) = "t" -> <op under test> -> Conv c2 (->4) -> y

Graph inputs and outputs are frozen by spa, so the group of ``c0`` (``r0``) is always prunable and the group
of ``t`` is the one that touches the op under test. Initializers are random float32 values from a fixed-seed
generator; the graph input "x" has the symbolic batch dim "N"; outputs are named "y..." and declared with
their real shapes ("N" where the dim follows the batch).

Public API::

    PATTERNS: dict[str, Callable[[], onnx.ModelProto]]   # name -> builder
    EXPECT:   dict[str, str]                             # "prunable" | "frozen": the op-under-test's group
    PROBE:    dict[str, tuple[str, int]]                 # (tensor, axis) that lies in that group
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["PATTERNS", "EXPECT", "PROBE", "build", "validate"]

PATTERNS: dict[str, Callable[[], onnx.ModelProto]] = {}
EXPECT: dict[str, str] = {}
PROBE: dict[str, tuple[str, int]] = {}

H = W = 8  # spatial size of the graph input


def _pattern(expect: str, probe: str, axis: int = 1):
    assert expect in ("prunable", "frozen")

    def deco(fn: Callable[[], onnx.ModelProto]) -> Callable[[], onnx.ModelProto]:
        name = fn.__name__
        PATTERNS[name] = fn
        EXPECT[name] = expect
        PROBE[name] = (probe, axis)
        return fn

    return deco


# ------------------------------------------------------------------------------------------ builder
class _B:
    """A small graph builder: nodes, initializers and value infos, then a checked ModelProto."""

    def __init__(self, opset: int = 17, seed: int = 0, ir_version: int | None = None) -> None:
        self.opset = opset
        self.ir_version = ir_version
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self.domains: dict[str, int] = {}
        self._k = 0

    # constants
    def const(self, name: str, value, dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def i64(self, name: str, value) -> str:
        return self.const(name, np.asarray(value, dtype=np.int64))

    def f32(self, name: str, value) -> str:
        return self.const(name, np.asarray(value, dtype=np.float32))

    def rand(self, name: str, shape, scale: float | None = None, positive: bool = False,
             fan_in: int | None = None) -> str:
        if scale is None:
            fi = fan_in if fan_in is not None else (int(np.prod(shape[1:])) if len(shape) > 1 else 1)
            scale = 1.0 / np.sqrt(max(1, fi))
        a = self.rng.standard_normal(shape) * scale
        if positive:
            a = np.abs(a) + 0.5
        return self.f32(name, a.astype(np.float32))

    # nodes
    def op(self, op_type: str, inputs: list[str], out: str | list[str] | None = None, domain: str = "", **attrs) -> str:
        if out is None:
            self._k += 1
            out = f"{op_type.lower()}_{self._k}"
        outs = [out] if isinstance(out, str) else list(out)
        name = f"n_{outs[0] or op_type}"
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain or None, **attrs))
        return outs[0]

    def conv(self, x: str, cin: int, cout: int, out: str, k: int = 3, group: int = 1, bias: bool = True,
             stride: int = 1, dims: int = 2) -> str:
        w = self.rand(f"{out}.w", (cout, cin // group) + (k,) * dims)
        ins = [x, w]
        if bias:
            ins.append(self.rand(f"{out}.b", (cout,), scale=0.1))
        return self.op("Conv", ins, out, kernel_shape=[k] * dims, pads=[k // 2] * (2 * dims), group=group,
                       strides=[stride] * dims)

    def vinfo(self, name: str, shape) -> None:
        self.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    def model(self, outputs: list[str], inputs: list[tuple[str, list]] | None = None,
              inits_as_inputs: bool = False) -> onnx.ModelProto:
        inputs = inputs or [("x", ["N", 3, H, W])]
        g_inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs]
        if inits_as_inputs:
            for t in self.inits:
                g_inputs.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        g_outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        graph = helper.make_graph(self.nodes, "pattern", g_inputs, g_outputs, initializer=self.inits,
                                  value_info=self.value_info)
        opsets = [helper.make_opsetid("", self.opset)] + [helper.make_opsetid(d, v) for d, v in self.domains.items()]
        ir = self.ir_version or max(7, helper.find_min_ir_version_for([helper.make_opsetid("", self.opset)]))
        m = helper.make_model(graph, opset_imports=opsets, ir_version=ir, producer_name="spa-patterns")
        _declare_outputs(m, inputs)
        return m


def _declare_outputs(m: onnx.ModelProto, inputs: list[tuple[str, list]]) -> None:
    """Give every graph output its real shape, found by running the model at two batch sizes: a dim that
    equals the batch becomes "N", one that changes otherwise stays unnamed."""
    shapes = []
    for batch in (2, 3):
        feeds = {}
        rng = np.random.default_rng(0)
        for name, s in inputs:
            feeds[name] = rng.standard_normal([batch if d == "N" else d for d in s]).astype(np.float32)
        shapes.append([o.shape for o in _run(m, feeds)])
    for out, s2, s3 in zip(m.graph.output, *shapes):
        dims = []
        for a, b in zip(s2, s3):
            if a == b:
                dims.append(int(a))
            elif a == 2 and b == 3:
                dims.append("N")
            else:
                dims.append(None)
        out.CopyFrom(helper.make_tensor_value_info(out.name, TensorProto.FLOAT, dims))


def _run(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def validate(m: onnx.ModelProto, batch: int = 2) -> list[np.ndarray]:
    """onnx.checker (full) and one onnxruntime run; returns the outputs."""
    onnx.checker.check_model(m, full_check=True)
    rng = np.random.default_rng(1)
    feeds = {}
    inits = {t.name for t in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in inp.type.tensor_type.shape.dim]
        dt = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
        feeds[inp.name] = rng.standard_normal(dims).astype(dt)
    return _run(m, feeds)


def build(name: str) -> onnx.ModelProto:
    return PATTERNS[name]()


def _head(b: _B, cmid: int = 8) -> str:
    """x -> c0 (3->8) -> r0 -> c1 (8->cmid) = "t"."""
    b.conv("x", 3, 8, "c0")
    b.op("Relu", ["c0"], "r0")
    return b.conv("r0", 8, cmid, "t")


def _tail(b: _B, x: str, cin: int, out: str = "y") -> str:
    return b.conv(x, cin, 4, out)


def _sandwich(opset: int, mid: Callable[[_B, str], tuple[str, int]], cmid: int = 8) -> onnx.ModelProto:
    b = _B(opset)
    t = _head(b, cmid)
    u, c = mid(b, t)
    _tail(b, u, c)
    return b.model(["y"])


# ====================================================================================== element-wise
@_pattern("prunable", "bn")
def conv_bn_relu() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("BatchNormalization", [t, b.rand("bn.s", (8,), positive=True), b.rand("bn.b", (8,), scale=0.5),
                                    b.rand("bn.m", (8,), scale=0.5), b.rand("bn.v", (8,), positive=True)],
             "bn", epsilon=1e-5)
        return b.op("Relu", ["bn"], "bn_r"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "m")
def conv_bias_mul_add() -> onnx.ModelProto:
    """tf2onnx folds BatchNorm into Mul and Add by (C,1,1) constants after a bias-less conv."""
    b = _B(13)
    b.conv("x", 3, 8, "c0")
    b.op("Relu", ["c0"], "r0")
    b.conv("r0", 8, 8, "t", bias=False)
    b.op("Mul", ["t", b.rand("bn_scale", (8, 1, 1), positive=True)], "m")
    b.op("Add", ["m", b.rand("bn_shift", (8, 1, 1), scale=0.5)], "a")
    b.op("Relu", ["a"], "a_r")
    _tail(b, "a_r", 8)
    return b.model(["y"])


@_pattern("prunable", "d")
def conv_div_const() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Sub", [t, b.rand("mean", (8, 1, 1), scale=0.3)], "s")
        b.op("Div", ["s", b.rand("std", (8, 1, 1), positive=True)], "d")
        return "d", 8

    return _sandwich(17, mid)


@_pattern("prunable", "p")
def prelu() -> onnx.ModelProto:
    return _sandwich(17, lambda b, t: (b.op("PRelu", [t, b.rand("slope", (8, 1, 1), scale=0.3)], "p"), 8))


@_pattern("prunable", "cl")
def clip_relu6() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        return b.op("Clip", [t, b.f32("zero", 0.0), b.f32("six", 0.6)], "cl"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "cl")
def clip_attr_opset9() -> onnx.ModelProto:
    return _sandwich(9, lambda b, t: (b.op("Clip", [t], "cl", min=0.0, max=0.6), 8))


@_pattern("prunable", "hs")
def hardswish() -> onnx.ModelProto:
    return _sandwich(14, lambda b, t: (b.op("HardSwish", [t], "hs"), 8))


@_pattern("prunable", "hs")
def hardsigmoid() -> onnx.ModelProto:
    return _sandwich(17, lambda b, t: (b.op("HardSigmoid", [t], "hs", alpha=0.2, beta=0.5), 8))


@_pattern("prunable", "silu")
def sigmoid_mul() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Sigmoid", [t], "sg")
        return b.op("Mul", [t, "sg"], "silu"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "se")
def leaky_elu_selu_chain() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("LeakyRelu", [t], "lr", alpha=0.1)
        b.op("Elu", ["lr"], "el", alpha=0.9)
        return b.op("Selu", ["el"], "se"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "ge")
def gelu_opset20() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Gelu", [t], "ge0")
        return b.op("Gelu", ["ge0"], "ge", approximate="tanh"), 8

    return _sandwich(20, mid)


@_pattern("prunable", "ge")
def erf_gelu_decomposed() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Div", [t, b.f32("sqrt2", np.sqrt(2.0))], "gd")
        b.op("Erf", ["gd"], "ge_erf")
        b.op("Add", ["ge_erf", b.f32("one", 1.0)], "ge_1")
        b.op("Mul", [t, "ge_1"], "ge_m")
        return b.op("Mul", ["ge_m", b.f32("half", 0.5)], "ge"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "dr")
def dropout_identity_cast() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Dropout", [t, b.f32("ratio", 0.25)], ["dr", "dr_mask"])
        b.op("Identity", ["dr"], "idn")
        b.op("Cast", ["idn"], "c64", to=TensorProto.DOUBLE)
        return b.op("Cast", ["c64"], "c32", to=TensorProto.FLOAT), 8

    return _sandwich(13, mid)


@_pattern("prunable", "a")
def broadcast_add_scalar() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Add", [t, b.f32("s0", 0.5)], "a")
        b.op("Mul", ["a", b.f32("s1", np.array([1.5], dtype=np.float32))], "am")
        b.op("Pow", ["am", b.f32("two", 2.0)], "ap")
        return b.op("Sub", ["ap", b.f32("s2", np.ones((1, 1, 1, 1), dtype=np.float32))], "as_"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "mx")
def nary_max_sum() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.conv(t, 8, 8, "ta", k=1)
        b.op("Max", [t, "ta"], "mx")
        b.op("Sum", ["mx", "ta", t], "sm")
        return b.op("Mean", ["sm", b.rand("mean_b", (8, 1, 1))], "mn"), 8

    return _sandwich(17, mid)


# ========================================================================================== norms
@_pattern("prunable", "in")
def instance_norm() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("InstanceNormalization", [t, b.rand("in.s", (8,), positive=True), b.rand("in.b", (8,))], "in")
        return b.op("Relu", ["in"], "in_r"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "ln")
def layernorm_spatial() -> onnx.ModelProto:
    """LayerNorm over the last (W) axis of NCHW: channels pass through."""

    def mid(b: _B, t: str):
        return b.op("LayerNormalization", [t, b.rand("ln.s", (W,), positive=True), b.rand("ln.b", (W,))], "ln",
                    axis=-1), 8

    return _sandwich(17, mid)


@_pattern("prunable", "t")
def layernorm_nhwc_channels() -> onnx.ModelProto:
    """LayerNorm over C in NHWC (ConvNeXt): prunable, lossy (the statistics are taken over fewer channels);
    `--no-hidden` freezes it. The oracle masks the removed channels out of the statistics."""

    def mid(b: _B, t: str):
        b.op("Transpose", [t], "nhwc", perm=[0, 2, 3, 1])
        b.op("LayerNormalization", ["nhwc", b.rand("ln.s", (8,), positive=True), b.rand("ln.b", (8,))], "ln",
             axis=-1)
        return b.op("Transpose", ["ln"], "nchw", perm=[0, 3, 1, 2]), 8

    return _sandwich(17, mid)


# =================================================================================== conv variants
@_pattern("prunable", "g4")
def grouped_conv() -> onnx.ModelProto:
    """c0 -> g2 (group=2) -> c3 -> g4 (group=4, 8->16) -> c2: pruned in whole blocks."""
    b = _B(17)
    b.conv("x", 3, 8, "c0")
    b.op("Relu", ["c0"], "r0")
    b.conv("r0", 8, 8, "g2", group=2)
    b.op("Relu", ["g2"], "g2_r")
    b.conv("g2_r", 8, 8, "c3", k=1)
    b.op("Relu", ["c3"], "c3_r")
    b.conv("c3_r", 8, 16, "g4", group=4)
    b.op("Relu", ["g4"], "g4_r")
    _tail(b, "g4_r", 16)
    return b.model(["y"])


@_pattern("prunable", "dw")
def depthwise_conv() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.conv(t, 8, 8, "dw", group=8)
        return b.op("Relu", ["dw"], "dw_r"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "dw")
def depthwise_multiplier() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.conv(t, 8, 16, "dw", group=8)
        return b.op("Relu", ["dw"], "dw_r"), 16

    return _sandwich(17, mid)


@_pattern("prunable", "ct")
def conv_transpose() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("ConvTranspose", [t, b.rand("ct.w", (8, 6, 2, 2), fan_in=8), b.rand("ct.b", (6,), scale=0.1)], "ct",
             kernel_shape=[2, 2], strides=[2, 2])
        return b.op("Relu", ["ct"], "ct_r"), 6

    return _sandwich(17, mid)


@_pattern("prunable", "ct")
def conv_transpose_grouped() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("ConvTranspose", [t, b.rand("ct.w", (8, 4, 2, 2), fan_in=4), b.rand("ct.b", (8,), scale=0.1)], "ct",
             kernel_shape=[2, 2], strides=[2, 2], group=2)
        return b.op("Relu", ["ct"], "ct_r"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "t")
def conv1d_bn() -> onnx.ModelProto:
    b = _B(17)
    b.conv("x", 3, 8, "c0", dims=1)
    b.op("Relu", ["c0"], "r0")
    b.conv("r0", 8, 8, "t", dims=1)
    b.op("BatchNormalization", ["t", b.rand("bn.s", (8,), positive=True), b.rand("bn.b", (8,)),
                                b.rand("bn.m", (8,)), b.rand("bn.v", (8,), positive=True)], "bn")
    b.op("Relu", ["bn"], "bn_r")
    b.conv("bn_r", 8, 4, "y", dims=1)
    return b.model(["y"], inputs=[("x", ["N", 3, 10])])


@_pattern("prunable", "t")
def constant_node_weights() -> onnx.ModelProto:
    """Conv weights given by Constant nodes instead of initializers."""
    b = _B(17)
    _head(b)
    _tail(b, "t", 8)
    consts = []
    for t in list(b.inits):
        if t.name.startswith(("t.", "y.")):
            b.inits.remove(t)
            consts.append(helper.make_node("Constant", [], [t.name], name=f"const_{t.name}", value=t))
    b.nodes[:0] = consts
    return b.model(["y"])


@_pattern("prunable", "s1")
def shared_initializer() -> onnx.ModelProto:
    """One weight initializer used by two Convs (tied weights)."""
    b = _B(17)
    b.conv("x", 3, 8, "c0")
    b.op("Relu", ["c0"], "r0")
    w = b.rand("shared.w", (8, 8, 3, 3))
    b.op("Conv", ["r0", w, b.rand("s1.b", (8,), scale=0.1)], "s1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.op("Relu", ["s1"], "s1_r")
    b.op("Conv", ["s1_r", w, b.rand("s2.b", (8,), scale=0.1)], "s2", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.op("Relu", ["s2"], "s2_r")
    _tail(b, "s2_r", 8)
    return b.model(["y"])


@_pattern("prunable", "t")
def weight_via_identity() -> onnx.ModelProto:
    """torch exports a parameter used twice through Identity nodes."""
    b = _B(17)
    b.conv("x", 3, 8, "c0")
    b.op("Relu", ["c0"], "r0")
    w = b.rand("c1.w", (8, 8, 3, 3))
    b.op("Identity", [w], "c1.w_id")
    b.op("Conv", ["r0", "c1.w_id", b.rand("c1.b", (8,), scale=0.1)], "t", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.op("Relu", ["t"], "t_r")
    _tail(b, "t_r", 8)
    return b.model(["y"])


@_pattern("prunable", "t")
def conv_weight_computed() -> onnx.ModelProto:
    """Conv weight computed in the graph (W0 * scale), as after weight-norm or fake-quant folding."""
    b = _B(17)
    b.conv("x", 3, 8, "c0")
    b.op("Relu", ["c0"], "r0")
    b.op("Mul", [b.rand("c1.w0", (8, 8, 3, 3)), b.f32("wscale", 0.7)], "c1.w")
    b.op("Conv", ["r0", "c1.w", b.rand("c1.b", (8,), scale=0.1)], "t", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.op("Relu", ["t"], "t_r")
    _tail(b, "t_r", 8)
    return b.model(["y"])


@_pattern("prunable", "t")
def initializers_as_inputs() -> onnx.ModelProto:
    """IR version 3 style: every initializer is also listed as a graph input."""
    b = _B(8, ir_version=3)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    _tail(b, "t_r", 8)
    return b.model(["y"], inits_as_inputs=True)


# ============================================================================= Gemm / MatMul / heads
def _gap_flatten(b: _B, t: str) -> str:
    b.op("Relu", [t], "t_r")
    b.op("GlobalAveragePool", ["t_r"], "gap")
    return b.op("Flatten", ["gap"], "f", axis=1)


@_pattern("prunable", "g")
def gemm_transB() -> onnx.ModelProto:
    b = _B(17)
    f = _gap_flatten(b, _head(b))
    b.op("Gemm", [f, b.rand("g.w", (10, 8)), b.rand("g.b", (10,), scale=0.1)], "g", transB=1)
    b.op("Relu", ["g"], "g_r")
    b.op("Gemm", ["g_r", b.rand("y.w", (5, 10)), b.rand("y.b", (5,), scale=0.1)], "y", transB=1)
    return b.model(["y"])


@_pattern("prunable", "g")
def gemm_no_trans() -> onnx.ModelProto:
    b = _B(17)
    f = _gap_flatten(b, _head(b))
    b.op("Gemm", [f, b.rand("g.w", (8, 10), fan_in=8), b.rand("g.b", (10,), scale=0.1)], "g", alpha=0.9, beta=0.5)
    b.op("Relu", ["g"], "g_r")
    b.op("Gemm", ["g_r", b.rand("y.w", (10, 5), fan_in=10), b.rand("y.b", (5,), scale=0.1)], "y")
    return b.model(["y"])


@_pattern("prunable", "g1")
def two_gemms() -> onnx.ModelProto:
    """Gemm -> Relu -> Gemm -> Relu -> Gemm, with 2-D (1, M) and 1-D biases."""
    b = _B(17)
    f = _gap_flatten(b, _head(b))
    b.op("Gemm", [f, b.rand("g1.w", (16, 8)), b.rand("g1.b", (1, 16), scale=0.1)], "g1", transB=1)
    b.op("Relu", ["g1"], "g1_r")
    b.op("Gemm", ["g1_r", b.rand("g2.w", (16, 12), fan_in=16), b.rand("g2.b", (12,), scale=0.1)], "g2")
    b.op("Relu", ["g2"], "g2_r")
    b.op("Gemm", ["g2_r", b.rand("y.w", (5, 12)), b.rand("y.b", (5,), scale=0.1)], "y", transB=1)
    return b.model(["y"])


@_pattern("prunable", "mm")
def matmul_init_right() -> onnx.ModelProto:
    b = _B(17)
    f = _gap_flatten(b, _head(b))
    b.op("MatMul", [f, b.rand("mm.w", (8, 12), fan_in=8)], "mm")
    b.op("Add", ["mm", b.rand("mm.b", (12,), scale=0.1)], "mm_b")
    b.op("Relu", ["mm_b"], "mm_r")
    b.op("MatMul", ["mm_r", b.rand("y.w", (12, 5), fan_in=12)], "ymm")
    b.op("Add", ["ymm", b.rand("y.b", (5,), scale=0.1)], "y")
    return b.model(["y"])


@_pattern("prunable", "mm")
def matmul_init_left() -> onnx.ModelProto:
    """W (12, 8) @ x (N, 8, HW): the weight on the left of a 3-D activation; reshapes with constant targets."""
    b = _B(17)
    _head(b)
    b.op("Reshape", ["t", b.i64("rs.shape", [0, 8, -1])], "rs")
    b.op("MatMul", [b.rand("mm.w", (12, 8)), "rs"], "mm")
    b.op("Add", ["mm", b.rand("mm.b", (12, 1), scale=0.1)], "mm_b")
    b.op("Relu", ["mm_b"], "mm_r")
    b.op("Reshape", ["mm_r", b.i64("rb.shape", [0, 12, H, W])], "rb")
    _tail(b, "rb", 12)
    return b.model(["y"])


@_pattern("prunable", "t_r")
def flatten_to_gemm() -> onnx.ModelProto:
    """NCHW Flatten of C x H x W features into a Gemm."""
    b = _B(17)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("MaxPool", ["t_r"], "mp", kernel_shape=[2, 2], strides=[2, 2])
    b.op("Flatten", ["mp"], "f", axis=1)
    b.op("Gemm", ["f", b.rand("g.w", (10, 8 * 16)), b.rand("g.b", (10,), scale=0.1)], "g", transB=1)
    b.op("Relu", ["g"], "g_r")
    b.op("Gemm", ["g_r", b.rand("y.w", (5, 10)), b.rand("y.b", (5,), scale=0.1)], "y", transB=1)
    return b.model(["y"])


@_pattern("frozen", "t_r")
def flatten_axis2() -> onnx.ModelProto:
    """Flatten at axis 2 folds the channels into the batch axis: not followed."""
    b = _B(17)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("Flatten", ["t_r"], "f", axis=2)
    b.op("MatMul", ["f", b.rand("mm.w", (H * W, 5))], "y")
    return b.model(["y"])


def _mlp_tail(b: _B, f: str, k: int) -> None:
    b.op("MatMul", [f, b.rand("mm.w", (k, 10), fan_in=k)], "mm")
    b.op("Add", ["mm", b.rand("mm.b", (10,), scale=0.1)], "mm_b")
    b.op("Relu", ["mm_b"], "mm_r")
    b.op("MatMul", ["mm_r", b.rand("y.w", (10, 5), fan_in=10)], "y")


@_pattern("prunable", "t_r")
def reshape_to_matmul() -> onnx.ModelProto:
    b = _B(17)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("MaxPool", ["t_r"], "mp", kernel_shape=[2, 2], strides=[2, 2])
    b.op("Reshape", ["mp", b.i64("rs.shape", [-1, 8 * 16])], "rs")
    _mlp_tail(b, "rs", 8 * 16)
    return b.model(["y"])


@_pattern("prunable", "t_r")
def reshape_zero_minus1() -> onnx.ModelProto:
    b = _B(17)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("MaxPool", ["t_r"], "mp", kernel_shape=[2, 2], strides=[2, 2])
    b.op("Reshape", ["mp", b.i64("rs.shape", [0, -1])], "rs")
    _mlp_tail(b, "rs", 8 * 16)
    return b.model(["y"])


@_pattern("prunable", "t_r")
def reshape_shape_chain(value_info: bool = True) -> onnx.ModelProto:
    """x.view(x.size(0), -1) as torch's legacy exporter emits it: Shape -> Gather -> Unsqueeze -> Concat."""
    b = _B(13)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("MaxPool", ["t_r"], "mp", kernel_shape=[2, 2], strides=[2, 2])
    b.op("Shape", ["mp"], "shp")
    b.op("Gather", ["shp", b.i64("idx0", 0)], "shp_n", axis=0)
    b.op("Unsqueeze", ["shp_n", b.i64("ax0", [0])], "shp_n1")
    b.op("Concat", ["shp_n1", b.i64("minus1", [-1])], "tgt", axis=0)
    b.op("Reshape", ["mp", "tgt"], "rs")
    b.op("Gemm", ["rs", b.rand("g.w", (10, 8 * 16)), b.rand("g.b", (10,), scale=0.1)], "g", transB=1)
    b.op("Relu", ["g"], "g_r")
    b.op("Gemm", ["g_r", b.rand("y.w", (5, 10)), b.rand("y.b", (5,), scale=0.1)], "y", transB=1)
    if value_info:
        b.vinfo("rs", ["N", 8 * 16])  # exporters annotate it; onnx data propagation alone does not infer it
    return b.model(["y"])


@_pattern("prunable", "t_r")
def reshape_shape_chain_mul() -> onnx.ModelProto:
    """x.view(-1, x.size(1) * x.size(2) * x.size(3)) traced: Shape -> Slice (batch) and three Gathers
    multiplied together -> Concat -> Reshape. The channel count reaches only the Reshape target."""
    b = _B(13)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("MaxPool", ["t_r"], "mp", kernel_shape=[2, 2], strides=[2, 2])
    b.op("Shape", ["mp"], "shp")
    b.op("Slice", ["shp", b.i64("sl0", [0]), b.i64("sl1", [1])], "shp_n")
    for k in (1, 2, 3):
        b.op("Gather", ["shp", b.i64(f"idx{k}", k)], f"shp_{k}", axis=0)
    b.op("Mul", ["shp_1", "shp_2"], "shp_12")
    b.op("Mul", ["shp_12", "shp_3"], "shp_123")
    b.op("Unsqueeze", ["shp_123", b.i64("ax0", [0])], "shp_f")
    b.op("Concat", ["shp_n", "shp_f"], "tgt", axis=0)
    b.op("Reshape", ["mp", "tgt"], "rs")
    b.vinfo("rs", ["N", 8 * 16])
    _mlp_tail(b, "rs", 8 * 16)
    return b.model(["y"])


@_pattern("prunable", "t_r")
def reshape_shape_chain_no_value_info() -> onnx.ModelProto:
    """The same chain without a shape annotation on the Reshape output: onnx shape inference (even with data
    propagation) leaves it unknown; spa's onnxruntime shape probe recovers it, so the group stays prunable."""
    return reshape_shape_chain(value_info=False)


@_pattern("prunable", "nhwc", 3)
def nhwc_flatten() -> onnx.ModelProto:
    """tf2onnx: Transpose to NHWC, Reshape (N, H*W*C), MatMul."""
    b = _B(13)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("MaxPool", ["t_r"], "mp", kernel_shape=[2, 2], strides=[2, 2])
    b.op("Transpose", ["mp"], "nhwc", perm=[0, 2, 3, 1])
    b.op("Reshape", ["nhwc", b.i64("rs.shape", [-1, 16 * 8])], "rs")
    _mlp_tail(b, "rs", 16 * 8)
    return b.model(["y"])


@_pattern("prunable", "m", 3)
def transpose_roundtrip() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Transpose", [t], "nhwc", perm=[0, 2, 3, 1])
        b.op("Mul", ["nhwc", b.rand("ch_scale", (8,), positive=True)], "m")
        b.op("Add", ["m", b.rand("ch_shift", (8,))], "a")
        b.op("Transpose", ["a"], "nchw", perm=[0, 3, 1, 2])
        return b.op("Relu", ["nchw"], "nchw_r"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "m")
def squeeze_unsqueeze() -> onnx.ModelProto:
    """Squeeze-excite with Gemms: GAP -> Squeeze -> Gemm -> Relu -> Gemm -> Sigmoid -> Unsqueeze -> Mul."""

    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        b.op("GlobalAveragePool", ["t_r"], "gap")
        b.op("Squeeze", ["gap", b.i64("sq.axes", [2, 3])], "sq")
        b.op("Gemm", ["sq", b.rand("se1.w", (4, 8)), b.rand("se1.b", (4,), scale=0.1)], "se1", transB=1)
        b.op("Relu", ["se1"], "se1_r")
        b.op("Gemm", ["se1_r", b.rand("se2.w", (8, 4)), b.rand("se2.b", (8,), scale=0.1)], "se2", transB=1)
        b.op("Sigmoid", ["se2"], "gate")
        b.op("Unsqueeze", ["gate", b.i64("us.axes", [2, 3])], "gate4")
        return b.op("Mul", ["t_r", "gate4"], "m"), 8

    return _sandwich(13, mid)


@_pattern("prunable", "m")
def squeeze_unsqueeze_opset11() -> onnx.ModelProto:
    """Same SE block with Squeeze/Unsqueeze axes as attributes (opset 11)."""

    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        b.op("GlobalAveragePool", ["t_r"], "gap")
        b.op("Squeeze", ["gap"], "sq", axes=[2, 3])
        b.op("Gemm", ["sq", b.rand("se1.w", (4, 8)), b.rand("se1.b", (4,), scale=0.1)], "se1", transB=1)
        b.op("Relu", ["se1"], "se1_r")
        b.op("Gemm", ["se1_r", b.rand("se2.w", (8, 4)), b.rand("se2.b", (8,), scale=0.1)], "se2", transB=1)
        b.op("Sigmoid", ["se2"], "gate")
        b.op("Unsqueeze", ["gate"], "gate4", axes=[2, 3])
        return b.op("Mul", ["t_r", "gate4"], "m"), 8

    return _sandwich(11, mid)


@_pattern("prunable", "m")
def se_block() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        b.op("GlobalAveragePool", ["t_r"], "gap")
        b.conv("gap", 8, 4, "se1", k=1)
        b.op("Relu", ["se1"], "se1_r")
        b.conv("se1_r", 4, 8, "se2", k=1)
        b.op("HardSigmoid", ["se2"], "gate", alpha=1 / 6, beta=0.5)
        return b.op("Mul", ["t_r", "gate"], "m"), 8

    return _sandwich(17, mid)


@_pattern("prunable", "s2")
def residual_add_chain() -> onnx.ModelProto:
    """Three convs adding into one residual stream: all of it is one group."""
    b = _B(17)
    b.conv("x", 3, 8, "c0")
    b.op("Relu", ["c0"], "r0")
    b.conv("r0", 8, 8, "a1")
    b.op("Add", ["r0", "a1"], "s1")
    b.op("Relu", ["s1"], "s1_r")
    b.conv("s1_r", 8, 8, "a2")
    b.op("Add", ["s1", "a2"], "s2")
    b.op("Relu", ["s2"], "s2_r")
    b.conv("s2_r", 8, 8, "a3")
    b.op("Add", ["s2", "a3"], "s3")
    b.op("Relu", ["s3"], "s3_r")
    _tail(b, "s3_r", 8)
    return b.model(["y"])


# ======================================================================================= reductions
@_pattern("prunable", "rm")
def reduce_mean_spatial() -> onnx.ModelProto:
    b = _B(13)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("ReduceMean", ["t_r"], "rm", axes=[2, 3], keepdims=0)
    b.op("Gemm", ["rm", b.rand("g.w", (10, 8)), b.rand("g.b", (10,), scale=0.1)], "g", transB=1)
    b.op("Relu", ["g"], "g_r")
    b.op("Gemm", ["g_r", b.rand("y.w", (5, 10)), b.rand("y.b", (5,), scale=0.1)], "y", transB=1)
    return b.model(["y"])


@_pattern("prunable", "rm")
def reduce_mean_opset18() -> onnx.ModelProto:
    """ReduceMean with axes as a constant input (opset 18), keepdims=1, then a 1x1 conv."""

    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        b.op("ReduceMean", ["t_r", b.i64("rm.axes", [-1, 2])], "rm", keepdims=1)
        b.op("ReduceMax", ["t_r", b.i64("rx.axes", [2, 3])], "rx", keepdims=1)
        return b.op("Add", ["rm", "rx"], "rmx"), 8

    b = _B(18)
    _head(b)
    u, c = mid(b, "t")
    b.conv(u, c, 4, "y", k=1)
    return b.model(["y"])


@_pattern("prunable", "t_r")
def reduce_mean_channels() -> onnx.ModelProto:
    """A mean over the channels (decomposed LayerNorm/RMSNorm statistics): prunable, lossy (the mean is over
    fewer channels); `--no-hidden` freezes it."""

    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        b.op("ReduceMean", ["t_r"], "rm", axes=[1], keepdims=1)
        return b.op("Sub", ["t_r", "rm"], "centered"), 8

    return _sandwich(17, mid)


@_pattern("frozen", "t")
def softmax_channels() -> onnx.ModelProto:
    return _sandwich(13, lambda b, t: (b.op("Softmax", [t], "sm", axis=1), 8))


@_pattern("prunable", "sm")
def softmax_spatial() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Softmax", [t], "sm", axis=-1)
        return b.op("LogSoftmax", ["sm"], "lsm", axis=2), 8

    return _sandwich(13, mid)


@_pattern("prunable", "sm")
def softmax_opset11_last() -> onnx.ModelProto:
    """opset < 13 coerces to 2-D from `axis` on: axis 3 of NCHW mixes W only."""
    return _sandwich(11, lambda b, t: (b.op("Softmax", [t], "sm", axis=3), 8))


@_pattern("frozen", "t")
def softmax_opset11_axis1() -> onnx.ModelProto:
    """Softmax (opset 11) from axis 1 mixes C, H and W."""
    return _sandwich(11, lambda b, t: (b.op("Softmax", [t], "sm", axis=1), 8))


# ========================================================================================== routing
@_pattern("prunable", "cb")
def concat_offsets() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        b.conv("t_r", 8, 4, "ca")
        b.op("Relu", ["ca"], "ca_r")
        b.conv("t_r", 8, 6, "cb")
        b.op("Relu", ["cb"], "cb_r")
        return b.op("Concat", ["ca_r", "cb_r"], "cat", axis=1), 10

    return _sandwich(17, mid)


@_pattern("prunable", "t_r")
def concat_same_tensor_twice() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        return b.op("Concat", ["t_r", "t_r"], "cat", axis=-3), 16

    return _sandwich(17, mid)


@_pattern("prunable", "cat")
def concat_spatial() -> onnx.ModelProto:
    """Concat along H couples the channels of both inputs."""

    def mid(b: _B, t: str):
        b.conv(t, 8, 6, "ca")
        b.conv(t, 8, 6, "cb")
        return b.op("Concat", ["ca", "cb"], "cat", axis=2), 6

    return _sandwich(17, mid)


def _split_pattern(opset: int, sizes: tuple[int, int], make_split: Callable[[_B, str], None]) -> onnx.ModelProto:
    b = _B(opset)
    _head(b, cmid=sum(sizes))
    b.op("Relu", ["t"], "t_r")
    make_split(b, "t_r")
    b.conv("sa", sizes[0], 6, "ca")
    b.conv("sb", sizes[1], 6, "cb")
    b.op("Add", ["ca", "cb"], "s")
    b.op("Relu", ["s"], "s_r")
    _tail(b, "s_r", 6)
    return b.model(["y"])


@_pattern("prunable", "sb")
def split_opset11() -> onnx.ModelProto:
    return _split_pattern(11, (4, 6), lambda b, x: b.op("Split", [x], ["sa", "sb"], axis=1, split=[4, 6]))


@_pattern("prunable", "sb")
def split_opset13() -> onnx.ModelProto:
    return _split_pattern(13, (4, 6), lambda b, x: b.op("Split", [x, b.i64("split", [4, 6])], ["sa", "sb"], axis=1))


@_pattern("prunable", "sb")
def split_opset18_num_outputs() -> onnx.ModelProto:
    return _split_pattern(18, (4, 4), lambda b, x: b.op("Split", [x], ["sa", "sb"], axis=1, num_outputs=2))


@_pattern("prunable", "sb")
def split_opset11_equal() -> onnx.ModelProto:
    """Split without sizes (equal parts) and a negative axis."""
    return _split_pattern(11, (4, 4), lambda b, x: b.op("Split", [x], ["sa", "sb"], axis=-3))


@_pattern("prunable", "cat")
def split_concat_permute() -> onnx.ModelProto:
    """Split into three (one piece unused), concatenated back in another order."""

    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        b.op("Split", ["t_r", b.i64("split", [3, 5, 2])], ["sa", "sb", "sc"], axis=1)
        return b.op("Concat", ["sb", "sa"], "cat", axis=1), 8

    return _sandwich(13, mid, cmid=10)


@_pattern("prunable", "sl")
def slice_channels() -> onnx.ModelProto:
    """Slice of channels 2..-1 and rows 1..7 with constant starts/ends/axes (step 1)."""

    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        return b.op("Slice", ["t_r", b.i64("sl.starts", [2, 1]), b.i64("sl.ends", [-1, 7]), b.i64("sl.axes", [1, 2])],
                    "sl"), 7

    return _sandwich(13, mid, cmid=10)


@_pattern("prunable", "sl")
def slice_opset9() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        return b.op("Slice", ["t_r"], "sl", starts=[2], ends=[8], axes=[1]), 6

    return _sandwich(9, mid, cmid=10)


@_pattern("prunable", "t_r")
def slice_overlap() -> onnx.ModelProto:
    """Two overlapping channel slices (int32 constants, huge end, negative axis)."""

    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        b.op("Slice", ["t_r", b.const("s1.st", [0], np.int32), b.const("s1.en", [6], np.int32),
                       b.const("s1.ax", [-3], np.int32)], "sl1")
        b.op("Slice", ["t_r", b.i64("s2.st", [4]), b.i64("s2.en", [2**62]), b.i64("s2.ax", [1]),
                       b.i64("s2.steps", [1])], "sl2")
        b.conv("sl1", 6, 5, "ca")
        b.conv("sl2", 6, 5, "cb")
        return b.op("Add", ["ca", "cb"], "s"), 5

    return _sandwich(13, mid, cmid=10)


@_pattern("frozen", "t")
def slice_step2() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        return b.op("Slice", [t, b.i64("sl.starts", [0]), b.i64("sl.ends", [8]), b.i64("sl.axes", [1]),
                              b.i64("sl.steps", [2])], "sl"), 4

    return _sandwich(13, mid)


@_pattern("prunable", "pd")
def pad_spatial() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        return b.op("Pad", [t, b.i64("pads", [0, 0, 1, 2, 0, 0, 1, 0]), b.f32("pad_v", 0.0)], "pd"), 8

    return _sandwich(13, mid)


@_pattern("prunable", "pd")
def pad_opset11_reflect() -> onnx.ModelProto:
    return _sandwich(11, lambda b, t: (b.op("Pad", [t, b.i64("pads", [0, 0, 1, 1, 0, 0, 1, 1])], "pd",
                                            mode="reflect"), 8))


@_pattern("prunable", "pd")
def pad_opset18_axes() -> onnx.ModelProto:
    return _sandwich(18, lambda b, t: (b.op("Pad", [t, b.i64("pads", [1, 1, 2, 0]), "", b.i64("pad_axes", [2, -1])],
                                            "pd", mode="edge"), 8))


@_pattern("frozen", "t")
def pad_channels() -> onnx.ModelProto:
    return _sandwich(13, lambda b, t: (b.op("Pad", [t, b.i64("pads", [0, 1, 0, 0, 0, 1, 0, 0])], "pd"), 10))


@_pattern("prunable", "rz")
def resize_scales() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        return b.op("Resize", [t, "", b.f32("scales", [1, 1, 2, 2])], "rz", mode="nearest"), 8

    return _sandwich(13, mid)


@_pattern("prunable", "rz")
def resize_sizes() -> onnx.ModelProto:
    """Resize (opset 18) with a constant `sizes` that includes the channel count (axes attribute)."""

    def mid(b: _B, t: str):
        return b.op("Resize", [t, "", "", b.i64("sizes", [8, 12, 12])], "rz", mode="linear", axes=[1, 2, 3]), 8

    return _sandwich(18, mid)


@_pattern("prunable", "rz")
def upsample_opset9() -> onnx.ModelProto:
    return _sandwich(9, lambda b, t: (b.op("Upsample", [t, b.f32("scales", [1, 1, 2, 2])], "rz", mode="nearest"), 8))


@_pattern("prunable", "rz")
def upsample_opset7() -> onnx.ModelProto:
    return _sandwich(7, lambda b, t: (b.op("Upsample", [t], "rz", mode="nearest", scales=[1.0, 1.0, 2.0, 2.0]), 8))


@_pattern("prunable", "a")
def expand_per_channel() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("Expand", [b.rand("pc", (1, 8, 1, 1)), b.i64("ex.shape", [1, 8, H, W])], "ex")
        b.op("Add", [t, "ex"], "a")
        return b.op("Relu", ["a"], "a_r"), 8

    return _sandwich(13, mid)


@_pattern("prunable", "tl")
def tile_spatial() -> onnx.ModelProto:
    return _sandwich(13, lambda b, t: (b.op("Tile", [t, b.i64("reps", [1, 1, 2, 1])], "tl"), 8))


# ============================================================================== frozen by design
@_pattern("prunable", "t")
def channel_shuffle() -> onnx.ModelProto:
    """Reshape (N,C,H,W)->(N,g,C/g,H,W), Transpose, Reshape back: spa follows the inner axis, so the same
    positions are removed from every shuffle group (exact)."""
    def mid(b: _B, t: str):
        b.op("Reshape", [t, b.i64("sh1", [0, 2, 4, H, W])], "g5")
        b.op("Transpose", ["g5"], "g5t", perm=[0, 2, 1, 3, 4])
        return b.op("Reshape", ["g5t", b.i64("sh2", [0, 8, H, W])], "shuf"), 8

    return _sandwich(13, mid)


@_pattern("frozen", "t")
def maxpool_with_indices() -> onnx.ModelProto:
    def mid(b: _B, t: str):
        b.op("MaxPool", [t], ["mp", "mp_idx"], kernel_shape=[2, 2], strides=[2, 2])
        b.op("Cast", ["mp_idx"], "mp_idxf", to=TensorProto.FLOAT)
        b.op("Mul", ["mp_idxf", b.f32("tiny", 1e-3)], "mp_idxs")
        return b.op("Add", ["mp", "mp_idxs"], "a"), 8

    return _sandwich(13, mid)


@_pattern("frozen", "t")
def unknown_op() -> onnx.ModelProto:
    """An onnxruntime contrib op (domain com.microsoft) that spa has no rule for."""

    def mid(b: _B, t: str):
        b.domains["com.microsoft"] = 1
        b.vinfo("cg", ["N", 8, H, W])
        return b.op("Gelu", [t], "cg", domain="com.microsoft"), 8

    return _sandwich(17, mid)


@_pattern("frozen", "t")
def einsum_channels() -> onnx.ModelProto:
    """Einsum (no rule) mixing channels with a weight."""

    def mid(b: _B, t: str):
        return b.op("Einsum", [t, b.rand("es.w", (6, 8))], "es", equation="nchw,dc->ndhw"), 6

    return _sandwich(13, mid)


@_pattern("frozen", "t")
def gather_channels() -> onnx.ModelProto:
    return _sandwich(13, lambda b, t: (b.op("Gather", [t, b.i64("gidx", [0, 2, 4, 6])], "ga", axis=1), 4))


@_pattern("frozen", "t")
def depth_to_space() -> onnx.ModelProto:
    return _sandwich(13, lambda b, t: (b.op("DepthToSpace", [t], "d2s", blocksize=2, mode="CRD"), 2))


@_pattern("frozen", "t_r")
def if_subgraph() -> onnx.ModelProto:
    """An If whose branches read the outer tensor t_r implicitly."""

    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        then_g = helper.make_graph(
            [helper.make_node("Sigmoid", ["t_r"], ["then_out"], name="then_sig")], "then", [],
            [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, ["N", 8, H, W])])
        else_g = helper.make_graph(
            [helper.make_node("Tanh", ["t_r"], ["else_out"], name="else_tanh")], "else", [],
            [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, ["N", 8, H, W])])
        b.const("cond", np.array(True))
        return b.op("If", ["cond"], "iff", then_branch=then_g, else_branch=else_g), 8

    return _sandwich(17, mid)


@_pattern("frozen", "t")
def shape_used_as_data() -> onnx.ModelProto:
    """Shape(t)[1] -> ConstantOfShape: the channel count is used as a value."""

    def mid(b: _B, t: str):
        b.op("Shape", [t], "shp")
        b.op("Gather", ["shp", b.i64("i1", 1)], "cdim", axis=0)
        b.op("Unsqueeze", ["cdim", b.i64("ax0", [0])], "cdim1")
        b.op("ConstantOfShape", ["cdim1"], "cos", value=numpy_helper.from_array(np.array([0.5], np.float32)))
        b.op("Unsqueeze", ["cos", b.i64("ax12", [1, 2])], "cos3")
        return b.op("Add", [t, "cos3"], "a"), 8

    return _sandwich(13, mid)


@_pattern("frozen", "t")
def shape_used_range() -> onnx.ModelProto:
    """Shape(t)[1] -> Range -> a per-channel ramp added to t."""

    def mid(b: _B, t: str):
        b.op("Shape", [t], "shp")
        b.op("Gather", ["shp", b.i64("i1", 1)], "cdim", axis=0)
        b.op("Range", [b.i64("rg_start", 0), "cdim", b.i64("rg_delta", 1)], "ramp")
        b.op("Cast", ["ramp"], "rampf", to=TensorProto.FLOAT)
        b.op("Unsqueeze", ["rampf", b.i64("ax12", [1, 2])], "ramp3")
        return b.op("Add", [t, "ramp3"], "a"), 8

    return _sandwich(13, mid)


@_pattern("prunable", "t")
def shape_scalar_divide() -> onnx.ModelProto:
    """t / C with C = Shape(t)[1] read as a value (mean over channels written by hand). Since spa folds shape arithmetic: C folds to a constant from the static shape; the pruned model keeps dividing by the original C (exact)."""

    def mid(b: _B, t: str):
        b.op("Shape", [t], "shp")
        b.op("Gather", ["shp", b.i64("i1", 1)], "cdim", axis=0)
        b.op("Cast", ["cdim"], "cdimf", to=TensorProto.FLOAT)
        return b.op("Div", [t, "cdimf"], "d"), 8

    return _sandwich(13, mid)


@_pattern("prunable", "t")
def shape_start_negative() -> onnx.ModelProto:
    """Shape(t, start=-3) = [C, H, W] (opset 15); its element 0 (the channel count) is used as a value. Since spa folds shape arithmetic: the channel count folds to a constant, written as the original value (exact)."""

    def mid(b: _B, t: str):
        b.op("Shape", [t], "shp", start=-3)
        b.op("Gather", ["shp", b.i64("i0", 0)], "cdim", axis=0)
        b.op("Cast", ["cdim"], "cdimf", to=TensorProto.FLOAT)
        return b.op("Div", [t, "cdimf"], "d"), 8

    return _sandwich(15, mid)


@_pattern("prunable", "t")
def reshape_zero_copy_shifted() -> onnx.ModelProto:
    """Reshape (N, C, L) -> (N, 1, C, L) with target [0, 1, 0, L]: the 0 at position 2 copies input dim 2
    (L), which equals C only by coincidence (C == L == 8)."""
    b = _B(13)
    b.conv("x", 3, 8, "c0", dims=1)
    b.op("Relu", ["c0"], "r0")
    b.conv("r0", 8, 8, "t", dims=1)
    b.op("Reshape", ["t", b.i64("rs.shape", [0, 1, 0, 8])], "rs")
    b.op("Relu", ["rs"], "rs_r")
    b.op("Squeeze", ["rs_r", b.i64("sq.axes", [1])], "sq")
    b.conv("sq", 8, 4, "y", dims=1)
    return b.model(["y"], inputs=[("x", ["N", 3, 8])])


@_pattern("prunable", "t_r")
def multi_output() -> onnx.ModelProto:
    """Two graph outputs (y0 dense, y1 pooled) fed by the same stream."""
    b = _B(17)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.conv("t_r", 8, 4, "y0")
    b.op("GlobalAveragePool", ["t_r"], "gap")
    b.conv("gap", 8, 3, "y1", k=1)
    return b.model(["y0", "y1"])


@_pattern("prunable", "t_r")
def slice_dynamic_ends() -> onnx.ModelProto:
    """A crop whose end comes from another tensor's Shape (x[:, :, :other.size(2) - 1]): not constant. Since spa folds shape arithmetic: the end folds to a constant from static shapes and is rewritten with the kept channels."""

    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        b.op("Shape", ["t_r"], "shp")
        b.op("Gather", ["shp", b.i64("i2", [2])], "hdim", axis=0)
        b.op("Sub", ["hdim", b.i64("one", [1])], "hend")
        return b.op("Slice", ["t_r", b.i64("st", [0]), "hend", b.i64("ax", [2])], "sl"), 8

    return _sandwich(13, mid)


@_pattern("frozen", "t")
def expand_dynamic_shape() -> onnx.ModelProto:
    """p.expand_as(t): Expand to Shape(t), a computed shape."""

    def mid(b: _B, t: str):
        b.op("Shape", [t], "shp")
        b.op("Expand", [b.rand("pc", (1, 8, 1, 1)), "shp"], "ex")
        return b.op("Add", [t, "ex"], "a"), 8

    return _sandwich(13, mid)


@_pattern("prunable", "t_r")
def reshape_shared_target() -> onnx.ModelProto:
    """Two independent branches flattened by Reshapes that share one constant target initializer."""
    b = _B(13)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.conv("r0", 8, 8, "u")
    b.op("Relu", ["u"], "u_r")
    tgt = b.i64("flat", [-1, 8 * 16])
    for src in ("t_r", "u_r"):
        b.op("MaxPool", [src], f"{src}_mp", kernel_shape=[2, 2], strides=[2, 2])
        b.op("Reshape", [f"{src}_mp", tgt], f"{src}_flat")
        b.op("MatMul", [f"{src}_flat", b.rand(f"{src}.w", (8 * 16, 5), fan_in=128)], f"{src}_mm")
    b.op("Add", ["t_r_mm", "u_r_mm"], "y")
    return b.model(["y"])


@_pattern("prunable", "t_r")
def slice_shared_consts() -> onnx.ModelProto:
    """Two channel slices of different tensors sharing their starts/ends/axes initializers."""
    b = _B(13)
    _head(b, cmid=10)
    b.op("Relu", ["t"], "t_r")
    b.conv("r0", 8, 10, "u")
    b.op("Relu", ["u"], "u_r")
    st, en, ax = b.i64("st", [1]), b.i64("en", [7]), b.i64("ax", [1])
    b.op("Slice", ["t_r", st, en, ax], "t_sl")
    b.op("Slice", ["u_r", st, en, ax], "u_sl")
    b.op("Concat", ["t_sl", "u_sl"], "cat", axis=1)
    _tail(b, "cat", 12)
    return b.model(["y"])


@_pattern("frozen", "t")
def channel_attention_softmax() -> onnx.ModelProto:
    """DANet-style channel attention: softmax(Q Qᵀ) Q, a C x C map normalised over channels."""

    def mid(b: _B, t: str):
        b.op("Reshape", [t, b.i64("flat", [0, 8, -1])], "q")
        b.op("Transpose", ["q"], "qT", perm=[0, 2, 1])
        b.op("MatMul", ["q", "qT"], "gram")
        b.op("Softmax", ["gram"], "att", axis=-1)
        b.op("MatMul", ["att", "q"], "ctx")
        b.op("Reshape", ["ctx", b.i64("unflat", [0, 8, H, W])], "ctx4")
        return b.op("Add", [t, "ctx4"], "a"), 8

    return _sandwich(13, mid)


@_pattern("prunable", "t")
def channel_gram_linear() -> onnx.ModelProto:
    """(Q Qᵀ) Q without a softmax: both MatMul operands are activations carrying the same channels."""

    def mid(b: _B, t: str):
        b.op("Reshape", [t, b.i64("flat", [0, 8, -1])], "q")
        b.op("Transpose", ["q"], "qT", perm=[0, 2, 1])
        b.op("MatMul", ["q", "qT"], "gram")
        b.op("Mul", ["gram", b.f32("gscale", 0.01)], "gram_s")
        b.op("MatMul", ["gram_s", "q"], "ctx")
        b.op("Reshape", ["ctx", b.i64("unflat", [0, 8, H, W])], "ctx4")
        return b.op("Add", [t, "ctx4"], "a"), 8

    return _sandwich(13, mid)


@_pattern("prunable", "th")
def nonlocal_block() -> onnx.ModelProto:
    """Non-local block: softmax over positions of θᵀφ, the θ/φ channels are contracted away (prunable)."""

    def mid(b: _B, t: str):
        b.op("Relu", [t], "t_r")
        b.conv("t_r", 8, 4, "th", k=1)
        b.conv("t_r", 8, 4, "ph", k=1)
        b.conv("t_r", 8, 6, "g", k=1)
        b.op("Reshape", ["th", b.i64("f4", [0, 4, -1])], "th_f")
        b.op("Transpose", ["th_f"], "th_t", perm=[0, 2, 1])
        b.op("Reshape", ["ph", b.i64("f4b", [0, 4, -1])], "ph_f")
        b.op("MatMul", ["th_t", "ph_f"], "aff")
        b.op("Softmax", ["aff"], "aff_s", axis=-1)
        b.op("Reshape", ["g", b.i64("f6", [0, 6, -1])], "g_f")
        b.op("Transpose", ["g_f"], "g_t", perm=[0, 2, 1])
        b.op("MatMul", ["aff_s", "g_t"], "o")
        b.op("Transpose", ["o"], "o_t", perm=[0, 2, 1])
        b.op("Reshape", ["o_t", b.i64("u6", [0, 6, H, W])], "o4")
        b.conv("o4", 6, 8, "wz", k=1)
        return b.op("Add", ["t_r", "wz"], "z"), 8

    return _sandwich(13, mid)


# ============================================================================ rewriting edge cases
@_pattern("prunable", "t_r")
def ir3_shared_reshape_target() -> onnx.ModelProto:
    """IR version 3 (initializers listed as graph inputs) with a Reshape target shared by two branches, so the
    rewrite has to create a new initializer."""
    b = _B(8, ir_version=3)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.conv("r0", 8, 8, "u")
    b.op("Relu", ["u"], "u_r")
    tgt = b.i64("flat", [-1, 8 * H * W])
    for src in ("t_r", "u_r"):
        b.op("Reshape", [src, tgt], f"{src}_flat")
        b.op("MatMul", [f"{src}_flat", b.rand(f"{src}.w", (8 * H * W, 5), fan_in=8 * H * W)], f"{src}_mm")
    b.op("Add", ["t_r_mm", "u_r_mm"], "y")
    return b.model(["y"], inits_as_inputs=True)


def _after_unknown_shape(opset: int, op: Callable[[_B, str], tuple[str, int]]) -> onnx.ModelProto:
    """t -> com.microsoft Gelu (no shape annotation: onnx cannot infer its output) -> op -> conv."""
    b = _B(opset)
    _head(b)
    b.domains["com.microsoft"] = 1
    b.op("Gelu", ["t"], "cg", domain="com.microsoft")
    u, c = op(b, "cg")
    _tail(b, u, c)
    return b.model(["y"])


@_pattern("frozen", "t")
def unknown_shape_then_split() -> onnx.ModelProto:
    def op(b: _B, x: str):
        b.op("Split", [x, b.i64("split", [4, 4])], ["sa", "sb"], axis=1)
        return b.op("Add", ["sa", "sb"], "s"), 4

    return _after_unknown_shape(13, op)


@_pattern("frozen", "t")
def unknown_shape_then_expand() -> onnx.ModelProto:
    return _after_unknown_shape(13, lambda b, x: (b.op("Expand", [x, b.i64("ex.shape", [1, 8, H, W])], "ex"), 8))


@_pattern("frozen", "t")
def unknown_shape_then_resize_sizes() -> onnx.ModelProto:
    return _after_unknown_shape(18, lambda b, x: (b.op("Resize", [x, "", "", b.i64("sizes", [8, 12, 12])], "rz",
                                                      mode="nearest", axes=[1, 2, 3]), 8))


@_pattern("prunable", "r0")
def unknown_shape_then_slice_pad() -> onnx.ModelProto:
    """Slice, Pad and Resize-with-scales after an op of unknown output shape: frozen there, but they must not
    get in the way of pruning elsewhere (the probe is the prunable c0 -> c1 group)."""

    def op(b: _B, x: str):
        b.op("Slice", [x, b.i64("st", [0]), b.i64("en", [6]), b.i64("ax", [1])], "sl")
        b.op("Pad", ["sl", b.i64("pads", [0, 0, 1, 1, 0, 0, 1, 1])], "pd")
        return b.op("Resize", ["pd", "", b.f32("scales", [1, 1, 2, 2])], "rz", mode="nearest"), 6

    return _after_unknown_shape(13, op)


@_pattern("frozen", "u")
def if_outer_weight() -> onnx.ModelProto:
    """An If branch runs a Conv with a main-graph weight (u.w) on a main-graph tensor."""
    b = _B(17)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.conv("t_r", 8, 8, "u")
    b.op("Relu", ["u"], "u_r")
    then_g = helper.make_graph(
        [helper.make_node("Conv", ["u_r", "u.w"], ["then_out"], pads=[1, 1, 1, 1], name="then_conv")], "then", [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, ["N", 8, H, W])])
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["u_r"], ["else_out"], name="else_id")], "else", [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, ["N", 8, H, W])])
    b.const("cond", np.array(True))
    b.op("If", ["cond"], "iff", then_branch=then_g, else_branch=else_g)
    _tail(b, "iff", 8)
    return b.model(["y"])


@_pattern("frozen", "t_r")
def loop_outer() -> onnx.ModelProto:
    """A Loop body that reads an outer tensor implicitly."""
    b = _B(13)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_id"),
         helper.make_node("Add", ["acc_in", "t_r"], ["acc_out"], name="body_add")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, ["N", 8, H, W])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, ["N", 8, H, W])])
    b.const("trip", np.array(2, np.int64))
    b.const("cnd", np.array(True))
    b.op("Loop", ["trip", "cnd", "t_r"], "lp", body=body)
    _tail(b, "lp", 8)
    return b.model(["y"])


@_pattern("prunable", "t_r")
def concat_graph_input() -> onnx.ModelProto:
    """Concat of the (frozen) graph input with a conv branch: the branch stays prunable."""
    b = _B(17)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("Concat", ["x", "t_r"], "cat", axis=1)
    _tail(b, "cat", 11)
    return b.model(["y"])


@_pattern("frozen", "lo_r")
def resize_to_other_size() -> onnx.ModelProto:
    """F.interpolate(lo, size=t.shape[2:]): sizes = Concat(Shape(lo)[:2], Shape(t)[2:]) is computed, and carries
    lo's channel count as a value."""
    b = _B(13)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.conv("x", 3, 6, "lo", stride=2)
    b.op("Relu", ["lo"], "lo_r")
    b.op("Shape", ["lo_r"], "lo_shp")
    b.op("Slice", ["lo_shp", b.i64("s0", [0]), b.i64("s2", [2])], "lo_nc")
    b.op("Shape", ["t_r"], "t_shp")
    b.op("Slice", ["t_shp", b.i64("s2b", [2]), b.i64("s4", [4])], "t_hw")
    b.op("Concat", ["lo_nc", "t_hw"], "sizes", axis=0)
    b.op("Resize", ["lo_r", "", "", "sizes"], "up", mode="nearest")
    b.vinfo("up", ["N", 6, H, W])
    b.op("Concat", ["t_r", "up"], "cat", axis=1)
    _tail(b, "cat", 14)
    return b.model(["y"])


@_pattern("prunable", "g")
def gemm_transA() -> onnx.ModelProto:
    """Gemm with transA=1 on a transposed activation (features on axis 0)."""
    b = _B(13)
    f = _gap_flatten(b, _head(b))
    b.op("Transpose", [f], "fT", perm=[1, 0])
    b.op("Gemm", ["fT", b.rand("g.w", (10, 8)), b.rand("g.b", (10,), scale=0.1)], "g", transA=1, transB=1)
    b.op("Relu", ["g"], "g_r")
    b.op("Gemm", ["g_r", b.rand("y.w", (5, 10)), b.rand("y.b", (5,), scale=0.1)], "y", transB=1)
    return b.model(["y"])


# ============================================================================== dtypes and quantization
@_pattern("prunable", "t")
def qdq_conv() -> onnx.ModelProto:
    """QDQ (as quantization tools emit): an int8 weight with per-channel scales and zero points along axis 0,
    DequantizeLinear → Conv, activations through a per-tensor QuantizeLinear → DequantizeLinear pair."""
    b = _B(13)
    t = _head(b)
    b.op("Relu", [t], "t_r")
    b.op("QuantizeLinear", ["t_r", b.f32("a.s", 0.05), b.const("a.z", np.uint8(128))], "t_q")
    b.op("DequantizeLinear", ["t_q", "a.s", "a.z"], "t_dq")
    w = (b.rng.standard_normal((4, 8, 3, 3)) * 40).clip(-127, 127).astype(np.int8)
    b.const("qw", w)
    b.op("DequantizeLinear", ["qw", b.f32("qw.s", np.abs(b.rng.standard_normal(4)) * 0.01 + 0.005),
                              b.const("qw.z", np.zeros(4, np.int8))], "w_dq", axis=0)
    b.op("Conv", ["t_dq", "w_dq", b.rand("y.b", (4,), scale=0.1)], "y", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return b.model(["y"])


@_pattern("prunable", "t")
def qlinear_conv() -> onnx.ModelProto:
    """A fused integer QLinearConv (QOperator form) consumes the channels: its int8 weight's input columns are
    sliced with them (per-tensor weight scale and zero point, kept as they are)."""
    b = _B(13)
    t = _head(b)
    b.op("QuantizeLinear", [t, b.f32("a.s", 0.05), b.const("a.z", np.uint8(128))], "t_q")
    w = (b.rng.standard_normal((4, 8, 3, 3)) * 40).clip(-127, 127).astype(np.int8)
    b.const("qw", w)
    b.op("QLinearConv", ["t_q", "a.s", "a.z", "qw", b.f32("qw.s", 0.01), b.const("qw.z", np.int8(0)),
                         b.f32("o.s", 0.05), b.const("o.z", np.uint8(128))], "o_q", kernel_shape=[3, 3],
         pads=[1, 1, 1, 1])
    b.op("DequantizeLinear", ["o_q", "o.s", "o.z"], "y")
    return b.model(["y"])


@_pattern("prunable", "bn")
def fp16_conv_bn() -> onnx.ModelProto:
    """Everything in float16: weights, BatchNorm parameters, graph input and output."""
    m = conv_bn_relu()
    g = m.graph
    for i, t in enumerate(g.initializer):
        if t.data_type == TensorProto.FLOAT:
            g.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for v in list(g.input) + list(g.output) + list(g.value_info):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.FLOAT16
    return m


@_pattern("frozen", "t")
def if_outer_scope() -> onnx.ModelProto:
    """An If whose branches read the conv output "t" from the outer scope (no explicit input), as Silero VAD's
    LSTM decoder does: spa does not follow body graphs, so "t" and the If output freeze with that reason."""
    b = _B(15)
    t = _head(b)
    then_g = helper.make_graph([helper.make_node("Relu", [t], ["then_y"])], "then", [],
                               [helper.make_tensor_value_info("then_y", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Neg", [t], ["else_y"])], "else", [],
                               [helper.make_tensor_value_info("else_y", TensorProto.FLOAT, None)])
    b.op("ReduceMin", ["x"], "xmin", keepdims=0)
    b.op("Greater", ["xmin", b.f32("if.thr", -100.0)], "cond")
    b.op("If", ["cond"], "t_if", then_branch=then_g, else_branch=else_g)
    _tail(b, "t_if", 8)
    return b.model(["y"])


# ========================================================================= many-to-many reshape blocks
@_pattern("prunable", "nhwc", 3)
def reshape_space_to_depth_last_axis() -> onnx.ModelProto:
    """Magika-style: (N, P, C) -> (N, P/4, 4*C) merges 4 positions with the channels: the channel is the inner
    factor of the new last axis (feature f ↔ channel f % C)."""
    b = _B(13)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("Transpose", ["t_r"], "nhwc", perm=[0, 2, 3, 1])
    b.op("Reshape", ["nhwc", b.i64("rs1.shape", [0, H * W, 8])], "pc")
    b.op("Reshape", ["pc", b.i64("rs2.shape", [0, H * W // 4, 32])], "pc4")
    b.op("MatMul", ["pc4", b.rand("s2d.w", (32, 6), fan_in=32)], "y")
    return b.model(["y"])


@_pattern("prunable", "mm", 2)
def reshape_depth_to_space_last_axis() -> onnx.ModelProto:
    """The reverse: (N, P, 32) -> (N, 4P, 8): feature c of the 32 lands on channel c % 8, so channels
    {j, j+8, j+16, j+24} of the first MatMul are one unit."""
    b = _B(13)
    _head(b)
    b.op("Relu", ["t"], "t_r")
    b.op("Transpose", ["t_r"], "nhwc", perm=[0, 2, 3, 1])
    b.op("Reshape", ["nhwc", b.i64("rs1.shape", [0, H * W, 8])], "pc")
    b.op("MatMul", ["pc", b.rand("d2s.w1", (8, 32), fan_in=8)], "mm")
    b.op("Relu", ["mm"], "mm_r")
    b.op("Reshape", ["mm_r", b.i64("rs2.shape", [0, H * W * 4, 8])], "sp")
    b.op("MatMul", ["sp", b.rand("d2s.w2", (8, 5), fan_in=8)], "y")
    return b.model(["y"])


# ================================================================ grouped convs by in-group positions
def _kill_positions(m: onnx.ModelProto, producers: list[str], consumers: list[str], groups: int,
                    positions: list[int]) -> None:
    """Make the channels at in-group `positions` of every one of `groups` blocks dead: the `producers`' (convs)
    weight rows and biases, and the `consumers`' input columns, all zero (a grouped consumer's columns are its
    in-group positions)."""
    inits = {t.name: t for t in m.graph.initializer}

    def edit(name: str, axis: int, idx: np.ndarray) -> None:
        a = numpy_helper.to_array(inits[name]).copy()
        sl = [slice(None)] * a.ndim
        sl[axis] = idx
        a[tuple(sl)] = 0
        inits[name].CopyFrom(numpy_helper.from_array(a, name))

    width = numpy_helper.to_array(inits[f"{producers[0]}.w"]).shape[0]
    dead = np.array([k * (width // groups) + p for k in range(groups) for p in positions])
    for c in producers:
        edit(f"{c}.w", 0, dead)
        if f"{c}.b" in inits:
            edit(f"{c}.b", 0, dead)
    for c in consumers:
        w = numpy_helper.to_array(inits[f"{c}.w"])
        edit(f"{c}.w", 1, dead if w.shape[1] == width else np.array(positions))


@_pattern("prunable", "g")
def grouped_conv_dead_positions() -> onnx.ModelProto:
    """c0 (3->16) -> g (group=4, 16->16) -> c2: the channels at in-group position 1 are dead in every group of
    g's input and output (weights, biases and consumer columns zero). Only the in-group positions mode can remove
    exactly them: a whole group holds three live channels."""
    b = _B(17)
    b.conv("x", 3, 16, "c0")
    b.op("Relu", ["c0"], "r0")
    b.conv("r0", 16, 16, "g", group=4)
    b.op("Relu", ["g"], "g_r")
    b.conv("g_r", 16, 4, "y")
    m = b.model(["y"])
    _kill_positions(m, ["c0"], ["g"], 4, [1])
    _kill_positions(m, ["g"], ["y"], 4, [1])
    return m


@_pattern("prunable", "g")
def grouped_conv_residual() -> onnx.ModelProto:
    """c0 (3->16) -> g (group=4, 16->16) -> + c0 -> c2: the residual add ties g's output positions to its input
    positions (the same in-group positions of c0's channels); position 2 is dead in c0, g and the consumers."""
    b = _B(17)
    b.conv("x", 3, 16, "c0")
    b.op("Relu", ["c0"], "r0")
    b.conv("r0", 16, 16, "g", group=4)
    b.op("Add", ["g", "r0"], "s")
    b.op("Relu", ["s"], "s_r")
    b.conv("s_r", 16, 4, "y")
    m = b.model(["y"])
    _kill_positions(m, ["c0", "g"], ["g", "y"], 4, [2])
    return m


@_pattern("prunable", "g")
def grouped_conv_concat() -> onnx.ModelProto:
    """Concat(a (3->8), b (3->8)) -> g (group=4, 16->8) -> c2: an in-group position of g's input spans both
    concat inputs (channels p, 4+p of a, 8+p, 12+p of b)."""
    b = _B(17)
    b.conv("x", 3, 8, "a")
    b.conv("x", 3, 8, "bb")
    b.op("Concat", ["a", "bb"], "cat", axis=1)
    b.op("Relu", ["cat"], "cat_r")
    b.conv("cat_r", 16, 8, "g", group=4)
    b.op("Relu", ["g"], "g_r")
    b.conv("g_r", 8, 4, "y")
    return b.model(["y"])


# ===================================================== quantized by onnxruntime.quantization (QDQ, QOperator)
def _ort_quantized(base: Callable[[], onnx.ModelProto], fmt: str) -> onnx.ModelProto:
    """`base` quantized as deployment pipelines do (models.quantized: per-channel int8 weights)."""
    from models.quantized import quantize

    return quantize(base(), fmt, per_channel=True)


@_pattern("prunable", "s2")
def qdq_residual_add_chain() -> onnx.ModelProto:
    """quantize_static QDQ: int8 weights -> DequantizeLinear -> Conv, activations through Q/DQ, residual adds."""
    return _ort_quantized(residual_add_chain, "qdq")


@_pattern("prunable", "g4_r")
def qdq_grouped_conv() -> onnx.ModelProto:
    """QDQ grouped convs: per-channel weight scales follow the in-group positions."""
    return _ort_quantized(grouped_conv, "qdq")


@_pattern("prunable", "cb_quantized")
def qoperator_concat() -> onnx.ModelProto:
    """QOperator: QLinearConv into com.microsoft QLinearConcat."""
    return _ort_quantized(concat_offsets, "qoperator")


@_pattern("prunable", "m_quantized")
def qoperator_se_block() -> onnx.ModelProto:
    """QOperator SE block: QLinearGlobalAveragePool, QLinearConv, a float HardSigmoid between DQ/Q, QLinearMul."""
    return _ort_quantized(se_block, "qoperator")


@_pattern("prunable", "mm_b_quantized")
def qoperator_qgemm() -> onnx.ModelProto:
    """QOperator: Flatten into two com.microsoft QGemm (int32 bias, per-channel weight scales)."""
    return _ort_quantized(matmul_init_right, "qoperator")


@_pattern("prunable", "g1")
def dynamic_matmul_integer() -> onnx.ModelProto:
    """quantize_dynamic: DynamicQuantizeLinear -> ConvInteger / MatMulInteger -> Cast -> Mul(scales) -> Add(bias)."""
    return _ort_quantized(two_gemms, "dynamic")


@_pattern("prunable", "q")
def qdq_int32_bias() -> onnx.ModelProto:
    """QDQ with an int32 bias (scale = x_scale · w_scale, per channel) and a uint8 weight with a shared zero
    point 3: removed channels' codes must be made inert with 3, not 0 (a Sigmoid before it: zeroed input
    channels are 0.5, so the zero-group oracle sees a wrong code)."""
    b = _B(13)
    t = _head(b)
    b.op("Sigmoid", [t], "t_r")
    b.op("QuantizeLinear", ["t_r", b.f32("a.s", 0.05), b.const("a.z", np.uint8(128))], "t_q")
    b.op("DequantizeLinear", ["t_q", "a.s", "a.z"], "t_dq")
    ws = np.abs(b.rng.standard_normal(8)).astype(np.float32) * 0.01 + 0.005
    b.const("qw", b.rng.integers(0, 256, (8, 8, 3, 3)).astype(np.uint8))
    b.op("DequantizeLinear", ["qw", b.f32("qw.s", ws), b.const("qw.z", np.full(8, 3, np.uint8))], "w_dq", axis=0)
    b.const("qb", b.rng.integers(-500, 500, 8).astype(np.int32))
    b.op("DequantizeLinear", ["qb", b.f32("qb.s", ws * 0.05)], "b_dq", axis=0)
    b.op("Conv", ["t_dq", "w_dq", "b_dq"], "q", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.op("Relu", ["q"], "q_r")
    _tail(b, "q_r", 8)
    return b.model(["y"])


@_pattern("prunable", "q")
def qdq_fake_quant_weight() -> onnx.ModelProto:
    """Fake quantization (QAT exports): a float weight -> QuantizeLinear -> DequantizeLinear -> Conv, per-channel
    scales along axis 0: the float weight is scored and sliced with its scales."""
    b = _B(13)
    t = _head(b)
    b.op("Relu", [t], "t_r")
    b.rand("fw", (8, 8, 3, 3))
    scales = b.f32("fw.s", np.abs(b.rng.standard_normal(8)) * 0.01 + 0.005)
    b.op("QuantizeLinear", ["fw", scales, b.const("fw.z", np.zeros(8, np.int8))], "fw_q", axis=0)
    b.op("DequantizeLinear", ["fw_q", scales, "fw.z"], "fw_dq", axis=0)
    b.op("Conv", ["t_r", "fw_dq", b.rand("q.b", (8,), scale=0.1)], "q", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.op("Relu", ["q"], "q_r")
    _tail(b, "q_r", 8)
    return b.model(["y"])
