"""Gradient criteria through the ONNX → torch round trip (spa.onnx_to_torch): first-order Taylor and
SNIP channel saliencies.

Without labels, the loss is the model's agreement with itself: cross-entropy of the first output against its
own arg-max (pseudo-labels) over the last axis when that axis has ≥ 2 entries, else ½‖y‖² (mean over the
batch). Gradients of every float initializer are accumulated over the inputs (`--calib`, or the data-free
source's synthetic inputs). Per channel, over every member of its group whose role votes (producer rows "out",
consumer columns "in", norm scales):
- taylor: (Σ w·g)² — the squared first-order change of the loss when the channel's parameters are zeroed
  (Molchanov et al., 2019, group version), summed over members;
- snip: Σ |w·g| (Lee et al., 2019), summed over members.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from ..analysis import Group
from ..errors import BadArgument
from .magnitude import VOTING, l1

Grads = dict[str, np.ndarray]


def collect(model: onnx.ModelProto, feeds: dict[str, np.ndarray], *, batch: int = 8) -> Grads:
    """∂L/∂w for every float initializer, summed over `feeds` in batches."""
    try:
        import torch

        from ..onnx_to_torch import UnsupportedOp, onnx_to_torch
    except ImportError as e:
        raise BadArgument(f"gradient criteria need torch and spa's converters (pip install 'spa[torch]'): {e}") from None
    try:
        module = onnx_to_torch(model).eval()
    except UnsupportedOp as e:
        raise BadArgument(f"gradient criteria need the ONNX -> torch round trip, which lacks: {e}") from None
    names = list(module.input_names)
    n = len(next(iter(feeds.values())))
    for i in range(0, n, batch):
        xs = [torch.from_numpy(np.ascontiguousarray(feeds[k][i : i + batch])) for k in names]
        y = module(*xs)
        y = y[0] if isinstance(y, tuple) else y
        y = y.float()
        if y.ndim >= 2 and y.shape[-1] >= 2:
            logits = y.reshape(-1, y.shape[-1])
            loss = torch.nn.functional.cross_entropy(logits, logits.argmax(-1).detach())
        else:
            loss = 0.5 * (y**2).sum() / max(1, y.shape[0])
        loss.backward()
    out: Grads = {}
    for onnx_name, attr in module.param_names.items():
        p = getattr(module, attr)
        if isinstance(p, torch.nn.Parameter) and p.grad is not None:
            out[onnx_name] = p.grad.detach().double().numpy()
    return out


def _saliency(group: Group, weights: Callable[[str], np.ndarray], grads: Grads, square: bool) -> np.ndarray | None:
    total = np.zeros(group.size)
    count = 0
    for m in group.params:
        if m.role not in VOTING or m.tensor not in grads:
            continue
        w = weights(m.tensor).astype(np.float64)
        wg = w * grads[m.tensor]
        per_index = np.moveaxis(wg, m.axis, 0).reshape(wg.shape[m.axis], -1)
        per_index = per_index.sum(axis=1) if square else np.abs(per_index).sum(axis=1)
        sel = m.ids >= 0
        s = np.bincount(m.ids[sel], weights=per_index[sel], minlength=group.size)
        total += s**2 if square else s
        count += 1
    return total if count else None


def taylor(group: Group, weights, rng, grads: Grads) -> np.ndarray:
    s = _saliency(group, weights, grads, square=True)
    return l1(group, weights, rng) if s is None else s + 1e-20


def snip(group: Group, weights, rng, grads: Grads) -> np.ndarray:
    s = _saliency(group, weights, grads, square=False)
    return l1(group, weights, rng) if s is None else s + 1e-20
