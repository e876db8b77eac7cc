"""The data-free sources ("priors") of spa.calib: noise, structured and binary synthetic images, token ids over
the embedding table or one-hot alphabet they index, padding masks; and the extra priors registered in `PRIORS`.

`spa.calib.source_feeds` dispatches a source named in `PRIORS` to its function `(view, n, seed, other) -> feeds`
(`other`: the size for symbolic non-batch dims, as for the built-in sources), so a prior added here is a
`--calib-source` choice without touching the statistics code. Every prior must be deterministic for a seed.

- "mix": an ensemble of the built-in priors, one quarter of the samples each: "binary" (dark shapes on a light
  background), the same with its polarity flipped (light on dark: inverted scans, screenshots in dark mode),
  "structured" (continuous natural-image statistics) and "noise"; shuffled so every batch sees all four.
  Non-image inputs are "noise" in all of them. Why: a single prior is tuned to the inputs it was chosen on
  (benchmarks/generalise.py measures whether an ensemble transfers better).
- "common": the "binary" inputs, but token ids drawn from the tokens an embedding table marks as everyday words
  (`everyday_tokens`) instead of uniformly over the vocabulary; spa.calib's default for obspa on token-id inputs
  (`has_token_inputs`).
- "strokes" (spa.calib's default): rendered-like images without fonts, pen strokes grouped like glyphs in a line,
  a page of lines in images taller than LINE_MAX (`strokes_inputs`); other inputs as "noise".
- "bytes": file-like byte streams without any file format (`byte_stream`: text, zero runs, small integers,
  random and repeated records) for integer inputs over the 256 byte values and a few more symbols
  (`byte_alphabet`); other inputs as "noise". spa.calib's default draws its byte-like inputs so too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Prior = Callable[..., dict[str, np.ndarray]]


def noise_inputs(view, n: int, seed: int, other: int = 1, *, images: bool = True) -> dict[str, np.ndarray]:
    """Standard normal samples for every float graph input (static dims from the model, `other` for unknown
    ones); token ids uniform over their embedding table (or one-hot alphabet); (batch, length) integer inputs
    that index nothing (attention masks) padding masks; other integers 0/1. `images=False`: image-shaped inputs
    (`is_image`) are left uninitialised, for a caller that fills them (drawing 128 noise images of 3x320x320 to
    overwrite them was 2 s)."""
    from .view import random_array
    from .verify import NP_DTYPES

    rng = np.random.default_rng(seed)
    out = {}
    masks = []
    for inp in view.model.graph.input:
        if inp.name not in view.graph_inputs:
            continue
        s = view.shape(inp.name) or ()
        shape = [n] + [d if d else other for d in s[1:]]
        dt = NP_DTYPES.get(inp.type.tensor_type.elem_type, np.float32)
        vocab = vocabulary(view, inp.name)
        if not images and _is_image_shape(shape, dt):
            out[inp.name] = np.empty(shape, dt)
            continue
        out[inp.name] = random_array(rng, shape, dt, int_high=vocab or 2)
        if vocab is None and len(shape) == 2 and np.dtype(dt).kind in "iu":
            masks.append(inp.name)
    # a padding mask per sample: ones for a random length, then zeros, as a tokenizer pads a batch. Random 0/1
    # masks make every token attend to a random half of the others, which no real input does; on
    # all-MiniLM-L6-v2 at 0.3 the padding masks gave cosine 0.826 vs 0.816 (selection sentences, 5 seeds) and
    # 0.784 vs 0.754 worst case on held-out sentences (benchmarks/generalise_{selection,minilm}.txt, "padded")
    mask_rng = np.random.default_rng((seed, 7))
    for name in masks:
        x = out[name]
        lengths = mask_rng.integers(1, x.shape[1] + 1, size=len(x))
        out[name] = (np.arange(x.shape[1])[None, :] < lengths[:, None]).astype(x.dtype)
    return out


def vocabulary(view, name: str) -> int | None:
    """Rows of the initializer table that a Gather indexes with input `name` (an embedding), if any; else the
    depth of a one-hot encoding of it (OneHot with a constant depth, or Equal against a constant range through
    shape-only ops, as jax2tf writes it: Magika's 257 byte values), so that synthetic ids cover the alphabet."""
    found = _gather_table(view, name)
    if found is not None:
        dims = view.inits[found[0]].dims
        return int(dims[found[1]]) if dims else None
    return _one_hot_depth(view, name)


def _gather_table(view, name: str) -> tuple[str, int] | None:
    """(initializer, axis) of the table that a Gather indexes with input `name`, if any."""
    for i in view.consumers.get(name, []):
        node = view.model.graph.node[i]
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name and node.input[0] in view.inits:
            return node.input[0], next((a.i for a in node.attribute if a.name == "axis"), 0)
    return None


_SHAPE_ONLY = ("Reshape", "Unsqueeze", "Expand", "Cast", "Identity", "Squeeze", "Flatten")


def _one_hot_depth(view, name: str, hops: int = 4) -> int | None:
    for i in view.consumers.get(name, []):
        node = view.model.graph.node[i]
        if node.op_type == "OneHot" and node.input[0] == name:
            depth = view.array(node.input[1])
            return int(np.asarray(depth).reshape(-1)[0]) if depth is not None else None
        if node.op_type == "Equal":
            other = view.array(node.input[1] if node.input[0] == name else node.input[0])
            if other is not None and np.asarray(other).size > 1:
                return int(np.asarray(other).max()) + 1
        if node.op_type in _SHAPE_ONLY and node.input[0] == name and hops > 0:
            depth = _one_hot_depth(view, node.output[0], hops - 1)
            if depth is not None:
                return depth
    return None


def _field(rng: np.random.Generator, c: int, h: int, w: int) -> np.ndarray:
    """One synthetic image (c, h, w), zero mean, unit variance: a 1/f² power spectrum (spatially correlated,
    like photographs and scans) with flat rectangles and thin strokes (edges, text-like marks) painted on."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    amp = 1.0 / np.maximum(np.sqrt(fy**2 + fx**2), 1.0 / max(h, w))  # 1/f amplitude = 1/f² power
    spec = amp * (rng.standard_normal((c, h, w // 2 + 1)) + 1j * rng.standard_normal((c, h, w // 2 + 1)))
    img = np.fft.irfft2(spec, s=(h, w))
    img = (img - img.mean()) / (img.std() + 1e-8)
    for _ in range(int(rng.integers(2, 8))):  # flat rectangles and thin strokes
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        if rng.random() < 0.5:
            hh, ww = int(rng.integers(1, max(2, h // 2))), int(rng.integers(1, max(2, w // 2)))
        else:
            hh, ww = (int(rng.integers(1, 3)), int(rng.integers(2, w))) if rng.random() < 0.5 \
                else (int(rng.integers(2, h)), int(rng.integers(1, 3)))
        img[:, y0:y0 + hh, x0:x0 + ww] = rng.normal(0.0, 1.5, size=(c, 1, 1))
    return (img - img.mean()) / (img.std() + 1e-8)


def _images(view, n: int, seed: int, other: int, make) -> dict[str, np.ndarray]:
    """"noise", but every image-shaped float input (N, C, H, W) gets `make(rng, field)` per sample."""
    out = noise_inputs(view, n, seed, other, images=False)
    rng = np.random.default_rng(seed + 1)
    for x in out.values():
        if is_image(x):
            _fill(x, rng, make)
    return out


def _fill(x: np.ndarray, rng: np.random.Generator, make) -> None:
    """Every sample of the image batch `x` (N, C, H, W) in place: `make(rng, field)`, one `_field` per sample."""
    for i in range(len(x)):
        x[i] = make(rng, _field(rng, *x.shape[1:])).astype(x.dtype)


def structured_inputs(view, n: int, seed: int, other: int = 1) -> dict[str, np.ndarray]:
    """Synthetic natural-image-like samples: `_field` at unit contrast around a random brightness (images are
    rarely zero-mean: a scan is mostly white)."""
    return _images(view, n, seed, other, lambda rng, f: f + rng.uniform(-1.0, 1.0))


def binary_inputs(view, n: int, seed: int, other: int = 1) -> dict[str, np.ndarray]:
    """Two-level synthetic images: `_field` thresholded so that a minority of 5-50 % of the pixels is -1 and
    the rest +1 (±1σ of a normalised input): shapes with sharp edges on a flat background, like documents,
    line art, digits, masks."""
    def make(rng, f):
        return np.where(f > np.quantile(f, rng.uniform(0.05, 0.5)), 1.0, -1.0)

    return _images(view, n, seed, other, make)


# "strokes": the smallest height of the band the strokes fill, as a share of the image height. Chosen on the widened
# OCR selection set of benchmarks/generalise.py (PP-OCRv4 rec at 0.2, seeds 0-2, worst / mean share of the
# original's accuracy over 6 distributions; benchmarks/generalise_selection.txt): 0.25 0.765 / 0.921, 0.12 0.782 /
# 0.938, 0.06 0.852 / 0.937; log-uniform from 0.12 0.857 / 0.934, from 0.06 0.838 / 0.920.
STROKE_BAND_MIN = 0.06


LINE_MAX = 48  # px: the tallest band of strokes ("line") in an image taller than that ("page"); see _strokes


def _strokes(rng: np.random.Generator, c: int, h: int, w: int, *, band_min: float = STROKE_BAND_MIN,
             log_band: bool = False, light: float = 0.0, colour: bool = False, pages: bool = True) -> np.ndarray:
    """One image (c, h, w) of pen strokes: polylines, arcs and dots, one to four per "glyph", of widths from
    1 px to an eighth of the band they fill, dark on a light background at a random brightness and contrast
    (levels within [-1, 1]), up to a random right end. An image at most LINE_MAX high is one line: the band's
    height (uniform from `band_min` of the image height to all of it; `log_band`: log-uniform) sets the glyphs'
    size and stroke widths, as text size varies in scans and crops. A taller image (`pages`) is a page: lines of
    `band_min` · LINE_MAX to LINE_MAX px one under the other at random gaps and indents, as a detector sees
    text. Variants measured in benchmarks/generalise.py: `light` = the share of samples with the polarity
    flipped, `colour` = a tint per channel, `pages=False` = one line in every image."""
    from PIL import Image, ImageDraw

    hi = rng.uniform(0.0, 1.0)
    lo = max(-1.0, hi - rng.uniform(0.5, 2.0))
    if light and rng.random() < light:
        hi, lo = -hi, -lo
    img = Image.new("F", (w, h), float(hi))
    draw = ImageDraw.Draw(img)
    if pages and h > LINE_MAX:
        y = int(rng.integers(0, LINE_MAX))
        first = True
        while True:
            band = int(rng.integers(max(2, int(LINE_MAX * band_min)), LINE_MAX + 1))
            if y + band > h:
                if not first:
                    break
                y = h - band  # a page shorter than 2 LINE_MAX: the first line moves up to fit
            first = False
            left = int(rng.integers(0, max(1, w // 4)))
            _line(draw, rng, float(lo), y, band, left, int(rng.integers(min(w, left + band), w + 1)))
            y += band + int(rng.integers(band // 4, 2 * band + 1))
    else:
        if log_band:
            band = max(2, min(h, int(np.rint(h * np.exp(rng.uniform(np.log(band_min), 0.0))))))
        else:
            band = int(rng.integers(max(2, int(h * band_min)), h + 1))
        top = int(rng.integers(0, h - band + 1))
        _line(draw, rng, float(lo), top, band, 0, int(rng.integers(min(w, band), w + 1)))
    a = np.asarray(img, np.float32)
    if colour:
        a = a[None] * rng.uniform(0.7, 1.0, (c, 1, 1)) + rng.uniform(-0.15, 0.15, (c, 1, 1))
        return np.clip(a, -1, 1).astype(np.float32)
    return np.repeat(a[None], c, axis=0)


def _line(draw, rng: np.random.Generator, ink: float, top: int, band: int, left: int, right: int) -> None:
    """Glyphs of 1-4 strokes each, from `left` to `right`, in the band of rows [top, top + band)."""
    width_max = max(1, band // 8)
    x = float(left)
    while x < right:
        step = band * rng.uniform(0.3, 1.0)
        for _ in range(int(rng.integers(1, 5))):
            pts = [(float(x + rng.uniform(0, step)), float(top + rng.uniform(0, band)))
                   for _ in range(int(rng.integers(2, 4)))]
            kind = rng.random()
            sw = int(rng.integers(1, width_max + 1))
            if kind < 0.6:
                draw.line(pts, fill=ink, width=sw)
            elif kind < 0.9:
                x0, y0 = pts[0]
                r = band * rng.uniform(0.1, 0.4)
                a0 = float(rng.uniform(0, 360))
                draw.arc([x0 - r, y0 - r, x0 + r, y0 + r], a0, a0 + float(rng.uniform(90, 360)), fill=ink, width=sw)
            else:
                x0, y0 = pts[0]
                draw.ellipse([x0 - sw, y0 - sw, x0 + sw, y0 + sw], fill=ink)
        x += step + band * rng.uniform(0.0, 0.5)


def strokes_inputs(view, n: int, seed: int, other: int = 1, **options) -> dict[str, np.ndarray]:
    """Rendered-like synthetic images without fonts: `_strokes` (`options` are its keywords) for every
    image-shaped float input, other inputs as "noise". Why: "binary"'s thresholded 1/f field gives blobs larger
    than a glyph; text, line art and their small, thin strokes at several sizes are what a recogniser's filters
    are tuned to (and pages of such lines what a text detector's are: one line per 320x320 image kept PP-OCRv4
    det's pages at 0.2 at 0.10-0.65 F-score on sel-pages, a page of lines 0.80-0.81, "binary" 0.66-0.70). On
    the widened OCR selection set (PP-OCRv4 rec at 0.2, seeds 0-4) it kept a worst / mean of 0.852 / 0.939 of
    the original's accuracy, "binary" 0.570 / 0.826 (benchmarks/generalise_selection.txt)."""
    return _images(view, n, seed, other, lambda rng, f: _strokes(rng, *f.shape, **options))


def is_image(x: np.ndarray) -> bool:
    """Whether an input batch is images the image priors draw ((N, C, H, W) floats of at least 4x4)."""
    return _is_image_shape(x.shape, x.dtype)


def strokes_images(n: int, shape: tuple[int, int, int], seed: int, dtype=np.float32) -> np.ndarray:
    """`n` "strokes" images of `shape` (C, H, W), as `strokes_inputs` draws them for a model whose one image input
    has that shape (the same images for the same seed): for calibration images of a shape the model leaves free
    (spa.calib.prior_samples), e.g. pages wider than high where both sides are free."""
    x = np.empty((n, *shape), dtype)
    _fill(x, np.random.default_rng(seed + 1), lambda rng, f: _strokes(rng, *f.shape))
    return x


def _is_image_shape(shape, dtype) -> bool:
    """(N, C, H, W) floats of at least 4x4: what the image priors draw."""
    return len(shape) == 4 and np.dtype(dtype).kind == "f" and min(shape[2:]) >= 4


def mixed_inputs(view, n: int, seed: int, other: int = 1) -> dict[str, np.ndarray]:
    """One quarter each (rounded, at least the first part non-empty) of binary, inverted binary, structured and
    noise samples, in a seed-determined order."""
    sizes = [n // 4 + (1 if k < n % 4 else 0) for k in range(4)]
    parts: list[dict[str, np.ndarray]] = []
    for k, (make, size) in enumerate(zip((binary_inputs, binary_inputs, structured_inputs, noise_inputs), sizes)):
        if size == 0:
            continue
        feeds = make(view, size, seed * 4 + k, other)
        if k == 1:  # polarity flipped: a light minority on a dark background
            feeds = {name: -x if is_image(x) else x for name, x in feeds.items()}
        parts.append(feeds)
    order = np.random.default_rng(seed).permutation(n)
    return {name: np.concatenate([p[name] for p in parts])[order] for name in parts[0]}


# "common": the share of an embedding table's rows that token ids are drawn from, and the fewest rows for which
# it applies (a tokenizer's vocabulary; smaller alphabets such as Magika's bytes stay uniform). Chosen on the
# selection sentences of benchmarks/generalise.py (all-MiniLM-L6-v2 at 0.3, seed 0, local, cosine): uniform ids
# 0.832; top 5 % 0.876, 10 % 0.880, 25 % 0.876 by the first principal component; by low cosine to the mean row
# (a frequency direction in some models) 0.817 / 0.834 / 0.830; Zipf over the id order 0.815-0.839.
COMMON_SHARE = 0.1
COMMON_MIN_ROWS = 1024


def common_tokens(table: np.ndarray, share: float = COMMON_SHARE) -> np.ndarray:
    """Row ids of the `share` of an embedding table (rows = tokens) that lie furthest along its first principal
    component, on the side where rows are longer. Why: real text uses a small part of a vocabulary, and what a
    layer sees depends mostly on which tokens it sees, not on their order (with the ids of 27 real sentences
    shuffled into random sequences OBSPA kept cosine 0.913 on other sentences, with uniform ids 0.832); the first
    component of a trained table separates tokens that rarely occur (names, places, rare sub-words: short rows
    close to where training left them) from the everyday words of the language (all-MiniLM-L6-v2: 'covered',
    'failure', 'required' ... vs 'stevenson', 'pagoda', '##kney'), so its long-row side stands in for the
    frequent tokens that no tokenizer is at hand to count."""
    t = np.asarray(table, dtype=np.float64)
    rows = np.random.default_rng(0).choice(len(t), min(len(t), 8192), replace=False)
    centred = t - t.mean(axis=0)
    direction = np.linalg.svd(centred[np.sort(rows)], full_matrices=False)[2][0]
    proj = centred @ direction
    if np.corrcoef(proj, np.linalg.norm(t, axis=1))[0, 1] < 0:
        proj = -proj
    return np.sort(np.argsort(-proj, kind="stable")[: max(1, round(share * len(t)))])


def low_cosine_tokens(table: np.ndarray, share: float) -> np.ndarray:
    """Row ids of the `share` of an embedding table whose rows point least along the table's mean row. In
    all-MiniLM-L6-v2 that side holds the function words, punctuation and specials that `common_tokens` misses
    ('the', ',', 'to', 'of', [SEP]): its 10 % cover 67 % of the selection sentences' tokens by count, the common
    10 % only 24 % (benchmarks/minilm_why.txt)."""
    t = np.asarray(table, dtype=np.float64)
    mean = t.mean(axis=0)
    cos = (t @ mean) / np.maximum(np.linalg.norm(t, axis=1) * np.linalg.norm(mean), 1e-30)
    return np.sort(np.argsort(cos, kind="stable")[: max(1, round(share * len(t)))])


# the share of `low_cosine_tokens` that `everyday_tokens` adds to the common tokens. all-MiniLM-L6-v2 at 0.3, selection
# sentences, --calib-source common --allocate energy (damping 0.1, 261 samples): common tokens alone 0.905-0.909
# over seeds 0-4 (mean 0.908), with the 5 % least aligned 0.915-0.920 (mean 0.918); 2 % 0.916, 10 % 0.911 (seed 0).
LOW_SHARE = 0.05


def everyday_tokens(table: np.ndarray) -> np.ndarray:
    """`common_tokens` and the LOW_SHARE of `low_cosine_tokens`: the everyday words of both kinds. Why: how the
    pruned model's weights are updated depends mostly on which tokens the statistics see (benchmarks/minilm_why.txt:
    the prior's sequences with the ids of the evaluated sentences give 0.954, with the common tokens 0.908), and
    running text is mostly function words and punctuation, which the first component's long-row side leaves out."""
    return np.union1d(common_tokens(table), low_cosine_tokens(table, LOW_SHARE))


def common_token_inputs(view, n: int, seed: int, other: int = 1,
                        tokens: Callable[[np.ndarray], np.ndarray] = everyday_tokens) -> dict[str, np.ndarray]:
    """The default ("binary") inputs, with token ids indexing an embedding table of at least COMMON_MIN_ROWS
    rows drawn uniformly from `tokens` of that table (default `everyday_tokens`) instead of the whole
    vocabulary."""
    out = binary_inputs(view, n, seed, other)
    rng = np.random.default_rng((seed, 11))
    for name, x in out.items():
        found = _gather_table(view, name)
        if found is None or x.dtype.kind not in "iu":
            continue
        table = np.moveaxis(np.asarray(view.array(found[0])), found[1], 0)
        if len(table) >= COMMON_MIN_ROWS:
            table = table.reshape(len(table), -1)
            out[name] = rng.choice(tokens(table), x.shape).astype(x.dtype)
    return out


def has_token_inputs(view) -> bool:
    """Whether any integer graph input indexes an embedding table of at least COMMON_MIN_ROWS rows: token ids of a
    tokenizer's vocabulary, what "common" draws for (byte alphabets such as Magika's 257 rows are not)."""
    from .verify import NP_DTYPES

    for inp in view.model.graph.input:
        if inp.name not in view.graph_inputs:
            continue
        found = _gather_table(view, inp.name)
        dims = view.inits[found[0]].dims if found is not None else None
        if dims and dims[found[1]] >= COMMON_MIN_ROWS and \
                np.dtype(NP_DTYPES.get(inp.type.tensor_type.elem_type, np.float32)).kind in "iu":
            return True
    return False


# "token-splice": the lengths of the contiguous spans that spliced sequences are built from (spa.priors.spliced_ids)
SPLICE_SPAN = (4, 12)


def spliced_ids(rng: np.random.Generator, ids: np.ndarray, mask: np.ndarray | None, frames: np.ndarray,
                span: tuple[int, int] | None = None) -> np.ndarray:
    """New sequences from calibration sequences `ids` (rows; `mask` their padding masks, None: unpadded), one per
    entry of `frames` (row indices): that row's first and last unpadded tokens (where a tokenizer puts [CLS] /
    [SEP] or BOS / EOS) and its padding, with the positions between filled by contiguous spans of `span` tokens
    from the insides of random rows (default SPLICE_SPAN), each span starting at a random place. Why: unlike the
    shuffled bag, a span keeps its tokens' context (what attention mixes), while the sequences still put them in new
    neighbours and at new positions."""
    span = span or SPLICE_SPAN
    lengths = mask.sum(1) if mask is not None else np.full(len(ids), ids.shape[1])
    out = ids[frames].copy()
    inner = [ids[i, 1:max(1, lengths[i] - 1)] for i in range(len(ids))]
    donors = [i for i, t in enumerate(inner) if len(t)] or [0]
    for row, f in enumerate(frames):
        pos, end = 1, int(lengths[f]) - 1
        while pos < end:
            t = inner[donors[rng.integers(len(donors))]]
            k = int(rng.integers(span[0], span[1] + 1))
            start = int(rng.integers(0, max(1, len(t) - k + 1)))
            piece = t[start:start + min(k, end - pos)]
            if not len(piece):
                break
            out[row, pos:pos + len(piece)] = piece
            pos += len(piece)
    return out


def token_bag_inputs(view, calib: dict[str, np.ndarray], n: int, seed: int,
                     common: bool = False, splice: bool = False, bag: bool | None = None) -> dict[str, np.ndarray]:
    """`calib` followed by `n` synthetic samples of its shapes: token ids drawn (uniformly, independently per
    position) from the ids that `calib` holds for that input where its padding mask is 1, padding masks as the
    default source makes them, other inputs from the default source. Why: what a layer sees depends mostly on
    which tokens it sees (see `common_tokens`), and 32 real sentences put each token in few contexts: shuffled
    into new sequences, the same tokens give statistics closer to those of unseen sentences (all-MiniLM-L6-v2 at
    0.3, selection sentences, seed 0, OBS-cost allocation: 32 sentences 0.903, the 128 shuffled sequences alone
    0.926, both 0.938, with 512 shuffled 0.940). `common`: then `n` samples of `common_token_inputs` over the
    `common_tokens` (the bag's few hundred tokens widened by everyday words: 0.949 there). `splice`: the `n`
    sequences are `spliced_ids` of the calibration's instead (its spans keep their context; every other input of a
    spliced sequence, its padding mask included, is its frame row's); `bag` (default: without `splice`): the shuffled
    sequences too, after the spliced ones. BadArgument where an input's synthetic samples cannot have the
    calibration's shape."""
    from .errors import BadArgument

    names = [i.name for i in view.model.graph.input if i.name in view.graph_inputs]
    first = calib[names[0]]
    other = first.shape[1] if first.ndim > 1 else 1
    synth = binary_inputs(view, n, seed, other)
    # the widening stays the first component's common tokens: with `everyday_tokens` 0.9465 against 0.9485
    # (all-MiniLM-L6-v2 at 0.3, selection sentences, 32 calibration sentences, OBS-cost allocation, seed 0)
    wide = common_token_inputs(view, n, seed, other, tokens=common_tokens) if common else {}
    masks = {k: v for k, v in calib.items() if k in synth and vocabulary(view, k) is None and v.ndim == 2
             and v.dtype.kind in "iu"}
    rng = np.random.default_rng((seed, 13))
    spliced = np.random.default_rng((seed, 17))  # its own generator: the bag's draws stay what they were
    frames = spliced.integers(0, len(first), n)  # the spliced sequences' frame rows, the same for every input
    shuffled = not splice if bag is None else bag
    out = {}
    for name, x in calib.items():
        extra = synth.get(name)
        if extra is None or extra.shape[1:] != x.shape[1:]:
            raise BadArgument(f"token-bag: cannot make samples of {name!r} like the calibration's {list(x.shape)[1:]}")
        ids = vocabulary(view, name) is not None and x.dtype.kind in "iu"
        mask = next((m for m in masks.values() if m.shape == x.shape), None)
        parts = [x]
        if splice:
            parts.append(spliced_ids(spliced, x, mask, frames) if ids else x[frames])
        if shuffled:
            parts.append(rng.choice(x[mask != 0] if mask is not None else x.reshape(-1), extra.shape) if ids else extra)
        if common:
            parts.append(wide[name])
        out[name] = np.concatenate([q.astype(x.dtype) for q in parts])
    return out


PRIORS: dict[str, Prior] = {"mix": mixed_inputs, "common": common_token_inputs, "strokes": strokes_inputs}


# ---------------------------------------------------------------- byte streams
# An integer input is byte-like when the alphabet it indexes (an embedding's rows or a one-hot's depth, `vocabulary`)
# holds the 256 byte values and at most a few extra symbols (padding, end of file): Magika's 257.
BYTE_ALPHABET = (256, 264)
PUNCTUATION = np.frombuffer(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", np.uint8)
BYTE_REGIMES = ("text", "zeros", "integers", "random", "records")


def byte_alphabet(view, name: str) -> int | None:
    """The alphabet size of a byte-like integer input (see BYTE_ALPHABET), else None."""
    from .verify import NP_DTYPES

    inp = next((i for i in view.model.graph.input if i.name == name), None)
    if inp is None or np.dtype(NP_DTYPES.get(inp.type.tensor_type.elem_type, np.float32)).kind not in "iu":
        return None
    size = vocabulary(view, name)
    return size if size is not None and BYTE_ALPHABET[0] <= size <= BYTE_ALPHABET[1] else None


@dataclass
class _TextStyle:
    """One text file's habits: its words (over a Zipf-weighted alphabet, mostly lowercase) and their Zipf
    weights, its punctuation, indentation, line ending and line width."""

    words: list[bytes]
    weights: np.ndarray
    punct: np.ndarray
    p_punct: float
    indent: bytes
    newline: bytes
    width: int

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _TextStyle:
        letters = np.concatenate([np.arange(97, 123), np.arange(65, 91), np.arange(48, 58)])
        lw = 1.0 / np.arange(1, len(letters) + 1) ** rng.uniform(0.5, 1.5)
        lw = lw[rng.permutation(len(letters))] * np.where(letters >= 97, 1.0, rng.uniform(0.02, 0.3))
        ends = np.cumsum(rng.integers(1, 11, int(rng.integers(8, 200))))
        chars = rng.choice(letters, int(ends[-1]), p=lw / lw.sum()).astype(np.uint8)
        words = [w.tobytes() for w in np.split(chars, ends[:-1])]
        ww = 1.0 / np.arange(1, len(words) + 1) ** rng.uniform(0.8, 1.3)
        return cls(words, ww / ww.sum(), rng.choice(PUNCTUATION, int(rng.integers(2, 12)), replace=False),
                   float(rng.uniform(0.0, 0.4)), (b"  ", b"    ", b"\t")[int(rng.integers(3))],
                   b"\r\n" if rng.random() < 0.1 else b"\n", int(rng.integers(20, 120)))


def _text_bytes(rng: np.random.Generator, n: int, style: _TextStyle) -> np.ndarray:
    """Word-like printable ASCII in `style`: words separated by spaces and some punctuation, in lines of varied
    length with indentation (prose, code, markup, config files)."""
    m = n // 2 + 1  # words enough for n bytes (each with its separator is 2 bytes or more)
    picks = rng.choice(len(style.words), m, p=style.weights)
    marks = np.where(rng.random(m) < style.p_punct, rng.choice(style.punct, m), 0)
    breaks = style.width * rng.uniform(0.3, 1.0, m)
    steps = rng.integers(-1, 2, m)
    depth, out, start = 0, bytearray(), 0
    for k in range(m):
        out += style.words[picks[k]]
        if marks[k]:
            out.append(int(marks[k]))
        if len(out) - start >= breaks[k]:
            depth = max(0, depth + int(steps[k]))
            out += style.newline + style.indent * depth
            start = len(out)
        else:
            out.append(32)
        if len(out) >= n:
            break
    return np.frombuffer(bytes(out[:n]), np.uint8)


def _binary_bytes(rng: np.random.Generator, regime: str, n: int) -> np.ndarray:
    """One segment of a binary regime: zero (or 0xff) runs; little- or big-endian integers of 2/4/8 bytes with
    log-uniform magnitudes (mostly small: the high bytes are zero); uniform random bytes (compressed, encrypted);
    records (a short pattern repeated with a few bytes changed per copy: tables, headers, arrays of structs)."""
    if regime == "zeros":
        return np.full(n, 0xFF if rng.random() < 0.15 else 0, np.uint8)
    if regime == "random":
        return rng.integers(0, 256, n, dtype=np.uint8)
    if regime == "integers":
        width = int(rng.choice([2, 4, 8]))
        count = -(-n // width)
        v = np.exp(rng.uniform(0, np.log(2.0 ** min(8 * width - 1, 40)) * rng.uniform(0.2, 1.0), count))
        b = v.astype(np.uint64).astype(f"<u{width}" if rng.random() < 0.8 else f">u{width}").view(np.uint8)
        return b[:n]
    period = int(rng.integers(2, 33))
    pattern = rng.integers(0, 256, period, dtype=np.uint8)
    pattern[rng.random(period) < 0.5] = 0
    copies = np.tile(pattern, -(-n // period))[:n]
    change = rng.random(n) < rng.uniform(0.0, 0.3)
    copies[change] = rng.integers(0, 256, int(change.sum()), dtype=np.uint8)
    return copies


def byte_stream(rng: np.random.Generator, n: int, text_share: float = 0.5) -> np.ndarray:
    """n bytes of a file-like stream, without any file format: segments of log-uniform length in regimes
    (`_text_bytes`, `_binary_bytes`) that a sticky Markov chain switches between; a share `text_share` of the
    streams are text files (text segments only, sometimes a run of another regime), the rest binary (all
    regimes, text strings among them)."""
    text_file = rng.random() < text_share
    w = rng.dirichlet(np.ones(len(BYTE_REGIMES)))
    if text_file:
        w = np.where(np.arange(len(BYTE_REGIMES)) == 0, 1.0, 0.02 * w)
    w /= w.sum()
    regime = int(rng.choice(len(BYTE_REGIMES), p=w))
    style = _TextStyle.draw(rng)
    parts, size = [], 0
    while size < n:
        length = int(np.exp(rng.uniform(np.log(4), np.log(max(8, n)))))
        kind = BYTE_REGIMES[regime]
        part = _text_bytes(rng, length, style) if kind == "text" else _binary_bytes(rng, kind, length)
        parts.append(part)
        size += len(part)
        if rng.random() < 0.6:  # stay sticky
            regime = int(rng.choice(len(BYTE_REGIMES), p=w))
    return np.concatenate(parts)[:n]


def with_byte_streams(view, feeds: dict[str, np.ndarray], seed: int, *, text_share: float = 0.5,
                      pad_share: float = 0.4) -> dict[str, np.ndarray]:
    """`feeds` with every byte-like integer input (`byte_alphabet`) replaced by `byte_stream`s, one per sample over
    its non-batch values, a share `text_share` of them text files. An alphabet beyond the 256 byte values has
    symbols that no byte takes (padding): a share `pad_share` of the samples is a stream shorter than the input,
    the rest filled with the first such symbol at the start, at the end or around the middle (a file's head and
    tail side by side). Why: uniform ids give every byte value the same frequency and no byte its neighbours;
    real files are mostly a few values (text, zeros, small integers) in runs, and that is what a byte model's
    channels and their correlations see (benchmarks/generalise.py, Magika's selection files)."""
    rng = np.random.default_rng((seed, 17))
    out = dict(feeds)
    for name, x in feeds.items():
        size = byte_alphabet(view, name)
        if size is None or x.dtype.kind not in "iu":
            continue
        flat = np.empty((len(x), int(np.prod(x.shape[1:], dtype=np.int64))), x.dtype)
        length = flat.shape[1]
        for i in range(len(flat)):
            row = byte_stream(rng, length, text_share).astype(np.int64)
            if size > 256 and rng.random() < pad_share:
                keep = int(rng.integers(0, length))
                head = (keep, 0, keep // 2)[int(rng.integers(3))]  # padding at the end, the start, the middle
                row = np.concatenate([row[:head], np.full(length - keep, 256), row[head:keep]])
            flat[i] = row
        out[name] = flat.reshape(x.shape)
    return out


def has_byte_inputs(view) -> bool:
    """Whether any graph input is byte-like (`byte_alphabet`)."""
    return any(byte_alphabet(view, i.name) is not None for i in view.model.graph.input if i.name in view.graph_inputs)


def byte_stream_inputs(view, n: int, seed: int, other: int = 1, **options) -> dict[str, np.ndarray]:
    """"noise", with byte-like integer inputs as `with_byte_streams` (`options` are its keywords) makes them."""
    return with_byte_streams(view, noise_inputs(view, n, seed, other), seed, **options)


PRIORS["bytes"] = byte_stream_inputs
