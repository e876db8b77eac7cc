"""Second-order statistics of the layers that consume prunable channels, for calibration-aware criteria.

A *consumer* is a node that mixes channels with an initializer weight: Conv (group 1; im2col view, one column
per input channel × kernel position), Gemm (transA/transB honoured), MatMul with a 2-D initializer on the
right. Its weight is seen as a matrix W (rows = outputs, columns = inputs), optionally with its bias as one more
column fed by a constant 1, and its input statistics as H = Σ x xᵀ over input rows x (patches for Conv).

Where the inputs come from (`source`):
- "calib": real inputs from a `.npz` file (arrays keyed by graph input name, first axis = samples);
- "calib-prior" (with calibration inputs): those, plus synthetic images of the default prior ("strokes") of their
  shape (`prior_samples`); obspa's default where the calibration inputs are images (IMAGE_CALIB_SOURCE);
- "token-bag" (with calibration inputs): those, plus `samples` synthetic sequences whose token ids are drawn from
  the tokens the calibration inputs hold (spa.priors.token_bag_inputs); "token-bag-common": and as many of "common";
  "token-splice[-common]": the same with sequences spliced from contiguous spans of the calibration's instead;
  "token-splice-bag-common": the spliced, the shuffled and the common sequences;
- "noise": standard normal inputs pushed through the model (data-free);
- "strokes" (the default): for image inputs (N, C, H, W), rendered-like synthetic images without fonts: pen
  strokes (lines, arcs, dots) grouped like glyphs in a band of random height, dark on a light background at a
  random contrast; an image taller than a line (48 px) a page of such lines (spa.priors.strokes_inputs); byte-like
  integer inputs file-like byte streams, used to choose channels only (BYTE_RANK_ONLY); other inputs as "noise"
  (data-free);
- "bytes": byte-like integer inputs as the default makes them, other inputs as "noise" (data-free);
- "binary" (the default before "strokes"): for image inputs, two-level synthetic images: a spatially correlated
  field (1/f² power spectrum plus flat rectangles and thin strokes) thresholded so that 5-50 % of the pixels
  are -1 and the rest +1: sharp-edged shapes on a flat background; other inputs as "noise" (data-free);
- "structured": for image inputs, the same field kept continuous (natural-image statistics: the 1/f² spectrum
  of photographs and scans) at unit variance around a random brightness; other inputs as "noise" (data-free);
- "bn": analytic E[x xᵀ] from BatchNorm statistics where a consumer's input is BatchNorm (→ Relu): a channel is
  N(β, γ²), rectified by the Relu; channels and positions independent. Consumers without such a chain keep
  the "noise" statistics (data-free);
- "bn-synth": inputs optimised (through the ONNX → torch round trip) so that every BatchNorm's input batch
  statistics match its running mean/var (data-free, DeepInversion-style); then as "noise".

Activations are collected with onnxruntime (the consumers' inputs become extra graph outputs), in batches, and
H is accumulated per consumer: activations are never all held in memory. The batch follows the model: a graph
input whose first axis is fixed (a batch of 1: torch.onnx.export without dynamic_axes, many Keras exports) gets
batches of exactly that size; otherwise batches of up to 8 samples, fewer where their consumer inputs would
exceed `CAPTURE_BYTES`. The statistics sum over batches, so the sample count is the one asked for.

Memory is bounded on wide layers: a consumer with more than `DENSE_COLS` input columns (a VGG-16 conv has 4608,
its first Gemm 25088) keeps H as diagonal blocks over whole input channels instead of one dense matrix
(`Consumer.kind` "blocked"): correlations across blocks are dropped, each block is inverted on its own. All
consumers' H together stay under `H_BYTES` (narrower blocks for the widest ones beyond it), the rows held before
they are added to H under `PENDING_TOTAL`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from . import lapack, parallel
from .analysis import Analysis
from .errors import BadArgument
from .priors import PRIORS, binary_inputs, noise_inputs, structured_inputs, token_bag_inputs, vocabulary

log = logging.getLogger(__name__)

# PRIORS: spa/priors.py
# the sources that add synthetic token sequences to calibration inputs (spa.priors.token_bag_inputs), and which kinds
TOKEN_SOURCE_KINDS = {"token-bag": ("bag",), "token-bag-common": ("bag", "common"), "token-splice": ("splice",),
                      "token-splice-common": ("splice", "common"),
                      "token-splice-bag-common": ("splice", "bag", "common")}
TOKEN_CALIB_SOURCES = tuple(TOKEN_SOURCE_KINDS)
SOURCES = ("binary", "noise", "structured", "bn", "bn-synth", *PRIORS, "calib", "calib-prior",
           *TOKEN_CALIB_SOURCES)
WITH_CALIB = ("calib", "calib-prior", *TOKEN_CALIB_SOURCES)  # the sources that read calibration inputs
# "calib-prior": the calibration images followed by CALIB_PRIOR_SAMPLES images of the data-free default prior
# (DEFAULT_SOURCE) of the same shape (`prior_samples`), meant to guard what the real images do not show. Where the
# re-fit follows, CALIB_PRIOR_REFIT says which of them it fits to: "real" (the calibration images and their
# rescaled copies only) or "both". PP-OCRv4 rec calibrated on 32 lines of 3 of the OCR selection distributions and
# scored on the others too (benchmarks/calib_prior.txt, seeds 0-2, worst / mean share of the original at 0.2 / 0.3 /
# 0.5): on six distributions of text, 64 images in both kept 0.972 / 0.995, 0.929 / 0.989, 0.613 / 0.862 against
# 0.950 / 0.986, 0.936 / 0.982, 0.584 / 0.875 for the lines alone ("calib"), and it stayed an option; with the
# selection set's digit strings scored too (the lines hold none, as users' calibration sets often miss a kind of
# input), the lines alone fall to 0.78 on digits at 0.3 and the mix keeps 0.97: worst 0.969 / 0.929 / 0.243 against
# 0.950 / 0.783 / 0.194, mean 0.994 / 0.988 / 0.775 against 0.986 / 0.955 / 0.779 (run 3). 32 images, or the
# re-fit on the real ones only, guarded less (0.909 / 0.907 worst at 0.3). The cost: the covered lines' mean at 0.5
# (0.908 against 0.927), PP-OCRv4 det's selection pages at 0.5 (0.380 against 0.396; level at 0.2 / 0.3), and
# time (64 more images through the calibration pass and the re-fit: at 0.3 14.9x the l1 prune against 10.2x).
CALIB_PRIOR_SAMPLES = 64
CALIB_PRIOR_REFIT = "both"
# The --calib default for obspa where every calibration input is an image the prior draws (`priors.is_image`;
# `default_source`): "calib-prior", since branch calprior, for the guard above, at ratios up to
# IMAGE_CALIB_PRIOR_MAX_RATIO; beyond it (and with a target or plan instead of a ratio) the inputs alone ("calib"):
# at 0.5 the digits are lost either way (0.24 / 0.19) and the covered lines lose (obspa_calib_fast's choice set,
# benchmarks/obspa_calib_fast_choice.txt: worst 90.8 % of the original with the prior against 94.0 %; at 0.2 99.5
# against 99.3 %).
IMAGE_CALIB_SOURCE = "calib-prior"
IMAGE_CALIB_PRIOR_MAX_RATIO = 0.3
# obspa's relative damping (H + damp·mean diag H) per source where it differs from obspa.DAMP (0.01). A synthetic
# source is a guess at the inputs: more damping trusts its correlations less (towards the magnitude choice, no
# update). "common" (all-MiniLM-L6-v2 at 0.3, selection sentences, seed 0, local): damp 0.01 0.878, 0.03 0.884,
# 0.1 0.892, 0.3 0.884, 1.0 0.870; with --allocate energy 0.895 -> 0.906. Not for the image priors: PP-OCRv4 rec
# at 0.2 with "binary" and 0.1 kept 0.858 / 0.827 / 0.837 (seeds 0-2) against 0.934 / 0.902 / 0.924 at 0.01
# (benchmarks/generalise_selection.txt).
SOURCE_DAMP = {"common": 0.1}
# obspa's channel choice in rounds (Consumer.rounds; spa.criteria.obspa) for these sources: the image and plain
# calibration inputs. A candidate on benchmarks/obspa_calib_fast.py's choice set (PP-OCRv4 rec at 0.5, 32 lines,
# seeds 0-2: worst 95.5 % / mean 95.9 % with 16 rounds, 95.2 / 95.5 with 8, against 94.0 / 94.6 in one shot;
# benchmarks/obspa_calib_fast_choice.txt); on PP-OCRv4 det's selection pages at 0.5 11 of 12 rows gain (worst 0.3945
# against 0.3650). Held out once (benchmarks/obspa_calib_fast.txt): 93.4 % worst at 0.5 against 91.0 % (93.8 % with the
# faster implementation), 98.1-98.3 % at 0.2 against 99.1 %; the plan stage ~0.6 s longer. Data-free and token sources
# keep one shot (not measured with rounds).
ROUNDS = 16
ROUND_SHARE = 0.75  # the rounds remove at most this share of a group's channels; the rest are scored in one last
# round (the energy allocation with a re-fit removes at most REFIT_ENERGY_CAP x the ratio of a group: 0.55 at 0.5)
ROUND_SOURCES = ("calib", "calib-prior")
# Synthetic samples per source where they differ from `data_free_samples`: a token sequence gives one row per
# token (32 here), so 128 samples give all-MiniLM-L6-v2's 1536-wide MLP consumers under 3 rows per column. "common"
# with 512 (damp 0.1, selection sentences, 0.3): 0.903 vs 0.892 local (seed 0); 0.910 / 0.909 / 0.910 vs
# 0.906 / 0.902 / 0.905 with --allocate energy (seeds 0-2). Up to that many: the sample budget below still
# applies (MiniLM at 32 tokens, 0.34 GMACs a sample: 261).
SOURCE_SAMPLES = {"common": 512}
# The data-free default. "strokes" replaced "binary" after "binary" (chosen on clean DejaVu lines,
# benchmarks/obspa_{digits,ocr}.txt) kept 0.72 of PP-OCRv4 rec's accuracy on held-out fonts and conditions at 0.2:
# on the widened selection set of benchmarks/generalise.py (6 distributions, seeds 0-4) "strokes" keeps a worst /
# mean of 0.852 / 0.939, "binary" 0.570 / 0.826 (benchmarks/generalise_selection.txt; held-out: generalise_ocr_rec.txt).
DEFAULT_SOURCE = "strokes"
# ...and for obspa on a model with token-id inputs (spa.priors.has_token_inputs: an embedding table of a tokenizer's
# vocabulary; images and byte alphabets keep DEFAULT_SOURCE, or "calib" with --calib): "common" data-free, and with
# calibration sentences "token-splice-bag-common" (those counted twice, sequences spliced from spans of them, sequences
# of their tokens shuffled and of the common tokens), both with the plan spread by the OBS cost (TOKEN_ENERGY_SOURCES).
# all-MiniLM-L6-v2, benchmarks/generalise.py, chosen on the selection sentences (generalise_selection.txt), then held
# out (generalise_minilm.txt), cosine to the original's embeddings at 0.3: data-free worst / mean over seeds 0-4
# 0.915 / 0.918 against 0.823 / 0.827 with DEFAULT_SOURCE's
# uniform ids and padding masks (held out 0.874 / 0.889 vs 0.784 / 0.794); with 32 sentences 0.9485 against 0.8688
# for "calib" with its re-fit (seed 0; held out, docstrings / licence, 0.929 / 0.944 vs 0.810 / 0.861).
# "token-splice-common" then replaced "token-bag-common" (branch minilm2; the shuffled bag loses the tokens' context,
# the spans keep it): worst of seeds 0-2 on the selection sentences at 0.1 / 0.2 / 0.3 / 0.5 0.9900 / 0.9733 / 0.9517 /
# 0.8641 against 0.9893 / 0.9706 / 0.9485 / 0.8584, better at every ratio and seed (generalise_selection.txt); then
# "token-splice-bag-common" (the shuffled sequences back beside the spliced ones) 0.9903 / 0.9738 / 0.9536 / 0.8641
# (means 0.9905 / 0.9742 / 0.9538 / 0.8669 against 0.9902 / 0.9740 / 0.9522 / 0.8658).
TOKEN_SOURCE = "common"
TOKEN_CALIB_SOURCE = "token-splice-bag-common"
# The sources whose obspa plan is spread by the OBS cost by default, without a re-fit (spa.api._allocation; capped at
# spa.sensitivity.ENERGY_CAP): the token sources, each measured with and without it on all-MiniLM-L6-v2's selection
# sentences at 0.3, seed 0 (generalise_selection.txt): "common" (its first form, 128 / 512 samples) 0.906 / 0.910 vs
# 0.892 / 0.903 local, "token-bag" 0.937 vs 0.925; the "token-splice" sources measured with it only.
TOKEN_ENERGY_SOURCES = ("common", *TOKEN_CALIB_SOURCES)
# obspa's trust check of its update (Consumer.trust) for the data-free sources; off with calibration inputs. "shrink"
# on the selection sets of benchmarks/generalise.py (seeds 0-1/0-2, benchmarks/generalise_selection.txt): Magika v3.3
# 0.9686/0.9543/0.9286/0.7714 at 0.1/0.2/0.3/0.5 (mean of seeds) vs 0.9686/0.9543/0.9229/0.7315 without (l1
# 0.9886/0.9829/0.9543/0.7943: the choice of channels loses too), where a fit on synthetic bytes hurt the real
# files (benchmarks/magika_why.txt) and the held-aside half shrinks the Conv's update; PP-OCRv4 rec at 0.2 mean
# 0.9205 (worst 0.9048) vs 0.9201 (0.9024) with "binary"; all-MiniLM-L6-v2 ("common", energy) at 0.3 0.9092 vs 0.9084
# (seed 0). "gate" (all or nothing) changed no Magika or OCR number. Not the default: with today's "strokes" prior
# PP-OCRv4 rec's widened selection set at 0.2 (seeds 0-2, 6 distributions) keeps worst / mean 0.845 / 0.936 of the
# original with "shrink" against 0.852 / 0.937 without, and Magika still loses to l1 with it; `--trust shrink`.
DATA_FREE_TRUST: str | None = None
# Byte-like integer inputs (an embedding or one-hot of the 256 byte values and at most 8 more symbols such as
# padding, spa.priors.byte_alphabet: Magika's 257) get file-like byte streams from the default source
# (spa.priors.with_byte_streams; source "bytes" for them and "noise" elsewhere) instead of uniform ids, and a model
# with such inputs uses these statistics to choose channels only (Consumer.rank_only): a fit to synthetic bytes
# hurt real files (benchmarks/magika_why.txt). Magika v3.3's selection files (benchmarks/generalise_selection.txt,
# seeds 0-4, worst / mean; l1 0.989 / 0.983 / 0.954 / 0.794 at 0.1 / 0.2 / 0.3 / 0.5): uniform ids with the update
# (the default before) 0.966 / 0.909 / 0.869 / 0.720 worst; byte streams with the update 0.954 / 0.960 / 0.920 /
# 0.766 (a first draft of the generator); byte streams, OBS choice without the update 0.977 / 0.960 / 0.949 / 0.846
# (draft); byte streams, chosen by the cost without an update, no update (this) 0.983 / 0.971 / 0.960 / 0.937
# (means 0.986 / 0.977 / 0.969 / 0.944). Held out (benchmarks/generalise_magika.txt, 192 other files, worst):
# 0.917 / 0.865 / 0.885 / 0.802 vs l1 0.896 / 0.896 / 0.854 / 0.729, uniform ids with the update 0.906 / 0.833 /
# 0.760 / 0.562.
BYTE_RANK_ONLY = True
# The sources whose statistics of a byte model only choose channels: the data-free ones above and real files
# ("calib", --calib; then without obspa's re-fit and with the local plan, spa.api). Magika v3.3's selection files at
# 0.1 / 0.2 / 0.3 / 0.5 (benchmarks/generalise_selection.txt, seed 0, calibrated with the list's 16 other files):
# choice only, local 0.971 / 0.966 / 0.949 / 0.920; with the update, re-fit and energy allocation (before)
# 0.914 / 0.703 / 0.606 / 0.406: fitted to a few files, the update serves them and not the next ones; choice only
# with the energy allocation 0.977 / 0.966 / 0.954 / 0.514. Held out (benchmarks/generalise_magika.txt, 32 files, worst
# of text / binary): 0.927 / 0.896 / 0.906 / 0.844 vs 0.938 / 0.896 / 0.833 / 0.719 with the update (l1 0.896 / 0.896 /
# 0.854 / 0.729).
BYTE_RANK_ONLY_SOURCES: tuple[str, ...] = (DEFAULT_SOURCE, "bytes", "calib")
# How many times the calibration inputs are repeated among a token source's sequences (its synthetic ones drawn from
# the repeats alike), where not once: their rows count that many times in H beside the synthetic rows.
# all-MiniLM-L6-v2 at 0.3, selection sentences, 32 calibration sentences, OBS-cost allocation, seeds 0-2
# (benchmarks/generalise_selection.txt): "token-splice-common" 0.9500 / 0.9516 / 0.9521 once, 0.9523 / 0.9526 / 0.9517
# twice, 0.9518 / 0.9515 / 0.9526 four times; "token-bag-common" 0.9485 / 0.9491 / 0.9488 once, 0.9509 / 0.9518 /
# 0.9519 twice (kept once: its rows before stay what they were).
REAL_REPEATS = {"token-splice-common": 2, "token-splice-bag-common": 2}
ROWS_PER_BATCH = 4096  # im2col rows kept per consumer and batch (a random subset beyond that)...
ROWS_TOTAL = 16384  # ...or fewer when there are many batches: about this many rows per consumer in all
# ...and half as many from real calibration inputs ("calib"): PP-OCRv4 rec at 0.5 with 32 lines and their rescaled
# copies (benchmarks/obspa_calib_fast_choice.txt, choice set, seeds 0-2) kept 93.6 % of the original's accuracy on
# average (worst seed 91.8 %) against 93.5 % (91.9 %) with 16384, at half the im2col rows and Gram products
CALIB_ROWS_TOTAL = 8192
# Synthetic samples per data-free source. More samples, not more rows, steady the result: PP-OCRv4 rec at 0.2
# (benchmarks/obspa_ocr.txt, "binary" over seeds 0-7) spreads 0.877-0.940 with 32 samples, 0.898-0.934 with
# 128 (min 90.4 % of the original's accuracy).
DATA_FREE_SAMPLES = 128
# ...fewer where one sample costs more: the samples together cost at most SAMPLE_MACS_BUDGET MACs (the forward
# pass; 128 samples of PP-OCRv4 rec, 1x3x48x320 at 0.70 GMACs, where 128 was measured) and SAMPLE_VALUES_BUDGET input
# values (the synthesis and the im2col rows grow with the image: a 320x320 detector's first conv gives 25600 rows
# per sample, of which about ROWS_TOTAL are kept over all samples; 32 samples of 3x320x320), and never fewer than
# MIN_DATA_FREE_SAMPLES. The forward of 128 samples was the largest term of data-free obspa on ResNet-50 at 224x224
# (18.7 of 39 CPU s) and on PP-OCRv4 det at 320x320; with the budget (22 and 32 samples) they stay under 20x the l1
# prune. Why 32 for 320x320: NudeNet at 0.2 (benchmarks/obspa_cost_budget.txt, seeds 0-3) kept 0.818 class-logit
# correlation with 32 samples, 0.820 with 128, 0.809 with 19. Models no bigger than PP-OCRv4 rec in both (OCR
# rec/cls, digits, the tiny zoos, token inputs) keep 128.
SAMPLE_MACS_BUDGET = 90 * 10**9  # 128 x 0.7025 GMACs
SAMPLE_VALUES_BUDGET = 32 * 3 * 320 * 320
MIN_DATA_FREE_SAMPLES = 16
BN_SYNTH_SAMPLES = 32  # bn-synth optimises its inputs through torch: 4x the samples, 4x the minutes
BATCH = 8  # samples per onnxruntime run where the model leaves the batch free...
CAPTURE_BYTES = 256 << 20  # ...fewer where one batch's consumer inputs would exceed this
RUNS_BYTES = 2 * CAPTURE_BYTES  # consumer inputs of the batches run side by side (and the one being read), together
# input rows held per consumer before they are added to H (one product beats many small ones)... but not many more:
# the products then run during the pass, beside the next batches' runs, not all after it (PP-OCRv4 rec's widest
# consumer, 2881 columns, held 3200 of its 3840 rows at 32 MiB)
PENDING_BYTES = 8 << 20
PENDING_TOTAL = 512 << 20  # ...and by all consumers together (DenseNet-121's 120 held 2 GB at 32 MiB each)
# A consumer with more input columns than this keeps H as diagonal blocks (see the module docstring): a dense H
# of 3072 columns is 72 MiB in float64 and its inverse as much (one of 25088 would be 5 GiB each). PP-OCRv4
# rec's widest consumer (2880) stays exact; a 4096-input Dense (Keras simple_cnn tiny) cost 2.2 s and 710 MB
# dense, 0.5 s and 200 MB blocked (benchmarks/obspa_cost.txt).
DENSE_COLS = 3072
# ...and 2048 where obspa's sequential re-fit follows: H then ranks the channels, spreads the ratio and gives the re-fit
# its starting point, and the re-fit fits every consumer again on its own dense H' of the pruned inputs. PP-OCRv4 rec
# at 0.5 with 32 lines (benchmarks/obspa_calib_fast.py's choice set, seeds 0-2): its 2881-column consumer blocked
# kept 94.0 % of the original's accuracy in the worst seed, 94.6 % on average, dense 93.6 % / 94.1 %; its products
# and inverse were a sixth of the calibrated prune (5.65 s -> 4.84 s at top priority, one run, alternated)
REFIT_DENSE_COLS = 2048
DENSE_COLS_ENV = "SPA_DENSE_H_COLS"  # overrides DENSE_COLS (tests force the blocked path on tiny models)
BLOCK_COLS = 1024  # columns per diagonal block at most...
BLOCK_BYTES = 256 << 20  # ...and fewer on very wide layers, so that one consumer's blocks stay under this
H_BYTES = 512 << 20  # all consumers' H together (their inverses as much again): narrower blocks beyond this


@dataclass
class Consumer:
    """One channel-mixing layer, with its weight as a (rows = outputs, columns = inputs) matrix.

    Its statistics H = Σ x xᵀ (over the columns and, with a bias, one more constant-1 column) are kept as one Gram
    matrix per part of `parts`: a single part with every column ("dense"), or diagonal blocks over whole input
    channels, the bias column in each ("blocked"). In float32, the precision of the rows, of the products that
    sum them and of the inverse (float64 was a conversion and a second copy of the widest H per product: 0.27 s of
    PP-OCRv4 rec's calibrated prune, whose 2881-column H takes 33 MB)."""

    node: int
    op: str
    x: str  # the input tensor whose channels are consumed
    weight: str  # initializer name
    in_axis: int  # axis of the initializer that runs over input channels
    bias: str | None = None  # a 1-D initializer added to the outputs (compensated with the constant column)
    kernel: tuple[int, ...] = ()  # Conv
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    trans_a: bool = False
    parts: list[np.ndarray] | None = field(default=None, repr=False)  # column ids per block; None: one dense H
    grams: list[np.ndarray | None] = field(default_factory=list, repr=False)  # H of each part
    rows: int = 0
    damp: float | None = None  # obspa's relative damping of H for these statistics (None: its default)
    # obspa's trust check of its update ("gate", "shrink"; None: off): the held-aside rows' H (every other batch
    # of samples, also in `grams`), against which an update fitted on the other rows is checked (obspa.compensate);
    # a second dense H per consumer while on (not counted in H_BYTES), none for blocked consumers (not checked)
    trust: str | None = None
    held: np.ndarray | None = field(default=None, repr=False)
    held_rows: int = 0
    # statistics that choose channels but do not fit an update (obspa scores the removal without one and leaves
    # the weights): synthetic byte streams (BYTE_RANK_ONLY)
    rank_only: bool = False
    rounds: int = 1  # obspa chooses this consumer's channels in that many rounds (spa.criteria.obspa; 1: one shot)
    _hinv: list[np.ndarray] | None = field(default=None, repr=False)
    _hinv_damp: float | None = field(default=None, repr=False)

    @property
    def per_index(self) -> int:
        """Columns per input channel index (kernel positions for Conv)."""
        return math.prod(self.kernel)  # math, not numpy: called per channel while scoring (0.7 s on DenseNet-121)

    @property
    def kind(self) -> str:
        """How H is stored: "dense" or "blocked" (reported by `prune --json`)."""
        return "dense" if self.parts is None else "blocked"

    @property
    def H(self) -> np.ndarray | None:
        """The dense H (None before any rows are added); blocked consumers have no single H."""
        assert self.parts is None, "a blocked consumer has no dense H"
        return self.grams[0] if self.grams else None

    def matrix(self, w: np.ndarray) -> np.ndarray:
        """The initializer as (outputs, columns)."""
        if self.op == "Conv":
            return w.reshape(w.shape[0], -1)
        return np.moveaxis(w, self.in_axis, 1).reshape(-1, w.shape[self.in_axis]) if w.ndim == 2 else w

    def from_matrix(self, m: np.ndarray, like: np.ndarray) -> np.ndarray:
        if self.op == "Conv":
            return m.reshape(like.shape)
        return np.moveaxis(m, 1, self.in_axis).copy() if self.in_axis == 0 else m

    def columns(self, index: np.ndarray) -> np.ndarray:
        """Column ids of input channel indices."""
        k = self.per_index
        return (np.asarray(index)[:, None] * k + np.arange(k)[None, :]).reshape(-1)

    def diag(self) -> np.ndarray:
        """Diagonal of H / rows: mean square of every column (the bias column last, where there is one)."""
        if self.parts is None:
            assert self.grams
            return np.diag(self.grams[0]).astype(np.float64) / max(1, self.rows)  # as the blocked path
        d = np.zeros(int(max(int(p.max()) for p in self.parts)) + 1)
        for p, h in zip(self.parts, self.grams):
            d[p] = np.diag(h)
        return d / max(1, self.rows)

    @property
    def inverse_work(self) -> int:
        """The size of inverting H (Σ columns³ over its parts): the order in which inverses are run side by side,
        widest first, so that the last ones are short."""
        return sum(h.shape[0] ** 3 for h in self.grams)

    def hinv(self, damp: float) -> list[np.ndarray]:
        """The inverse of every part's damped H (H / rows + damp·mean(diag) on its diagonal; the mean over all
        columns, so that blocks are damped alike), cached: the scoring and the update share it."""
        if self._hinv is None or self._hinv_damp != damp:
            d = float(np.mean(self.diag()))
            inv = []
            for h in self.grams:
                # a new array, in the precision of the inverse: the damping is added to its diagonal in place
                h = np.multiply(h, 1.0 / max(1, self.rows), dtype=np.float32)
                h[np.diag_indices_from(h)] += damp * d if d > 0 else 1e-8
                inv.append(spd_inverse(h))
            self._hinv, self._hinv_damp = inv, damp
        return self._hinv

    def rows_of(self, x: np.ndarray, rng: np.random.Generator, limit: int = ROWS_PER_BATCH) -> np.ndarray:
        """Input rows (one per output position) of a batch of this consumer's input (a random `limit` of them)."""
        if self.op == "Conv":
            r = _im2col(x, self.kernel, self.strides, self.pads, self.dilations, limit, rng)
        elif self.op == "Gemm":
            r = x.T if self.trans_a else x
        else:
            r = x.reshape(-1, x.shape[-1])
        if len(r) > limit:
            r = r[np.sort(rng.choice(len(r), limit, replace=False))]
        r = r.astype(np.float32, copy=False)
        if self.bias is not None:
            r = np.concatenate([r, np.ones((len(r), 1), np.float32)], axis=1)
        return r

    def add(self, r: np.ndarray) -> None:
        """Add rows (from `rows_of`) to H, block by block, in place."""
        first = not self.grams
        for i, p in enumerate([None] if self.parts is None else self.parts):
            rp = r if p is None else r[:, p]
            g = rp.T @ rp  # float32, as the rows
            if first:
                self.grams.append(g)
            else:
                self.grams[i] += g
        self.rows += len(r)
        self._hinv = None

    def add_held(self, r: np.ndarray) -> None:
        """Add rows (also given to `add`) to the held-aside H of the trust check (dense consumers only)."""
        g = (r.T @ r).astype(np.float64)
        self.held = g if self.held is None else self.held + g
        self.held_rows += len(r)

    def set_moments(self, mean: np.ndarray, var: np.ndarray) -> None:
        """H from per-column means and variances of independent columns: E[x xᵀ] = μμᵀ + diag(σ²)."""
        blocks = [np.arange(len(mean))] if self.parts is None else self.parts
        self.grams = [np.outer(mean[p], mean[p]) + np.diag(var[p]) for p in blocks]
        self.rows = 1
        self._hinv = None


def block_parts(comps: np.ndarray, per_index: int, bias: bool, width: int) -> list[np.ndarray]:
    """Column ids of H's diagonal blocks: the input indices of one channel (`comps`: its component per index)
    together, at most `width` columns per block (a channel wider than that is split), then the bias column
    (id = the column count) in every block, so that each block re-fits the bias on its own share."""
    cap = max(1, width // per_index)  # input indices per block
    order = np.argsort(comps, kind="stable")
    runs = np.split(order, np.flatnonzero(np.diff(comps[order])) + 1)  # the indices of each channel
    blocks: list[np.ndarray] = []
    cur: list[np.ndarray] = []
    for run in runs:
        if cur and sum(map(len, cur)) + len(run) > cap:
            blocks.append(np.concatenate(cur))
            cur = []
        while len(run) > cap:  # one channel wider than a block: split
            blocks.append(run[:cap])
            run = run[cap:]
        cur.append(run)
    if cur:
        blocks.append(np.concatenate(cur))
    n_cols = len(comps) * per_index
    k = np.arange(per_index)
    out = []
    for b in blocks:
        cols = np.sort((np.sort(b)[:, None] * per_index + k[None, :]).reshape(-1))
        out.append(np.append(cols, n_cols) if bias else cols)
    return out


def dense_cols(default: int = DENSE_COLS) -> int:
    """Input columns up to which a consumer keeps a dense H: $SPA_DENSE_H_COLS, else `default` (DENSE_COLS, or
    REFIT_DENSE_COLS where obspa's re-fit follows)."""
    from .settings import env_int

    return env_int(DENSE_COLS_ENV, default, "columns")


def spd_inverse(h: np.ndarray) -> np.ndarray:
    """Inverse of the damped (symmetric positive definite) H: single-precision LAPACK Cholesky potrf/potri when
    scipy is installed (2.1x faster than numpy's float64 inverse on a 4608² H here, relative difference 1e-6:
    the damping bounds the condition number), returned in float32, its precision (the same values as the float64
    copy it was returned as, without the copies), without holding the GIL (spa.lapack); numpy's float64 inverse
    otherwise or if the factorisation fails."""
    if not lapack.available():  # pragma: no cover - scipy comes with scikit-learn in the dev install
        return np.linalg.inv(h)
    low = lapack.cholesky_inverse_lower(h)
    if low is not None:
        full = low + low.T
        full[np.diag_indices_from(full)] -= np.diag(low)
        return full
    return np.linalg.inv(h.astype(np.float64))


def _im2col(x: np.ndarray, kernel, strides, pads, dilations, limit: int | None = None,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """(N, C, *spatial) → (N·positions, C·prod(kernel)), columns ordered like W.reshape(M, -1). With `limit`,
    only a random `limit` of the rows (in order), gathered straight from x (no padded copy of the whole
    activation: on a 320x320 detector that copy was a fifth of the statistics' time)."""
    nd = len(kernel)
    n, c = x.shape[:2]
    span = [dilations[i] * (kernel[i] - 1) + 1 for i in range(nd)]
    out = tuple((x.shape[2 + i] + pads[i] + pads[i + nd] - span[i]) // strides[i] + 1 for i in range(nd))
    rows = n * int(np.prod(out))
    cols = c * int(np.prod(kernel))
    if limit is not None and rows > limit:
        assert rng is not None
        pick = np.sort(rng.choice(rows, limit, replace=False))
        at = np.unravel_index(pick, (n, *out))
        if all(k == 1 for k in kernel) and not any(pads):  # pointwise (most consumers): a row is one pixel
            at_pixel = np.ravel_multi_index(tuple(at[1 + i] * strides[i] for i in range(nd)), x.shape[2:])
            return x.reshape(n, c, -1)[at[0], :, at_pixel]  # (limit, C): the same values, no window gathers
        idx, valid = [], np.ones((limit, *kernel), bool)
        for i in range(nd):  # input coordinate of every (row, kernel position) along spatial axis i
            shape = [limit] + [1] * nd
            shape[1 + i] = kernel[i]
            ci = (at[1 + i][:, None] * strides[i] - pads[i] + np.arange(kernel[i]) * dilations[i]).reshape(shape)
            valid &= (ci >= 0) & (ci < x.shape[2 + i])
            idx.append(np.clip(ci, 0, x.shape[2 + i] - 1))
        g = x[(at[0].reshape([limit] + [1] * nd), slice(None), *idx)]  # (limit, *kernel, C)
        g = np.where(valid[..., None], g, 0)  # positions in the padding are zeros
        return np.moveaxis(g, -1, 1).reshape(limit, cols)
    pad_width = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)]
    xp = np.pad(x, pad_width)
    win = np.lib.stride_tricks.sliding_window_view(xp, span, axis=tuple(range(2, 2 + nd)))
    sl = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides) + tuple(
        slice(None, None, d) for d in dilations
    )
    win = win[sl]  # (N, C, *out, *kernel)
    perm = (0,) + tuple(range(2, 2 + nd)) + (1,) + tuple(range(2 + nd, 2 + 2 * nd))
    return win.transpose(perm).reshape(rows, cols)  # (N, *out, C, *kernel)


def find_consumers(a: Analysis, dense: int = DENSE_COLS) -> dict[tuple[str, int], Consumer]:
    """Consumers whose input-channel slot belongs to a prunable group, keyed by (weight, in_axis). Those with
    more than `dense_cols(dense)` input columns get blocked statistics."""
    view = a.view
    wide = dense_cols(dense)
    wanted = {(m.tensor, m.axis) for g in a.prunable for m in g.params if m.role == "in"}
    out: dict[tuple[str, int], Consumer] = {}
    for i, node in enumerate(view.model.graph.node):
        rule = a.rules.rule_for(node)  # which ops are consumers, and how, is the rules' knowledge
        spec = rule.consumer(node, view) if rule is not None else None
        if spec is None:
            continue
        c, w = Consumer(i, **vars(spec)), spec.weight
        if (w, c.in_axis) not in wanted or len(view.consumers.get(w, [])) != 1:
            continue
        if c.bias is not None and len(view.consumers.get(c.bias, [])) != 1:
            c.bias = None
        out[(w, c.in_axis)] = c
    # H's width per consumer: all its columns, or blocks of at most BLOCK_COLS (fewer where one consumer's blocks
    # would exceed BLOCK_BYTES); then narrower blocks for the widest ones while all H together exceed H_BYTES
    n_cols = {k: len(a.slot_comps[k]) * c.per_index for k, c in out.items()}
    width = {k: d if d <= wide else max(1, min(BLOCK_COLS, BLOCK_BYTES // (8 * d))) for k, d in n_cols.items()}
    cap = _width_for_budget([(n_cols[k], width[k]) for k in out], H_BYTES)
    for k, c in out.items():
        if n_cols[k] > wide or cap < n_cols[k]:
            c.parts = block_parts(a.slot_comps[k], c.per_index, c.bias is not None, min(width[k], cap))
    return out


def _width_for_budget(sizes: list[tuple[int, int]], budget: int) -> int:
    """The widest block width w such that every consumer's float64 H, as blocks of at most w columns (or its
    own width if narrower), fits in `budget` bytes together (DenseNet-121 has 120 consumers of ~1000 columns:
    2.4 GB of H and inverses dense). No cap (a huge width) when they fit already."""
    def total(w: int) -> int:
        return sum(8 * d * min(own, w) for d, own in sizes)

    hi = max((own for _, own in sizes), default=1)
    if total(hi) <= budget:
        return 1 << 62
    lo = 1
    while lo < hi:  # the largest w with total(w) <= budget (1 when even that does not fit)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if total(mid) <= budget else (lo, mid - 1)
    return lo


# ---------------------------------------------------------------- inputs


def load_calib(path: str | Path, model: onnx.ModelProto, **preprocess) -> dict[str, np.ndarray]:
    """Calibration inputs from an .npz or a folder of images (`preprocess`: its options), see
    spa.images.load_inputs. One-line errors."""
    from .images import load_inputs

    return load_inputs(path, model, **preprocess)


def _dims(dims) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def batches_of(feeds: dict[str, np.ndarray], batch: int) -> Iterator[dict[str, np.ndarray]]:
    n = len(next(iter(feeds.values())))
    for i in range(0, n, batch):
        yield {k: v[i : i + batch] for k, v in feeds.items()}


# ---------------------------------------------------------------- collection


# what `accumulate` shows each batch's consumer inputs to: (consumers, batch index, input name → values)
BatchHook = Callable[[dict[tuple[str, int], Consumer], int, dict[str, np.ndarray]], None]


def collect(
    a: Analysis,
    source: str = DEFAULT_SOURCE,
    calib: dict[str, np.ndarray] | None = None,
    *,
    samples: int | None = None,
    batch: int | None = None,
    seed: int = 0,
    feeds: dict[str, np.ndarray] | None = None,
    on_batch: BatchHook | None = None,
    damp: float | None = None,
    trust: str | None = None,
    dense: int = DENSE_COLS,
) -> dict[tuple[str, int], Consumer]:
    """H per consumer from the chosen source (see the module docstring). `feeds`: that source's inputs when
    the caller already made them (`source_feeds`), so that they are made once; `samples`: how many a data-free
    source makes (default `data_free_samples`); `batch`: samples per run (default `batch_size`); `on_batch`:
    see `accumulate`; `damp`: obspa's relative damping of these statistics (default: SOURCE_DAMP's for the
    source, else obspa's); `trust`: obspa's trust check of its update (see Consumer.trust; "off": none; default
    DATA_FREE_TRUST for a data-free source, none with calibration inputs); `dense`: the widest consumer with a
    dense H (DENSE_COLS; REFIT_DENSE_COLS where obspa's re-fit follows), $SPA_DENSE_H_COLS before either."""
    source = _effective_source(source, calib)
    cons = find_consumers(a, dense)
    if not cons:
        return cons
    from .priors import has_byte_inputs

    rank_only = BYTE_RANK_ONLY and source in BYTE_RANK_ONLY_SOURCES and has_byte_inputs(a.view)
    for c in cons.values():
        c.damp = damp if damp is not None else SOURCE_DAMP.get(source)
        c.trust = None if trust == "off" else trust or (None if source in WITH_CALIB else DATA_FREE_TRUST)
        c.rank_only = rank_only
        c.rounds = ROUNDS if source in ROUND_SOURCES else 1
    if feeds is None:
        feeds = source_feeds(a, source, calib, samples=samples, seed=seed)
    batch = batch or batch_size(a.view, cons)
    accumulate(a.view.model, cons, feeds, batch=batch, seed=seed, on_batch=on_batch,
               rows_total=CALIB_ROWS_TOTAL if source in ("calib", "calib-prior") else ROWS_TOTAL,
               workers=run_workers(a.view, cons, batch))
    if source == "bn":
        bn_analytic(a.view, cons)
    return cons


def default_source(view, criterion: str, calibrated: bool, feeds: dict[str, np.ndarray] | None = None,
                   ratio: float | None = None) -> str:
    """The source when none is named: TOKEN_SOURCE / TOKEN_CALIB_SOURCE for obspa on a model with token-id inputs;
    IMAGE_CALIB_SOURCE for obspa at a `ratio` up to IMAGE_CALIB_PRIOR_MAX_RATIO with calibration inputs `feeds`
    that are all images (measured with obspa only); else DEFAULT_SOURCE (which calibration inputs make "calib",
    `_effective_source`)."""
    from .priors import has_token_inputs, is_image

    if criterion == "obspa" and has_token_inputs(view):
        return TOKEN_CALIB_SOURCE if calibrated else TOKEN_SOURCE
    if (criterion == "obspa" and calibrated and feeds and all(is_image(x) for x in feeds.values())
            and ratio is not None and ratio <= IMAGE_CALIB_PRIOR_MAX_RATIO + 1e-9):
        return IMAGE_CALIB_SOURCE
    return DEFAULT_SOURCE


def _effective_source(source: str, calib: dict[str, np.ndarray] | None) -> str:
    """"calib" when calibration inputs are given, else `source`; one-line errors for an unknown source or
    "calib" without inputs."""
    if source not in SOURCES:
        raise BadArgument(f"unknown calibration source {source!r} (choose from {', '.join(SOURCES)})")
    if calib is not None:
        return source if source in WITH_CALIB else "calib"
    if source in WITH_CALIB:
        raise BadArgument(f"source {source!r} needs calibration inputs (--calib FILE.npz)")
    return source


def source_feeds(a: Analysis, source: str, calib: dict[str, np.ndarray] | None, *, samples: int | None = None,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """The inputs a source pushes through the model (deterministic for a seed): `samples` of them for a
    data-free source (default `data_free_samples`)."""
    source = _effective_source(source, calib)
    if samples is not None and samples < 1:
        raise BadArgument(f"--calib-samples must be at least 1, got {samples}")
    fixed = fixed_batch(a.view.model)
    if source in WITH_CALIB:
        assert calib is not None
        if source == "calib-prior":
            n = CALIB_PRIOR_SAMPLES if samples is None else samples  # synthetic images after the real ones
            if fixed:  # the real ones and the prior's each in whole batches (spa.api counts the real ones so)
                calib, n = _whole_batches(calib, fixed), -(-n // fixed) * fixed
            extra = prior_samples(a.view, calib, n, seed)
            if extra is None:
                log.warning("calib-prior: no prior samples of the calibration inputs' shapes; the calibration "
                            "inputs alone")
            else:
                calib = {k: np.concatenate([v, extra[k]]) for k, v in calib.items()}
        elif source != "calib":
            n = DATA_FREE_SAMPLES if samples is None else samples  # synthetic sequences beside the real ones
            real, kinds = REAL_REPEATS.get(source, 1), TOKEN_SOURCE_KINDS[source]
            calib = token_bag_inputs(a.view, {k: np.concatenate([v] * real) for k, v in calib.items()}, n, seed,
                                     common="common" in kinds, splice="splice" in kinds, bag="bag" in kinds)
        return _whole_batches(calib, fixed) if fixed else calib
    other = synthesis_size(a.view, seed, fixed or 1)
    if samples is None:
        samples = data_free_samples(a.view, other, SOURCE_SAMPLES.get(source, DATA_FREE_SAMPLES))
    if fixed:
        samples = -(-samples // fixed) * fixed  # whole batches
    if source == "bn-synth":
        return bn_synth_inputs(a.view, min(samples, BN_SYNTH_SAMPLES), seed, other=other)
    if source in PRIORS:
        from .priors import with_byte_streams

        feeds = PRIORS[source](a.view, samples, seed, other)
        # the default's byte-like inputs: file-like byte streams (BYTE_RANK_ONLY's comment)
        return with_byte_streams(a.view, feeds, seed) if source == DEFAULT_SOURCE else feeds
    if source == "structured":
        return structured_inputs(a.view, samples, seed, other)
    if source == "binary":
        return binary_inputs(a.view, samples, seed, other)
    return noise_inputs(a.view, samples, seed, other)


def prior_samples(view, calib: dict[str, np.ndarray], n: int, seed: int) -> dict[str, np.ndarray] | None:
    """`n` samples of the data-free default prior (DEFAULT_SOURCE) shaped like the calibration inputs, keyed and
    ordered as `calib`: image inputs drawn by the prior at the calibration images' size, others as "noise". Where
    every input is an image, each is drawn at its own shape (spa.priors.strokes_images; two free sides of
    different sizes too); else None where the model's declared shapes cannot give the calibration's."""
    from .priors import is_image, strokes_images

    if DEFAULT_SOURCE == "strokes" and all(is_image(x) for x in calib.values()):
        return {name: strokes_images(n, x.shape[1:], seed, x.dtype) for name, x in calib.items()}
    first = next(iter(calib.values()))
    declared = view.shape(next(iter(calib))) or ()
    free = [first.shape[i] for i, d in enumerate(declared) if i and not d and i < first.ndim]
    synth = PRIORS[DEFAULT_SOURCE](view, n, seed, free[0] if free else 1)
    out = {}
    for name, x in calib.items():
        extra = synth.get(name)
        if extra is None or extra.shape[1:] != x.shape[1:]:
            return None
        out[name] = extra.astype(x.dtype)
    return out


def data_free_samples(view, other: int = 1, want: int = DATA_FREE_SAMPLES) -> int:
    """Synthetic samples for the data-free statistics of this model at the synthesis size `other`: `want`
    (DATA_FREE_SAMPLES unless the source asks for more, SOURCE_SAMPLES), fewer where they would cost more input
    values than SAMPLE_VALUES_BUDGET or more MACs than SAMPLE_MACS_BUDGET, at least MIN_DATA_FREE_SAMPLES (see
    those constants)."""
    from .report import model_stats
    from .verify import input_shapes

    dims = input_shapes(view.model, other)
    per = fixed_batch(view.model) or 1  # the dims hold a fixed batch of samples
    values = sum(int(np.prod(d, dtype=np.int64)) for d in dims.values()) // per
    try:
        macs = model_stats(view, at=dims).macs // per
    except Exception as e:  # noqa: BLE001 - a cost estimate only: without it, the input values decide
        log.debug("no MAC count for the sample budget (%s)", e)
        macs = 0
    n = min(SAMPLE_VALUES_BUDGET // max(1, values), SAMPLE_MACS_BUDGET // max(1, macs))
    return int(min(want, max(MIN_DATA_FREE_SAMPLES, n)))


def fixed_batch(model: onnx.ModelProto) -> int | None:
    """The batch size the model fixes: the static first dim of its graph inputs (1 for torch.onnx.export without
    dynamic_axes and for many Keras exports); None when the batch is free."""
    inits = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name not in inits and len(dims) >= 2 and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return int(dims[0].dim_value)
    return None


def real_count(view, feeds: dict[str, np.ndarray]) -> int:
    """How many of a source's inputs are the calibration inputs `feeds`: their count, filled up to whole batches
    where the model fixes its batch (`_whole_batches`)."""
    n, fixed = len(next(iter(feeds.values()))), fixed_batch(view.model)
    return -(-n // fixed) * fixed if fixed else n


def _whole_batches(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """Calibration samples filled up to whole batches of a model with a fixed batch (the first samples again)."""
    n = len(next(iter(feeds.values())))
    if n % batch == 0:
        return feeds
    m = -(-n // batch) * batch
    log.warning("the model's batch is fixed at %d: %d calibration samples are filled up to %d by repeating the "
                "first ones", batch, n, m)
    return {k: np.take(v, np.arange(m) % n, axis=0) for k, v in feeds.items()}


def batch_size(view, cons: dict[tuple[str, int], Consumer] | None = None) -> int:
    """Samples per onnxruntime run: the model's fixed batch, else BATCH or fewer where one batch's consumer
    inputs (static dims; unknown ones counted as 1) would exceed CAPTURE_BYTES."""
    fixed = fixed_batch(view.model)
    if fixed:
        return fixed
    return int(max(1, min(BATCH, CAPTURE_BYTES // max(1, _sample_bytes(view, cons)))))


def run_workers(view, cons: dict[tuple[str, int], Consumer], batch: int) -> tuple[int, int]:
    """How a calibration pass runs its batches (spa.parallel.ordered_map): side by side, one per core, and how
    many of them may be under way or done and unread while the statistics of one are added: as many as fit in
    RUNS_BYTES with the one being read (the runs go on meanwhile); one at a time where only one fits."""
    held = int(RUNS_BYTES // max(1, batch * _sample_bytes(view, cons))) - 1
    return (1, 1) if held < 2 else (min(parallel.workers(), held), held)


def _sample_bytes(view, cons: dict[tuple[str, int], Consumer] | None) -> int:
    """Bytes of one sample's consumer inputs (static dims; unknown ones counted as 1)."""
    per_sample = 0
    for x in {c.x for c in (cons or {}).values()}:
        s = view.shape(x) or ()
        per_sample += 4 * int(np.prod([d if d else 1 for d in s[1:]], dtype=np.int64))
    return per_sample


_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def float_inputs_only(view) -> bool:
    """Whether every graph input is floating-point (images, features): no token or byte ids, no masks."""
    return all(i.type.tensor_type.elem_type in _FLOATS for i in view.model.graph.input if i.name in view.graph_inputs)


def synthesis_size(view, seed: int, batch: int = 1) -> int:
    """The size for symbolic non-batch dims (sequence length, image size) at which the model runs on synthetic
    inputs: the first of 32, 64, 16, 8 (then verify.OTHER_SIZES); 1 without such dims. Models with inputs the
    sources only guess at (integers other than token ids, unknown rank) are tried once as well. Raises
    BadArgument naming the input(s) when the model runs on none: such a model needs --calib."""
    from .verify import OTHER_SIZES, first_runnable_size

    inputs = [i for i in view.model.graph.input if i.name in view.graph_inputs]
    free = [i for i in inputs if any(k > 0 and not d.dim_value for k, d in enumerate(i.type.tensor_type.shape.dim))]
    suspects = [i for i in inputs if (
        view.shape(i.name) is None
        or (i.type.tensor_type.elem_type not in _FLOATS and vocabulary(view, i.name) is None))]
    if not free and not suspects:
        return 1
    sizes = tuple(dict.fromkeys((32, 64, 16, 8) + tuple(OTHER_SIZES))) if free else (1,)
    size = first_runnable_size(view.model, lambda size: noise_inputs(view, batch, seed, size), sizes)
    if size is not None:
        return size
    named = suspects or free or inputs
    what = ", ".join(f"{i.name!r} ({onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type).lower()} "
                     f"{_dims(i.type.tensor_type.shape.dim)})" for i in named)
    raise BadArgument(f"cannot synthesise input{'s' if len(named) > 1 else ''} {what} for data-free statistics "
                      "(the model does not run on random values there): pass real inputs with --calib FILE.npz")


def session_with_outputs(model: onnx.ModelProto, names: list[str], threads: int = 0):
    """An onnxruntime session of `model` that computes the intermediate tensors `names`, its outputs, and
    nothing after them: the nodes they do not depend on are left out, and with them the model's own outputs
    (PP-OCRv4 rec: 5 of its 860 nodes, the head's 120 -> 6625 MatMul at 40 steps and its softmax, 4.5 % of the MACs;
    the values of `names` are the same). `threads`: its intra-op threads, 0 for onnxruntime's default."""
    from .verify import session
    from .view import producers_of

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    keep = producers_of(g, names)
    if names and keep and len(keep) < len(g.node):
        nodes = [g.node[i] for i in sorted(keep)]
        del g.node[:]
        g.node.extend(nodes)
        del g.output[:]
    have = {o.name for o in g.output}
    g.output.extend([onnx.ValueInfoProto(name=t) for t in names if t not in have])
    # graph optimisations on: the statistics need the values, not the graph as written (PP-OCRv4 rec, 32 lines with
    # every consumer input an output: 1.91 s against 2.19 s without, median of 3 on a loaded machine; values within
    # 6e-6 relative)
    # numpy work on the outputs runs beside; no arena of its own (spa.verify.session)
    return session(m, optimize=True, threads=threads, spinning=False, arena=False)


def accumulate(model: onnx.ModelProto, cons: dict[tuple[str, int], Consumer], feeds: dict[str, np.ndarray],
               *, batch: int = BATCH, seed: int = 0, on_batch: BatchHook | None = None,
               rows_total: int = ROWS_TOTAL, workers: tuple[int, int] = (1, 1)) -> None:
    """Run the model with every consumer input as an extra output; add each batch's rows to H (a random subset
    of the im2col rows: about `rows_total` per consumer over all samples). `on_batch(cons, index, values)` sees
    every batch's consumer inputs too (the OBSPA re-fit keeps its own rows of them instead of running the model
    again). `workers`: batches run side by side, single-threaded each, and batches under way or unread at most
    (`run_workers`); (1, 1): one at a time with onnxruntime's threads."""
    names = sorted({c.x for c in cons.values()})
    sess = session_with_outputs(model, names, threads=1 if workers[0] > 1 else 0)
    rng = np.random.default_rng(seed)
    n = len(next(iter(feeds.values())))
    limit = min(ROWS_PER_BATCH, max(32 * batch, -(-rows_total * batch // max(n, 1))))
    pending: dict[int, list[np.ndarray]] = {id(c): [] for c in cons.values()}
    runs = parallel.ordered_map(lambda b: sess.run(names, b), batches_of(feeds, batch), *workers)
    for bi, out in enumerate(runs):
        vals = dict(zip(names, out))
        if on_batch is not None:
            on_batch(cons, bi, vals)
        total = 0
        for c in cons.values():
            rows = pending[id(c)]
            rows.append(c.rows_of(np.asarray(vals[c.x]), rng, limit))
            if c.trust and bi % 2 and c.parts is None:  # every other batch of samples is held aside as well
                c.add_held(rows[-1])
            held = sum(map(len, rows))
            # one big product beats many small ones, up to a bound on the rows held
            if held >= ROWS_PER_BATCH or 4 * held * rows[0].shape[1] >= PENDING_BYTES:
                c.add(np.concatenate(rows))
                rows.clear()
            total += sum(r.nbytes for r in rows)
        del vals, out
        if total > PENDING_TOTAL:
            _flush(cons, pending)
    _flush(cons, pending)


def _flush(cons: dict[tuple[str, int], Consumer], pending: dict[int, list[np.ndarray]]) -> None:
    """Add every consumer's held rows to its H, consumers side by side (each adds to its own H)."""
    held = [c for c in cons.values() if pending[id(c)]]
    for _ in parallel.ordered_map(lambda c: c.add(np.concatenate(pending[id(c)])), held, parallel.workers()):
        pass
    for c in held:
        pending[id(c)].clear()


# ---------------------------------------------------------------- BatchNorm-based sources

_PASS = ("Identity", "Dropout", "MaxPool", "AveragePool")


def _bn_moments(view, x: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel mean and second moment of tensor x if it is BatchNorm → (Relu | Clip(0, ..)) (through
    pooling/identity ops, whose effect on the moments is ignored); None when the chain does not allow it."""
    nodes = view.model.graph.node
    relu = False
    t = x
    for _ in range(8):
        i = view.producer.get(t)
        if i is None:
            return None
        n = nodes[i]
        if n.op_type in _PASS:
            t = n.input[0]
            continue
        if n.op_type == "Relu" and not relu:
            relu, t = True, n.input[0]
            continue
        if n.op_type == "BatchNormalization" and all(s in view.inits for s in n.input[1:3]):
            gamma = view.array(n.input[1]).astype(np.float64)
            beta = view.array(n.input[2]).astype(np.float64)
            if not relu:
                return beta, beta**2 + gamma**2
            s = np.maximum(np.abs(gamma), 1e-12)
            z = beta / s
            pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
            cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
            mean = beta * cdf + s * pdf
            m2 = (beta**2 + s**2) * cdf + beta * s * pdf
            return mean, m2
        return None
    return None


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


def bn_analytic(view, cons: dict[tuple[str, int], Consumer]) -> int:
    """Replace H by the analytic E[x xᵀ] wherever the consumer's input is BatchNorm (→ Relu). Returns how many."""
    done = 0
    for c in cons.values():
        mom = _bn_moments(view, c.x)
        if mom is None:
            continue
        mean, m2 = mom
        k = c.per_index
        mu = np.repeat(mean, k)
        var = np.repeat(m2 - mean**2, k)
        if c.bias is not None:
            mu = np.append(mu, 1.0)
            var = np.append(var, 0.0)
        c.set_moments(mu, var)
        done += 1
    log.info("bn: analytic statistics for %d of %d consumers", done, len(cons))
    return done


def bn_synth_inputs(view, n: int, seed: int, steps: int = 200, lr: float = 0.1,
                    other: int = 1) -> dict[str, np.ndarray]:
    """Inputs optimised so that every BatchNorm's input batch statistics match its running mean/var (Adam on
    the inputs, through the ONNX → torch round trip). Falls back to noise if the model has no BatchNorm or
    cannot be converted."""
    feeds = noise_inputs(view, n, seed, other)
    bns = [nd for nd in view.model.graph.node if nd.op_type == "BatchNormalization"
           and all(s in view.inits for s in nd.input[1:5])]
    if not bns or len(feeds) != 1:
        return feeds
    try:
        import torch

        from .onnx_to_torch import onnx_to_torch
    except Exception:  # noqa: BLE001 - optional (torch extra)
        log.warning("bn-synth needs torch and converters/; using noise inputs")
        return feeds
    m = onnx.ModelProto()
    m.CopyFrom(view.model)
    del m.graph.output[:]
    m.graph.output.extend([onnx.ValueInfoProto(name=nd.input[0]) for nd in bns])
    try:
        net = onnx_to_torch(m)
    except Exception as e:  # noqa: BLE001
        log.warning("bn-synth: model not convertible to torch (%s); using noise inputs", e)
        return feeds
    for p in net.parameters():
        p.requires_grad_(False)
    stats = [(torch.tensor(view.array(nd.input[3]), dtype=torch.float32),
              torch.tensor(view.array(nd.input[4]), dtype=torch.float32)) for nd in bns]
    (name, x0), = feeds.items()
    x = torch.tensor(x0, requires_grad=True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        outs = net(x)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        loss = torch.zeros(())
        for o, (mu, var) in zip(outs, stats):
            dims = [d for d in range(o.dim()) if d != 1]
            loss = loss + (o.mean(dims) - mu).pow(2).mean() / var.mean() + (o.var(dims) - var).pow(2).mean() / var.pow(2).mean()
        loss.backward()
        opt.step()
    log.info("bn-synth: BatchNorm statistics loss %.4g after %d steps", float(loss.detach()), steps)
    return {name: x.detach().numpy().astype(x0.dtype)}
