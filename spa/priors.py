"""Data-free priors beyond spa.calib's built-in sources, registered by name in `PRIORS`.

`spa.calib.source_feeds` dispatches a source named here to its function `(view, n, seed, other) -> feeds`
(`other`: the size for symbolic non-batch dims, as for the built-in sources), so a prior added here is a
`--calib-source` choice without touching the statistics code. Every prior must be deterministic for a seed.

- "mix": an ensemble of the built-in priors, one quarter of the samples each: "binary" (dark shapes on a light
  background), the same with its polarity flipped (light on dark: inverted scans, screenshots in dark mode),
  "structured" (continuous natural-image statistics) and "noise"; shuffled so every batch sees all four.
  Non-image inputs are "noise" in all of them. Why: a single prior is tuned to the inputs it was chosen on
  (benchmarks/generalise.py measures whether an ensemble transfers better).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Prior = Callable[..., dict[str, np.ndarray]]


def _is_image(x: np.ndarray) -> bool:
    return x.ndim == 4 and x.dtype.kind == "f" and min(x.shape[2:]) >= 4


def mixed_inputs(view, n: int, seed: int, other: int = 1) -> dict[str, np.ndarray]:
    """One quarter each (rounded, at least the first part non-empty) of binary, inverted binary, structured and
    noise samples, in a seed-determined order."""
    from .calib import binary_inputs, noise_inputs, structured_inputs

    sizes = [n // 4 + (1 if k < n % 4 else 0) for k in range(4)]
    parts: list[dict[str, np.ndarray]] = []
    for k, (make, size) in enumerate(zip((binary_inputs, binary_inputs, structured_inputs, noise_inputs), sizes)):
        if size == 0:
            continue
        feeds = make(view, size, seed * 4 + k, other)
        if k == 1:  # polarity flipped: a light minority on a dark background
            feeds = {name: -x if _is_image(x) else x for name, x in feeds.items()}
        parts.append(feeds)
    order = np.random.default_rng(seed).permutation(n)
    return {name: np.concatenate([p[name] for p in parts])[order] for name in parts[0]}


PRIORS: dict[str, Prior] = {"mix": mixed_inputs}
