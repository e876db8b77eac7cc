"""Element-wise ops: every output element depends only on the input elements at the same position.

ONNX semantics relied on: unary ops keep the input shape; n-ary ops use multidirectional (numpy) broadcasting,
inputs right-aligned to the output rank, a size-1 axis broadcast. So an input axis of the output's size is the
same channel axis; a size-1 axis carries no channels. Per-channel constants (biases, folded BatchNorm as
Mul+Add from tf2onnx, PRelu slopes) are initializers on such an axis and get sliced with the channels.
"""

from __future__ import annotations

from .base import BIAS, OTHER, SCALE, NodeCtx, Rule

UNARY = (
    "Relu LeakyRelu Sigmoid HardSigmoid HardSwish Tanh Elu Selu Celu Softplus Softsign Erf Gelu Mish "
    "ThresholdedRelu Shrink Identity Neg Abs Exp Log Sqrt Reciprocal Floor Ceil Round Sign Sin Cos Tan "
    "Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Not IsNaN IsInf BitwiseNot Cast Clip Dropout"
).split()


class Unary(Rule):
    """y = f(x) element by element (Clip's min/max and Dropout's ratio are scalars). Dropout's mask output has
    the data's shape, so it is linked too."""

    ops = tuple(UNARY)

    def couple(self, n: NodeCtx) -> None:
        x = n.inp(0)
        for y in n.outputs:
            n.same(x, y)


class CastLike(Rule):
    """y = cast(x) to the type of `target_type`; the target's values are never read."""

    ops = ("CastLike",)

    def couple(self, n: NodeCtx) -> None:
        n.same(n.inp(0), n.out())
        if n.inp(1):
            n.free(n.inp(1))


BROADCAST = (
    "Add Sub Mul Div Pow Max Min Mean Sum Where Equal Greater Less GreaterOrEqual LessOrEqual And Or Xor "
    "Mod BitShift BitwiseAnd BitwiseOr BitwiseXor PRelu"
).split()

_ROLES = {"Mul": SCALE, "Add": BIAS, "Sub": BIAS, "Div": SCALE, "PRelu": SCALE}


class Broadcast(Rule):
    """n-ary element-wise ops with multidirectional broadcasting (PRelu: unidirectional, same alignment)."""

    ops = tuple(BROADCAST)

    def couple(self, n: NodeCtx) -> None:
        y = n.out()
        sy = n.shape(y)
        if sy is None:
            return
        ry = len(sy)
        for i, x in enumerate(n.node.input):
            if not x:
                continue
            sx = n.shape(x)
            if sx is None:
                continue
            rx = len(sx)
            for j, d in enumerate(sx):
                oj = ry - rx + j
                if d == 1:
                    continue  # broadcast: no channels here
                # an unknown or mismatched size freezes both sides (inside link): the output axis must not
                # stay prunable through the other inputs while this one cannot follow
                if not n.link(x, j, y, oj):
                    continue
                if n.is_param(x):
                    role = _ROLES.get(n.op, OTHER)
                    # divisors and exponents are made inert with 1, not 0
                    neutral = 1.0 if (n.op in ("Div", "Pow") and i == 1) else 0.0
                    n.role(x, j, role, neutral)


RULES: tuple[type[Rule], ...] = (Unary, CastLike, Broadcast)
