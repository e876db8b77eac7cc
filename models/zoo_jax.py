"""Small Flax models for the JAX converter (tests, and ``spa convert models/zoo_jax.py:small_cnn``).

Each builder is a zero-argument factory, the form ``spa convert file.py:factory`` expects; ``SHAPES`` gives
an example input shape (batch first, NHWC for images as Flax expects).  Needs ``pip install 'spa[jax]'``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen, nnx


class SmallCNN(nnx.Module):
    """conv → BatchNorm → relu → max-pool → conv → BatchNorm → relu → flatten → dense → relu → dense."""

    def __init__(self, rngs: nnx.Rngs, width: int = 16, classes: int = 10, size: int = 16) -> None:
        self.c1 = nnx.Conv(3, width, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(width, rngs=rngs)
        self.c2 = nnx.Conv(width, 2 * width, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(2 * width, rngs=rngs)
        self.fc1 = nnx.Linear(2 * width * (size // 2) ** 2, 32, rngs=rngs)
        self.fc2 = nnx.Linear(32, classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.bn1(self.c1(x)))
        x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = nnx.relu(self.bn2(self.c2(x)))
        x = x.reshape(x.shape[0], -1)
        return self.fc2(nnx.relu(self.fc1(x)))


class LayerNormCNN(nnx.Module):
    """conv → LayerNorm (over channels) → relu → global mean → dense: the LayerNorm width must stay frozen."""

    def __init__(self, rngs: nnx.Rngs, width: int = 12, classes: int = 5) -> None:
        self.c1 = nnx.Conv(3, width, (3, 3), rngs=rngs)
        self.ln = nnx.LayerNorm(width, rngs=rngs)
        self.c2 = nnx.Conv(width, width, (3, 3), rngs=rngs)
        self.fc = nnx.Linear(width, classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.ln(self.c1(x)))
        x = nnx.relu(self.c2(x))
        return self.fc(x.mean(axis=(1, 2)))


class _LinenMLP(linen.Module):
    hidden: tuple[int, ...] = (32, 24)
    classes: int = 5

    @linen.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for h in self.hidden:
            x = linen.relu(linen.Dense(h)(x))
        return linen.Dense(self.classes)(x)


def _randomise_bn(model: nnx.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, as after training (fresh ones are 0/1)."""
    key = jax.random.PRNGKey(seed)
    for _, m in nnx.iter_graph(model):
        if isinstance(m, nnx.BatchNorm):
            n = m.num_features
            k = jax.random.split(key, 5)
            key = k[0]
            m.mean.set_value(0.1 * jax.random.normal(k[1], (n,)))
            m.var.set_value(jax.random.uniform(k[2], (n,), minval=0.5, maxval=1.5))
            m.scale.set_value(jax.random.uniform(k[3], (n,), minval=0.5, maxval=1.5))
            m.bias.set_value(0.1 * jax.random.normal(k[4], (n,)))


def small_cnn() -> nnx.Module:
    m = SmallCNN(nnx.Rngs(0))
    _randomise_bn(m, 1)
    return m


def layernorm_cnn() -> nnx.Module:
    return LayerNormCNN(nnx.Rngs(0))


def linen_mlp() -> Callable[[jax.Array], jax.Array]:
    """A Flax Linen MLP, exported through ``apply`` with its variables bound (a plain JAX function)."""
    m = _LinenMLP()
    variables = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 12)))
    return lambda x: m.apply(variables, x)


SHAPES: dict[str, tuple[int, ...]] = {
    "small_cnn": (2, 16, 16, 3),
    "layernorm_cnn": (2, 8, 8, 3),
    "linen_mlp": (2, 12),
}
BUILDERS: dict[str, Callable[[], Callable]] = {"small_cnn": small_cnn, "layernorm_cnn": layernorm_cnn,
                                                "linen_mlp": linen_mlp}
