"""Label-free augmentations of unlabelled images: more distinct inputs from the files a user has. Two users:

1. Calibrated OBSPA (`with_rescaled_copies`, numpy).

Calibrated OBSPA re-fits every consumer by least squares on the calibration inputs; with few of them (32 text
lines) the re-fit follows their fonts and sizes. A copy of every image at each of SCALES of its size, anchored at
the top left (padded at the bottom and right with its edge, or cut there), gives the statistics and the re-fit
the same content at other scales, which transfers. PP-OCRv4 rec at ratio 0.5 with 32 unlabelled lines, on
benchmarks/obspa_calib_fast.py's choice set (never its held-out set), kept 88.7 % of the original accuracy on
average over seeds (worst 86.6 %) without a copy and 90.5 % (88.7 %) with one at 0.9; rescaled about the centre
instead (text moved right) 88.2 % (87.8 %); the same lines twice 88.3 %: the gain is the new content, not more
rows. With the energy allocation (spa.sensitivity) a second copy at 1.1 raised it from 92.6 % (89.7 %) to 93.5 %
(91.9 %); giving each line one copy, at 0.9 or 1.1 alternately, 92.6 % (90.1 %); copies at 0.8 and 1.2 94.1 %
(93.6 %) (benchmarks/obspa_calib_fast_choice.txt).

An input is an image when it is a 4-D float array with a channel axis of at most 4 (NCHW or NHWC) and both
spatial sides of at least MIN_SIDE; other inputs are repeated unchanged, so that multi-input models stay aligned.

2. Distillation (``spa finetune --teacher ... --augment LIST``: `Augment`, torch).

Distilling on a few hundred unlabelled inputs teaches the student the teacher's behaviour on those inputs;
on inputs that look different (another font, another camera) it can still disagree.  Each training step can
therefore see a randomly altered copy of its batch: the teacher is run on the same altered copy, so no label
has to survive the change, only the input has to stay plausible.  The strengths are mild, fixed, and given per
kind below; each kind is applied to each sample with probability ``P``:

- ``scale``: zoom 0.9-1.1 in height and 0.85-1.15 in width (independently), border pixels repeated;
- ``shift``: translation by up to 4 % of the height and 2 % of the width;
- ``blur``: a separable Gaussian of sigma 0.3-1.0 pixel;
- ``noise``: Gaussian noise of 0-10 % of the image's standard deviation;
- ``contrast``: contrast 0.6-1.2x about the image's mean, brightness +-20 % of its standard deviation;
- ``invert``: the image mirrored about its mid-range (dark on light becomes light on dark);
- ``stroke``: a 3x3 grey-level dilation or erosion, blended in at 0-100 %: strokes get thicker or thinner
  whatever their polarity;
- ``colour``: ``contrast``'s change drawn for each channel apart, about that channel's mean: a black-on-white
  image gets a tinted background and tinted text (a grey image only a contrast change);
- ``mix``: the sample blended with another sample of the batch, λ x + (1 − λ) x', λ uniform in 0.5-1 (mixup without
  labels: the teacher's outputs on the blend are the targets, "function matching", Beyer et al. 2022): inputs
  between the data's, such as faint text over a page;
- ``splice``: the sample's columns from a cut at 25-75 % of its width on replaced by the same columns of another
  sample of the batch (CutMix along the width, without labels; PaddleOCR trains its recognisers on lines joined
  side by side, RecConAug): a text line whose second part comes from another line, a page of two halves.

Inputs are float images, NCHW or NHWC (found from the model's declared shape: the axis of size 1, 3 or 4 next to
the batch or last).  The augmentations run in torch on the batch, per sample, seeded by ``--seed``.
"""

from __future__ import annotations

import numpy as np
import onnx

from .errors import BadArgument

# ---------------------------------------------------------------- calibration: rescaled copies
# content sizes of the copies (the smaller one's border filled with its edge). Choice set (PP-OCRv4 rec at 0.5, energy
# allocation, seeds 0-2): (0.9, 1.1) 93.5 % of the original on average, worst seed 91.9 %; (0.85, 1.15) 94.2 / 93.0;
# (0.8, 1.2) 94.1 / 93.6; (0.75, 1.25) 94.0 / 93.7; (0.9, 1.2) 93.4 / 92.4: the middle of the plateau.
SCALES = (0.8, 1.2)
# The re-fit (obspa's, after the statistics) runs on the real images and this many of their copies (None: all of them),
# where it reads the calibration images alone (the "calib" source): the statistics keep every copy.
REFIT_COPIES: int | None = None
MIN_SIDE = 8


def spatial_axes(x: np.ndarray) -> tuple[int, int] | None:
    """The (height, width) axes of an image batch, or None when `x` does not look like one."""
    if x.ndim != 4 or x.dtype.kind != "f":
        return None
    axes = (2, 3) if x.shape[1] <= 4 else (1, 2) if x.shape[3] <= 4 else None
    if axes is None or min(x.shape[axes[0]], x.shape[axes[1]]) < MIN_SIDE:
        return None
    return axes


def rescaled(x: np.ndarray, axes: tuple[int, int], scale: float) -> np.ndarray:
    """`x` with its content scaled by `scale`, the top-left corner in place: the image resized and padded at the
    bottom and right with its edge, as preprocessing pads a smaller image (bilinear); above 1 the bottom and
    right are cut off instead."""
    out = x
    for ax in axes:
        n = x.shape[ax]
        src = np.minimum(np.arange(n) / scale, n - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        w = (src - lo).astype(x.dtype).reshape([-1 if i == ax else 1 for i in range(x.ndim)])
        out = np.take(out, lo, axis=ax) * (1 - w) + np.take(out, hi, axis=ax) * w
    return out.astype(x.dtype, copy=False)


def with_rescaled_copies(feeds: dict[str, np.ndarray], scales: tuple[float, ...] = SCALES) -> dict[str, np.ndarray] | None:
    """The samples followed by a copy of all of them at each scale (image inputs rescaled, others repeated);
    None when no input is an image."""
    axes = {k: spatial_axes(v) for k, v in feeds.items()}
    if not any(axes.values()):
        return None
    return {k: np.concatenate([v, *(v if axes[k] is None else rescaled(v, axes[k], s) for s in scales)])
            for k, v in feeds.items()}


# ---------------------------------------------------------------- distillation: random per-sample changes
KINDS = ("scale", "shift", "blur", "noise", "contrast", "invert", "stroke", "colour", "mix", "splice")
P = 0.5  # each kind's probability per sample


def parse_augment(spec: str | None) -> tuple[str, ...]:
    """``"scale,shift,blur"`` or ``"all"`` (the CLI's ``--augment``) as the kinds to apply; None or ``"none"``:
    none."""
    if spec is None or spec.strip() in ("", "none"):
        return ()
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        return KINDS
    bad = [n for n in names if n not in KINDS]
    if bad:
        raise BadArgument(f"--augment {spec!r}: unknown {', '.join(map(repr, bad))}; use 'all' or a comma list of "
                          f"{', '.join(KINDS)}")
    return tuple(dict.fromkeys(names))


def _layout(v: onnx.ValueInfoProto) -> str:
    """"nchw" or "nhwc" for a float image input; BadArgument for anything else."""
    t = v.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
    if t.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE) or len(dims) != 4:
        raise BadArgument(f"--augment applies to float image inputs (N, C, H, W) or (N, H, W, C); input {v.name!r} is "
                          f"{onnx.TensorProto.DataType.Name(t.elem_type)} {['?' if d is None else d for d in dims]}")
    if dims[1] in (1, 3, 4):
        return "nchw"
    if dims[3] in (1, 3, 4):
        return "nhwc"
    raise BadArgument(f"--augment: cannot tell the channel axis of input {v.name!r} {['?' if d is None else d for d in dims]} "
                      "(expected 1, 3 or 4 channels on axis 1 or 3)")


class Augment:
    """Random per-sample augmentations of a batch of images (torch tensors, the model's layout)."""

    def __init__(self, kinds: tuple[str, ...], model: onnx.ModelProto, seed: int) -> None:
        import torch

        inits = {i.name for i in model.graph.initializer}
        self.layouts = [_layout(v) for v in model.graph.input if v.name not in inits]
        self.kinds = kinds
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, xs: list) -> list:
        return [self.one(x, lay) for x, lay in zip(xs, self.layouts)]

    def _others(self, y):
        """Each sample's partner for `mix` and `splice`: another sample of the batch (a random permutation)."""
        import torch

        return y[torch.randperm(len(y), generator=self.g)]

    def _u(self, n: int, lo: float, hi: float):
        import torch

        return lo + (hi - lo) * torch.rand(n, generator=self.g)

    def one(self, x, layout: str = "nchw"):
        """One augmented copy of ``x`` (same shape and dtype)."""
        import torch
        import torch.nn.functional as F

        dtype = x.dtype
        y = (x if layout == "nchw" else x.permute(0, 3, 1, 2)).float()
        n, c, h, w = y.shape
        for kind in self.kinds:
            on = (torch.rand(n, generator=self.g) < P).view(n, 1, 1, 1)
            if not on.any():
                continue
            if kind in ("scale", "shift"):
                theta = torch.zeros(n, 2, 3)
                if kind == "scale":  # the grid samples the source: 1/zoom
                    theta[:, 0, 0], theta[:, 1, 1] = 1 / self._u(n, 0.85, 1.15), 1 / self._u(n, 0.9, 1.1)
                else:
                    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
                    theta[:, 0, 2], theta[:, 1, 2] = self._u(n, -0.04, 0.04), self._u(n, -0.08, 0.08)
                grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
                z = F.grid_sample(y, grid, mode="bilinear", padding_mode="border", align_corners=False)
            elif kind == "blur":
                sigma = self._u(n, 0.3, 1.0).view(n, 1)
                k = torch.exp(-0.5 * (torch.arange(-2, 3).float().view(1, 5) / sigma) ** 2)
                k = k / k.sum(1, keepdim=True)  # (n, 5): one kernel per sample, applied to its channels
                z = y.reshape(1, n * c, h, w)
                kk = k.repeat_interleave(c, 0)
                z = F.conv2d(F.pad(z, (2, 2, 0, 0), mode="replicate"), kk.view(n * c, 1, 1, 5), groups=n * c)
                z = F.conv2d(F.pad(z, (0, 0, 2, 2), mode="replicate"), kk.view(n * c, 1, 5, 1), groups=n * c)
                z = z.view(n, c, h, w)
            elif kind == "noise":
                sd = y.std(dim=(1, 2, 3), keepdim=True)
                z = y + torch.randn(y.shape, generator=self.g) * sd * self._u(n, 0, 0.1).view(n, 1, 1, 1)
            elif kind in ("contrast", "colour"):  # colour: the contrast change drawn per channel (a tint)
                k = c if kind == "colour" else 1
                mean = y.mean(dim=(2, 3) if k > 1 else (1, 2, 3), keepdim=True)
                sd = y.std(dim=(1, 2, 3), keepdim=True)
                z = mean + (y - mean) * self._u(n * k, 0.6, 1.2).view(n, k, 1, 1) + sd * self._u(n * k, -0.2, 0.2).view(n, k, 1, 1)
            elif kind == "mix":  # another sample of the batch blended in
                lam = self._u(n, 0.5, 1.0).view(n, 1, 1, 1)
                z = lam * y + (1 - lam) * self._others(y)
            elif kind == "splice":  # columns from a cut on: another sample's
                cut = self._u(n, 0.25, 0.75).view(n, 1, 1, 1) * w
                z = torch.where(torch.arange(w).view(1, 1, 1, w) >= cut, self._others(y), y)
            elif kind == "invert":
                lo, hi = y.amin(dim=(1, 2, 3), keepdim=True), y.amax(dim=(1, 2, 3), keepdim=True)
                z = lo + hi - y
            else:  # stroke: grey-level dilation (max) or erosion (min) over 3x3, partly blended in
                dil = F.max_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
                ero = -F.max_pool2d(F.pad(-y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
                pick = (torch.rand(n, generator=self.g) < 0.5).view(n, 1, 1, 1)
                t = self._u(n, 0, 1).view(n, 1, 1, 1)
                z = y + (torch.where(pick, dil, ero) - y) * t
            y = torch.where(on, z, y)
        y = y.to(dtype)
        return y if layout == "nchw" else y.permute(0, 2, 3, 1).contiguous()
