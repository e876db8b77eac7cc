"""What a channel rule is, and the two contexts a rule is handed.

A *slot* is one axis of one tensor: `(tensor_name, axis)`. Every index along a slot is an *atom*. A rule
describes, for one node, which atoms of its inputs and outputs are the same channel (`link`), which slots it
cannot follow (`freeze`, with a reason) and which it reads without caring about their values (`free`, e.g.
`Shape`). Any axis of size > 1 of the node's inputs and outputs that the rule leaves unmentioned is frozen
by the analyser: a rule that forgets an axis fails closed, never wrong.

The same rule object also rewrites its node after a plan is chosen (`rewrite`): attributes and shape
constants that count channels (Conv `group`, Split sizes, Slice starts/ends, Reshape targets, Resize sizes).
Slicing initializers along pruned slots is generic and done by the rewriter itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..onnxutil import attr

if TYPE_CHECKING:
    from ..view import ModelView, Shape
    from .couplings import Couplings
    from .hooks import ConsumerSpec, Shapes, StatsMask

# Roles of initializer slots, used by criteria and by the zero-group oracle:
OUT = "out"  # producer rows: Conv/Gemm/MatMul output channels
IN = "in"  # consumer columns: Conv/Gemm/MatMul input channels
SCALE = "scale"  # per-channel scale: norm gamma, per-channel Mul constant
BIAS = "bias"  # per-channel additive term: biases, norm beta, per-channel Add constant
STAT = "stat"  # normalisation statistics (BatchNorm mean / var)
QSCALE = "qscale"  # quantization scales and zero points: sliced with their channels, never voting
OTHER = "other"


class OpCtx:
    """What every hook sees of one node: its inputs, outputs, shapes, constants and attributes. `NodeCtx`
    (analysis) and `RewriteCtx` (rewrite) add what their stage may do."""

    def __init__(self, node: onnx.NodeProto, view: ModelView) -> None:
        self.node = node
        self.view = view
        self.op = node.op_type
        self.name = node.name or (node.output[0] if node.output else "?")
        self.opset = view.opset

    def inp(self, i: int) -> str | None:
        return self.node.input[i] if i < len(self.node.input) and self.node.input[i] else None

    def out(self, i: int = 0) -> str | None:
        return self.node.output[i] if i < len(self.node.output) and self.node.output[i] else None

    @property
    def inputs(self) -> list[str]:
        return [i for i in self.node.input if i]

    @property
    def outputs(self) -> list[str]:
        return [o for o in self.node.output if o]

    def shape(self, name: str | None) -> Shape | None:
        return None if name is None else self.view.shape(name)

    def rank(self, name: str | None) -> int | None:
        s = self.shape(name)
        return None if s is None else len(s)

    def const(self, name: str | None) -> np.ndarray | None:
        return None if name is None else self.view.array(name)

    def is_param(self, name: str | None) -> bool:
        return name is not None and name in self.view.inits

    def attr(self, name: str, default: Any = None) -> Any:
        return attr(self.node, name, default)

    def where(self) -> str:
        return f"{self.op} '{self.name}'"


class NodeCtx(OpCtx):
    """What a rule sees of one node during analysis: it describes the node's channel flow into `couplings`."""

    def __init__(self, node: onnx.NodeProto, view: ModelView, couplings: Couplings) -> None:
        super().__init__(node, view)
        self.c = couplings

    # --- describing channel flow
    def link(
        self,
        a: str,
        a_axis: int,
        b: str,
        b_axis: int,
        ia: np.ndarray | None = None,
        ib: np.ndarray | None = None,
    ) -> bool:
        """Atom `ia[k]` of slot (a, a_axis) is the same channel as atom `ib[k]` of (b, b_axis).

        Omitted index arrays mean "all indices, in order" (identity). Returns False (and freezes both
        slots) when a size is unknown or the identity sizes disagree."""
        return self.c.link(a, a_axis, b, b_axis, ia, ib, self.where())

    def same(self, a: str, b: str, axes: list[tuple[int, int]] | None = None) -> None:
        """Identity-link axis pairs `(axis_in_a, axis_in_b)` (default: every axis, same index)."""
        if axes is None:
            r = self.rank(a)
            if r is None or r != self.rank(b):
                return
            axes = [(k, k) for k in range(r)]
        for x, y in axes:
            sa, sb = self.shape(a), self.shape(b)
            if sa is None or sb is None:
                continue
            if sa[x] == 1 and sb[y] == 1:
                continue
            self.link(a, x, b, y)  # unknown or different sizes: link() freezes both slots

    def freeze(self, name: str, axis: int, reason: str) -> None:
        self.c.freeze(name, axis, f"{self.where()}: {reason}")

    def freeze_tensor(self, name: str, reason: str) -> None:
        self.c.freeze_tensor(name, f"{self.where()}: {reason}")

    def bail(self, reason: str) -> None:
        """Why the axes this rule leaves unmentioned are frozen (default: "not channel-mapped")."""
        self.c.node_reason = reason

    def lossy(self, name: str, axis: int, reason: str) -> None:
        """The node combines this axis's channels into statistics (LayerNorm mean/variance, RMS): removing
        channels gives the same formula over fewer channels, so it is allowed, but not exact. Frozen instead when
        the analysis keeps hidden widths (--no-hidden)."""
        self.c.mark_lossy(name, axis, f"{self.where()}: {reason}", self.node.output[0])

    def free(self, name: str, axis: int | None = None) -> None:
        """The node reads this axis (all axes if None) without mixing channels, e.g. `Shape`."""
        self.c.free(name, axis)

    def role(self, name: str, axis: int, role: str, neutral: float = 0.0) -> None:
        """Tag an initializer slot for criteria ("out", "in", "scale", ...) and the value that makes a
        channel inert in the zero-group oracle (0, or 1 for divisors and variances)."""
        self.c.role(name, axis, role, neutral)

    def quantized(self, name: str | None) -> None:
        """An integer initializer holds quantized weights (codes, zero points, int32 biases): its channels are
        reported and sliced like float weights'."""
        if self.is_param(name):
            self.c.quantized.add(name)

    def dequantizes(self, tensor: str, source: str, code: Callable[[float], float]) -> None:
        """`tensor` is the initializer `source` dequantized element by element: roles that later rules give to
        `tensor` (Conv weight rows, ...) tag `source` too, its neutral value mapped to a code by `code`."""
        self.c.alias_roles(tensor, source, code)

    @property
    def group_conv(self) -> str:
        """How grouped (non-depthwise) convolutions are pruned: "positions" or "groups" (see rules.linear)."""
        return self.c.group_conv


class RewriteCtx(OpCtx):
    """What a rule sees of one node while the plan is applied: what was kept, and edits to the node."""

    def __init__(self, node: onnx.NodeProto, view: ModelView, rewriter: Any) -> None:
        super().__init__(node, view)
        self.rw = rewriter

    @property
    def group_conv(self) -> str:
        """The grouped-convolution mode the plan was made in (see NodeCtx.group_conv)."""
        return self.rw.a.group_conv

    def kept(self, name: str | None, axis: int) -> np.ndarray | None:
        """Indices kept along (name, axis); None if that slot is not pruned."""
        return None if name is None else self.rw.kept(name, axis)

    def new_dim(self, name: str, axis: int) -> int | None:
        """The axis's size after pruning; None for a dynamic axis (a k·batch axis keeps following its batch)."""
        s = self.shape(name)
        if s is None or s[axis] is None:
            return None
        k = self.kept(name, axis)
        return s[axis] if k is None else int(len(k))

    def set_attr(self, name: str, value: Any) -> None:
        self.del_attr(name)
        self.node.attribute.append(helper.make_attribute(name, value))

    def del_attr(self, name: str) -> None:
        for i, a in enumerate(self.node.attribute):
            if a.name == name:
                del self.node.attribute[i]
                return

    def set_input_const(self, i: int, value: np.ndarray) -> None:
        """Replace constant input `i` with `value` (a new initializer if the old one is shared)."""
        self.rw.set_input_const(self.node, i, value)

    def patch_input(self, i: int, entries: dict[int, int]) -> None:
        """Change entries (position → value) of a shape input computed at run time (adds Mul/Add nodes)."""
        self.rw.patch_input(self.node, i, entries)


class Rule:
    """One op family. Subclasses set `ops` and implement `couple` (and `rewrite` when attributes or shape
    constants count channels). The docstring of each subclass names the ONNX semantics it relies on.

    Optional hooks keep the rest of spa free of op names (defaults: the op has none of these):
    `macs` (spa.report), `consumer` (the weight-matrix view of spa.calib's data-driven criteria) and
    `mask_statistics` (spa.verify's zero-group oracle for lossy groups)."""

    ops: ClassVar[tuple[str, ...]] = ()
    domain: ClassVar[str] = ""
    # rewrite() is called for nodes with a pruned input/output; True: whenever anything was pruned
    # (Reshape: a computed target may depend on the Shape of a pruned tensor elsewhere)
    always_rewrite: ClassVar[bool] = False

    def couple(self, n: NodeCtx) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def rewrite(self, n: RewriteCtx) -> None:
        return None

    def macs(self, node: onnx.NodeProto, shapes: Shapes) -> int | None:
        """Multiply-accumulates of one node per sample (symbolic dims count as 1, see hooks.dims); None: the op
        has no MAC count. An IndexError/TypeError (a malformed node) counts as 0."""
        return None

    @property
    def counts_macs(self) -> bool:
        """Does this rule count MACs (spa.report probes the shapes of such nodes when inference leaves them)?"""
        return type(self).macs is not Rule.macs

    def consumer(self, node: onnx.NodeProto, view: ModelView) -> ConsumerSpec | None:
        """The node's float initializer weight as a matrix over the input channels, for criteria that use layer
        input statistics (OBSPA, activation-weighted); None: not such a consumer."""
        return None

    def mask_statistics(self, node: onnx.NodeProto, m: StatsMask) -> list[onnx.NodeProto] | None:
        """Nodes that replace `node` (same outputs) with its statistics over `m.axis` computed from the kept
        channels only; for rules that mark a slot lossy (`NodeCtx.lossy`). None: the node is kept as it is."""
        return None


RuleLike = Rule | type[Rule]


def _key(domain: str, op: str) -> tuple[str, str]:
    return ("" if domain in ("", "ai.onnx") else domain, op)


class RuleSet:
    """The rules one analysis uses, by (domain, op type); the rewriter and the hooks use the same set, so
    analysis and rewriting cannot disagree. Two rules claiming one op is an error; `extended` lets later rules
    replace earlier ones op by op (a user's rule for an op wins over spa's)."""

    def __init__(self, rules: Iterable[RuleLike] = ()) -> None:
        self._by_op: dict[tuple[str, str], Rule] = {}
        self._rules: list[Rule] = []
        for r in rules:
            self._add(r)

    def _add(self, rule: RuleLike) -> None:
        inst = rule() if isinstance(rule, type) else rule
        if not isinstance(inst, Rule):
            raise TypeError(f"not a channel rule: {rule!r} (subclass spa.rules.Rule)")
        if not inst.ops:
            raise ValueError(f"rule {type(inst).__name__} claims no op (set `ops`)")
        for op in inst.ops:
            key = _key(inst.domain, op)
            old = self._by_op.get(key)
            if old is not None:
                raise ValueError(f"two rules claim op {op!r} (domain {key[0] or 'ai.onnx'!r}): "
                                 f"{type(old).__name__} and {type(inst).__name__}")
            self._by_op[key] = inst
        self._rules.append(inst)

    def extended(self, rules: Iterable[RuleLike]) -> RuleSet:
        """This set with `rules` added; for an op that both claim, the new rule replaces this set's. Two of
        the new rules claiming one op is still an error."""
        new = RuleSet(rules)
        out = self._filtered(set(new._by_op))
        for inst in new._rules:
            out._add(inst)
        return out

    def without(self, *ops: str, domain: str = "") -> RuleSet:
        """This set without rules for `ops` (those ops then freeze everything they touch, as unknown ops)."""
        return self._filtered({_key(domain, op) for op in ops})

    def _filtered(self, drop: set[tuple[str, str]]) -> RuleSet:
        """A copy whose rules no longer claim the ops in `drop` (a rule left with no op is dropped)."""
        out = RuleSet()
        for inst in self._rules:
            keys = [k for k in (_key(inst.domain, op) for op in inst.ops) if k not in drop]
            out._by_op.update((k, inst) for k in keys)
            if keys:
                out._rules.append(inst)
        return out

    def rule_for(self, node: onnx.NodeProto) -> Rule | None:
        return self._by_op.get(_key(node.domain, node.op_type))

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def ops(self) -> list[tuple[str, str]]:
        """Every (domain, op type) with a rule."""
        return list(self._by_op)


_REGISTERED: list[type[Rule]] = []


def register(cls: type[Rule]) -> type[Rule]:
    """Deprecated: list the rule in its module's `RULES` tuple instead. A rule module imported by spa.rules that
    still decorates its classes gets them appended to the default set (spa.rules.DEFAULT_RULES)."""
    _REGISTERED.append(cls)
    return cls


def registered() -> tuple[type[Rule], ...]:
    """Rules added with the deprecated `register` decorator, in import order."""
    return tuple(_REGISTERED)


def to_tensor(value: np.ndarray, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis
