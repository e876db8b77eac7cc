"""Calibration-aware criteria: OBSPA (Optimal Brain Surgeon on groups), activation norm, structured Wanda.

They read the consumers of a group's channels (`spa.calib.Consumer`: Conv/Gemm/MatMul weight columns, role
"in") and each consumer's input statistics H = Σ x xᵀ (damped by `damping(c)`·mean(diag H): DAMP unless the
statistics say otherwise, spa.calib.Consumer.damp).

OBSPA scores channel c by the least-squares cost of removing its columns P (all kernel positions, all indices
the channel owns) from every consumer while the remaining columns are optimally re-fitted:
ΔL = ½ Σ_rows w_P ([H⁻¹]_PP)⁻¹ w_Pᵀ, summed over consumers. After the plan is known, `compensate` applies the
joint update δw = −w_P([H⁻¹]_PP)⁻¹[H⁻¹]_P,: (computed as the equivalent re-fit on the kept columns) to every
consumer, bias included where the layer has one (a constant-1 input column). The result is a dict of
full-size initializer overrides that the rewriter slices and the zero-group oracle zeroes.

A consumer whose statistics are trusted for the choice only (`Consumer.rank_only`: synthetic byte streams,
spa.calib) gets no update, so its channels are scored by what removing them costs without one:
ΔL = ½ Σ_rows w_P H_PP w_Pᵀ (the output energy the columns carry).

In rounds (`Consumer.rounds` R > 1: the calibration sources, `spa.calib.ROUND_SOURCES`): per consumer, each round
removes the cheapest 1/R of the group's channels by those costs and applies their joint update to w and H⁻¹
(H⁻¹ ← H⁻¹ − [H⁻¹]_:,P ([H⁻¹]_PP)⁻¹ [H⁻¹]_P,:, the inverse of H without them) before the next round scores the
rest. One-shot costs are each channel's alone: two correlated channels that each make up for the other both look
cheap, and both go. A channel's score is its cost in the round that removed it (made non-decreasing over the
rounds); the final update (`compensate`) is the joint one for the plan, as before.

Groups without any supported consumer fall back to L1.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import onnx
from onnx import numpy_helper

from .. import parallel
from ..analysis import Analysis, Group, Member
from ..calib import Consumer, spd_inverse
from .magnitude import l1

log = logging.getLogger(__name__)

DAMP = 0.01
REFIT_DAMP = 0.01  # the re-fit's damping (relative to mean diag H')
# input rows per consumer and batch in the re-fit's C and H' (a random subset beyond that). Chosen on
# benchmarks/obspa_calib_fast.py's choice set (PP-OCRv4 rec at 0.5, 32 calibration lines, seeds 0-2): 1024 keeps
# 88.7 % of the original's accuracy on average, 4096 88.8 %, 16384 89.0 %, at a quarter of 4096's products.
# REFIT_DAMP there: 0.01 88.8 %, 0.1 85.2 %, 0.001 83.1 %; re-fitting depthwise convs per channel too: 86.5 %.
# With the rescaled copies of spa.augment (64 inputs, 8 batches): 512 rows 90.5 % (worst seed 89.4 %), 1024 90.5 %
# (88.7 %), and with a near copy (scipy zoom, centred in height) 4096 90.4 %, REFIT_DAMP 0.003 89.5 % and 0.03
# 89.7 % against 90.7 % at 0.01; an intercept for the bias-free convs before a
# BatchNormalization (fitted into its running mean) 90.5 %, so not kept. 512: the rows 32 inputs had, half the time.
# With two copies (96 inputs, 12 batches) and the energy allocation: 384 rows 93.5 % (worst 91.9 %), 512 93.6 %
# (91.8 %; both with spa.calib.CALIB_ROWS_TOTAL): 384, the rows of 64 inputs at 512 each, a quarter less work.
REFIT_ROWS = 384
CAPTURE_BYTES = 512 << 20  # the original's re-fit rows kept from the calibration pass, all consumers together
LayerInputs = dict[tuple[str, int], Consumer]  # per consumer (weight, axis): statistics of its inputs (H)


def damping(c: Consumer) -> float:
    """The relative damping of a consumer's H: the one its statistics were collected with, else DAMP."""
    return DAMP if c.damp is None else c.damp


def _consumer_members(group: Group, layers: LayerInputs) -> list[tuple[Member, Consumer]]:
    return [(m, layers[(m.tensor, m.axis)]) for m in group.params if m.role == "in" and (m.tensor, m.axis) in layers]


def _channel_columns(m: Member, c: Consumer, size: int) -> list[np.ndarray]:
    """The consumer's column ids of each channel 0..size-1 (its input indices in order, each index's columns):
    one sort, not one scan of the indices per channel (1.6 s of DenseNet-121's scoring)."""
    ids = np.asarray(m.ids)
    order = np.argsort(ids, kind="stable")  # a channel's indices stay in increasing order
    bounds = np.searchsorted(ids[order], np.arange(size + 1))
    cols = c.columns(order[bounds[0] : bounds[-1]])
    return np.split(cols, (bounds[1:-1] - bounds[0]) * c.per_index)


def obspa(group: Group, weights: Callable[[str], np.ndarray], rng, layers: LayerInputs) -> np.ndarray:
    pairs = _consumer_members(group, layers)
    if not pairs:
        return l1(group, weights, rng)
    total = np.zeros(group.size)
    for m, c in pairs:
        W = c.matrix(weights(c.weight))  # columns are taken (as float64) per chunk of channels
        cols = _channel_columns(m, c, group.size)
        if c.rank_only:
            total += _plain_costs(W, c, cols)
            continue
        if c.rounds > 1 and group.size > 1:
            total += _round_costs(c, W, cols)
            continue
        for part, Hi in zip(_parts(c), c.hinv(damping(c))):
            # a channel's cost is the sum over the diagonal blocks its columns fall in (one block when dense)
            local = cols if part is None else _locals(part, cols)
            total += _removal_costs(W, Hi, local, part)
    return np.maximum(total, 0.0) + 1e-12


def _round_costs(c: Consumer, W: np.ndarray, cols: list[np.ndarray]) -> np.ndarray:
    """The channels' costs chosen in `c.rounds` rounds (module doc): each round's cheapest share is removed from
    float64 copies of w and of each block's H⁻¹ (compacted as they go) before the next is scored; past ROUND_SHARE
    of the channels, the rest are scored in one last round.

    Only the group's own columns take part. Removing some of them changes H⁻¹ and w on the others through the
    entries of H⁻¹ among the group's columns alone (H⁻¹ without P is a Schur complement), so a consumer's other
    columns (another group's through a Concat, the bias) are dropped from the start: the same costs, and a
    fraction of the work where the group feeds part of a wide consumer. Where w has more rows than columns, its
    Gram matrix wᵀw stands in for it (the same costs, fewer products). Channels with as many columns in a block
    are scored together (`_Bucket`), not one by one."""
    from ..calib import ROUND_SHARE

    size = len(cols)
    blocks = []
    for part, hi in zip(_parts(c), c.hinv(damping(c))):
        local = cols if part is None else _locals(part, cols)
        sel = np.unique(np.concatenate(local)) if local else np.zeros(0, np.int64)
        if not len(sel):
            continue
        w = np.asarray(W[:, sel if part is None else part[sel]], dtype=np.float64)  # never the bias column
        gram = w.shape[0] > w.shape[1]
        blocks.append(_RoundBlock(hi[np.ix_(sel, sel)].astype(np.float64), w.T @ w if gram else w, gram,
                                  _buckets([np.searchsorted(sel, p) for p in local])))
    step, last = -(-size // c.rounds), int(np.ceil(ROUND_SHARE * size))
    alive, score, floor = np.ones(size, bool), np.zeros(size), 0.0
    while True:
        cost = np.zeros(size)
        for blk in blocks:
            blk.add_costs(cost)
        idx = np.nonzero(alive)[0]
        removed = size - len(idx)
        pick = idx[np.argsort(cost[idx], kind="stable")][: step if removed + step <= last else len(idx)]
        score[pick] = np.maximum(cost[pick], floor)
        floor = float(score[pick].max())
        alive[pick] = False
        if not alive.any():
            return score
        for blk in blocks:
            blk.remove(alive)


class _Bucket(NamedTuple):
    """The channels `ch` of a round block with p columns each there, and their positions (len(ch), p)."""

    ch: np.ndarray
    pos: np.ndarray


def _buckets(local: list[np.ndarray]) -> list[_Bucket]:
    """Channels grouped by their column count in the block (none: not in it)."""
    by_p: dict[int, list[int]] = defaultdict(list)
    for ch, p in enumerate(local):
        if len(p):
            by_p[len(p)].append(ch)
    return [_Bucket(np.asarray(chs), np.stack([local[ch] for ch in chs])) for chs in by_p.values()]


class _RoundBlock:
    """One block of a consumer in `_round_costs`: H⁻¹ and w (or wᵀw) on the group's columns in it, as removals
    leave them."""

    def __init__(self, hi: np.ndarray, w: np.ndarray, gram: bool, buckets: list[_Bucket]):
        self.hi, self.w, self.gram, self.buckets = hi, w, gram, buckets

    def add_costs(self, cost: np.ndarray) -> None:
        """Add ½ tr(([H⁻¹]_PP)⁻¹ G_PP), G = wᵀw, of each channel's columns P here to `cost`."""
        for b in self.buckets:
            ix = (b.pos[:, :, None], b.pos[:, None, :])
            if self.gram:
                G = self.w[ix]
            else:
                wp = self.w[:, b.pos]  # (rows, channels, p)
                G = np.einsum("rcp,rcq->cpq", wp, wp)
            if b.pos.shape[1] == 1:
                cost[b.ch] += 0.5 * G[:, 0, 0] / self.hi[ix][:, 0, 0]
            else:
                cost[b.ch] += 0.5 * np.trace(np.linalg.solve(self.hi[ix], G), axis1=1, axis2=2)

    def remove(self, alive: np.ndarray) -> None:
        """Apply the joint update of the channels no longer `alive` that are still here, and drop their columns."""
        P = np.concatenate([b.pos[~alive[b.ch]].ravel() for b in self.buckets] or [np.zeros(0, np.int64)])
        if not len(P):
            return
        hi, w = self.hi, self.w
        keep = np.ones(len(hi), bool)
        keep[P] = False
        K = np.nonzero(keep)[0]
        # H⁻¹ without P: H⁻¹_KK − L Lᵀ with L = [H⁻¹]_KP C⁻ᵀ, C a factor of [H⁻¹]_PP = C Cᵀ (one symmetric
        # product, on the kept rows only); w − w_P S with S = ([H⁻¹]_PP)⁻¹ [H⁻¹]_PK = C⁻ᵀ Lᵀ. C⁻¹ is formed
        # (|P| is a round's share of the group): two products instead of two solves, a third of their time
        try:
            C = np.linalg.cholesky(hi[np.ix_(P, P)])
        except np.linalg.LinAlgError:  # rounding left [H⁻¹]_PP short of definite: its symmetric square root
            vals, vecs = np.linalg.eigh(hi[np.ix_(P, P)])
            C = vecs * np.sqrt(np.maximum(vals, 1e-12 * max(float(vals.max()), 1e-300)))
        Ci = np.linalg.inv(C)
        Lt = Ci @ hi.take(P, 0).take(K, 1)  # Lᵀ
        S = Ci.T @ Lt
        if self.gram:  # (w - w_P S)ᵀ (w - w_P S), on the kept columns
            GS = w.take(K, 0).take(P, 1) @ S
            self.w = w.take(K, 0).take(K, 1)
            self.w += S.T @ (w[np.ix_(P, P)] @ S) - GS - GS.T
        else:
            self.w = w.take(K, 1)
            self.w -= w.take(P, 1) @ S
        self.hi = hi.take(K, 0).take(K, 1)  # two takes: half the time of one np.ix_ gather
        self.hi -= Lt.T @ Lt
        at = np.cumsum(keep) - 1  # old position -> new
        self.buckets = [_Bucket(b.ch[a], at[b.pos[a]]) for b in self.buckets if (a := alive[b.ch]).any()]


def invert(layers: LayerInputs) -> None:
    """Every consumer's damped H⁻¹ (Consumer.hinv, cached on it for the scoring and the update), consumers side by
    side, the widest first. Groups scored side by side (spa.sensitivity) asked for them as they came: a consumer
    of two groups (PP-OCRv4 rec's 2880-column conv reads the Concat of two) was inverted by both at once, and its
    groups held up the rest: the energy plan's costs took 0.29-0.30 s on two threads, 0.24 s on one, now 0.17-0.22 s
    (with spa.lapack's inverses, which leave the GIL to the other thread)."""
    todo = sorted((c for c in layers.values() if c.grams and not c.rank_only), key=lambda c: -c.inverse_work)
    for _ in parallel.ordered_map(lambda c: c.hinv(damping(c)), todo, parallel.workers()):
        pass


SOLVE_BYTES = 64 << 20  # float64 weight columns gathered per batched solve


def _parts(c: Consumer) -> list[np.ndarray | None]:
    """Each block's column ids (None for the dense H, whose ids are the columns themselves)."""
    return [None] if c.parts is None else list(c.parts)


def _local(part: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Positions within `part` (sorted column ids) of the columns of P that lie in it."""
    pos = _local_positions(part, P)
    return pos[pos >= 0]


def _locals(part: np.ndarray, cols: list[np.ndarray]) -> list[np.ndarray]:
    """`_local` of every channel's columns, in one search."""
    if not cols:
        return []
    pos = _local_positions(part, np.concatenate(cols))
    cuts = np.cumsum([len(P) for P in cols])[:-1]
    return [p[p >= 0] for p in np.split(pos, cuts)]


def _local_positions(part: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Position within `part` of each column of P, -1 where it is not in it."""
    pos = np.minimum(np.searchsorted(part, P), len(part) - 1)
    return np.where(part[pos] == P, pos, -1)


def _removal_costs(W: np.ndarray, Hi: np.ndarray, local: list[np.ndarray], part: np.ndarray | None) -> np.ndarray:
    """½ w_P ([H⁻¹]_PP)⁻¹ w_Pᵀ summed over W's rows for each channel's columns P (`local`: positions in this
    block, whose column ids are `part`). Channels with the same column count share batched solves, in chunks
    of at most SOLVE_BYTES of gathered weights."""
    out = np.zeros(len(local))
    ids = (lambda P: P) if part is None else (lambda P: part[P])
    # the channels with columns here (all of them when H is dense; a block holds some of them)
    inside = [ch for ch, p in enumerate(local) if len(p)]
    if len({len(local[ch]) for ch in inside}) == 1:  # the usual case: batched solves
        P = np.stack([local[ch] for ch in inside])  # (channels, p)
        at = np.asarray(inside)
        step = max(1, SOLVE_BYTES // (8 * W.shape[0] * P.shape[1]))
        for i in range(0, len(P), step):
            Pc = P[i : i + step]
            blocks = Hi[Pc[:, :, None], Pc[:, None, :]]  # (channels, p, p)
            wp = W[:, ids(Pc)].astype(np.float64).transpose(1, 2, 0)  # (channels, p, rows)
            out[at[i : i + step]] = 0.5 * np.einsum("cpr,cpr->c", wp, np.linalg.solve(blocks, wp))
        return out
    for ch, P in enumerate(local):
        if len(P):
            wp = W[:, ids(P)].T.astype(np.float64)
            out[ch] = 0.5 * float(np.sum(wp * np.linalg.solve(Hi[np.ix_(P, P)], wp)))
    return out


def _plain_costs(W: np.ndarray, c: Consumer, cols: list[np.ndarray]) -> np.ndarray:
    """½ w_P H_PP w_Pᵀ summed over W's rows for each channel's columns P (H / rows, undamped; per block where
    H is blocked): the cost of removing them with no update."""
    out = np.zeros(len(cols))
    for part, h in zip(_parts(c), c.grams):
        local = cols if part is None else _locals(part, cols)
        for ch, P in enumerate(local):
            if len(P):
                wp = W[:, P if part is None else part[P]].astype(np.float64)
                out[ch] += 0.5 * float(np.sum((wp @ h[np.ix_(P, P)]) * wp)) / max(1, c.rows)
    return out


def _col_norms(c: Consumer) -> np.ndarray:
    """‖x_j‖ per weight column (root mean square over the input rows)."""
    d = c.diag()
    return np.sqrt(np.maximum(d[: len(d) - (c.bias is not None)], 0.0))


def act(group: Group, weights, rng, layers: LayerInputs) -> np.ndarray:
    """RMS activation of the channel at the input of its consumers (averaged over consumers)."""
    pairs = _consumer_members(group, layers)
    if not pairs:
        return l1(group, weights, rng)
    total = np.zeros(group.size)
    for m, c in pairs:
        n = _col_norms(c)
        total += np.array([np.sqrt(np.mean(n[P] ** 2)) if len(P) else 0.0
                           for P in _channel_columns(m, c, group.size)])
    return total / len(pairs) + 1e-12


def wanda(group: Group, weights, rng, layers: LayerInputs) -> np.ndarray:
    """Structured Wanda: Σ over the channel's consumer columns of |W_ij|·‖x_j‖."""
    pairs = _consumer_members(group, layers)
    if not pairs:
        return l1(group, weights, rng)
    total = np.zeros(group.size)
    for m, c in pairs:
        s = np.abs(c.matrix(weights(c.weight))).sum(axis=0) * _col_norms(c)
        total += np.array([s[P].sum() for P in _channel_columns(m, c, group.size)])
    return total + 1e-12


def _augmented(c: Consumer, view, arrays: dict[str, np.ndarray] | None = None, dtype=np.float64) -> np.ndarray:
    """The consumer's weight as a float64 (or `dtype`) (outputs, columns) matrix, its bias as one more column
    (fed by the constant 1 of H) where it has one; `arrays` (initializer overrides) take precedence over the
    model's."""
    get = (lambda n: arrays.get(n, view.array(n))) if arrays else view.array
    W = c.matrix(np.asarray(get(c.weight))).astype(dtype)
    if c.bias is None:
        return W
    return np.concatenate([W, np.asarray(get(c.bias), dtype=dtype).reshape(-1, 1)], axis=1)


def _store(c: Consumer, view, new: np.ndarray, out: dict[str, np.ndarray]) -> None:
    """Write an `_augmented`-shaped matrix back into `out` as full-size initializers of the model's dtypes."""
    if c.bias is not None:
        b = view.array(c.bias)
        out[c.bias] = new[:, -1].reshape(b.shape).astype(b.dtype)
        new = new[:, :-1]
    w = view.array(c.weight)
    out[c.weight] = np.ascontiguousarray(c.from_matrix(new, w), dtype=w.dtype)  # a copy only where needed


def compensate(a: Analysis, keep: np.ndarray, layers: LayerInputs) -> dict[str, np.ndarray]:
    """OBS updates for every consumer that loses input columns: initializer name → new full-size array
    (removed columns set to 0, kept columns and bias re-fitted to the original outputs under H). The damping
    must be the scoring's: H⁻¹ is cached on the consumer. A blocked H is updated block by block, each block's
    kept columns absorbing its removed ones, the bias the sum of the blocks' shares."""
    view = a.view
    todo: list[tuple[Consumer, np.ndarray]] = []
    for key, c in layers.items():
        comps = a.slot_comps.get(key)
        if comps is None:
            continue
        gone = np.nonzero(~keep[comps])[0]
        if len(gone) and not c.rank_only:
            todo.append((c, c.columns(gone)))
    out: dict[str, np.ndarray] = {}
    # consumers side by side (each its own H inverse and weights), stored in order: the same updates as one by one
    for (c, _), new in zip(todo, parallel.ordered_map(lambda t: _updated(t[0], view, t[1]), todo, parallel.workers())):
        _store(c, view, new, out)
    return out


def _updated(c: Consumer, view, P: np.ndarray) -> np.ndarray:
    """The consumer's `_augmented` matrix after the OBS update that removes its columns P (see `compensate`)."""
    if c.parts is None:
        W = _augmented(c, view)
        Hi = c.hinv(damping(c))[0]  # usually cached by the scoring
        return _trusted(c, W, _obs_update(W, Hi, P), P)
    W = _augmented(c, view, dtype=np.float32)  # updated in place, block by block (blocks share no column...
    b0 = W[:, -1].astype(np.float64) if c.bias is not None else None  # ...but the bias: its original here)
    shift = 0.0
    for part, Hi in zip(c.parts, c.hinv(damping(c))):
        Pl = _local(part, P)
        if not len(Pl):
            continue
        Wb = W[:, part].astype(np.float64)
        if b0 is not None:
            Wb[:, -1] = b0
        upd = _obs_update(Wb, Hi, Pl)
        if b0 is not None:  # the bias column is in every block: add up the blocks' shares
            shift = shift + (upd[:, -1] - b0)
            part, upd = part[:-1], upd[:, :-1]
        W[:, part] = upd
    if b0 is not None:
        W[:, -1] = b0 + shift
    return W


def _trusted(c: Consumer, W: np.ndarray, new: np.ndarray, P: np.ndarray) -> np.ndarray:
    """The update `new` of W (columns P removed) as far as the held-aside rows trust it (Consumer.trust): the
    update is fitted again on the other rows only, and the reconstruction error E(W') = tr((W' − W) H_held
    (W' − W)ᵀ) on the held-aside rows decides. "gate": `new` if the fitted update's E is below that of no update
    (W with P zeroed), else no update; "shrink": no update + α·(`new` − no update), α in [0, 1] the one that
    minimises E of the fitted update's step (closed form). Without held-aside rows (one batch): `new`."""
    if not c.trust or c.held is None or not 0 < c.held_rows < c.rows:
        return new
    rest = c.rows - c.held_rows
    h = (c.grams[0] - c.held) / rest
    d = float(np.mean(np.diag(h)))
    h[np.diag_indices_from(h)] += damping(c) * d if d > 0 else 1e-8
    none = W.copy()
    none[:, P] = 0.0
    step = _obs_update(W, spd_inverse(h), P) - none
    Hv = c.held / c.held_rows
    e0 = none - W
    cross = float(np.sum((e0 @ Hv) * step))  # tr(e0 Hv stepᵀ)
    quad = float(np.sum((step @ Hv) * step))
    if c.trust == "gate":  # E(none + step) − E(none) = 2·cross + quad
        keep = 2 * cross + quad < 0
        log.debug("trust %s: %s the update", c.weight, "keeps" if keep else "drops")
        return new if keep else none
    alpha = min(1.0, max(0.0, -cross / quad)) if quad > 0 else 0.0
    log.debug("trust %s: update shrunk to %.2f", c.weight, alpha)
    return none + alpha * (new - none)


def _obs_update(W: np.ndarray, Hi: np.ndarray, P: np.ndarray) -> np.ndarray:
    """δw = −w_P ([H⁻¹]_PP)⁻¹ [H⁻¹]_P,: minimises (w' − w) H (w' − w)ᵀ subject to w'_P = 0: the new W."""
    new = W - np.linalg.solve(Hi[np.ix_(P, P)], W[:, P].T).T @ Hi[P, :]
    new[:, P] = 0.0
    return new


class OriginalRows:
    """The original model's consumer inputs as the re-fit samples them (per consumer node, one array of rows per
    batch), kept while the calibration pass runs the original anyway (`spa.calib.collect`'s on_batch), so that
    the re-fit runs only the pruned model: on PP-OCRv4 rec that pass was half of the re-fit's onnxruntime time.
    Beyond CAPTURE_BYTES (many samples, very wide layers) it lets them go (`rows` None) and the re-fit runs the
    original again, segment by segment."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rows: dict[int, list[np.ndarray]] | None = defaultdict(list)
        self.nbytes = 0

    def first_batches(self, k: int) -> OriginalRows | None:
        """The rows of the first `k` batches only (a re-fit on the first samples), None where they were let go."""
        if self.rows is None:
            return None
        out = OriginalRows(self.seed)
        for node, rows in self.rows.items():
            out.rows[node] = rows[:k]
        return out

    def __call__(self, cons: LayerInputs, index: int, values: dict[str, np.ndarray]) -> None:
        if self.rows is None:
            return
        for c in cons.values():
            r = _refit_rows(c, np.asarray(values[c.x]), self.seed, index)
            self.rows[c.node].append(r)
            self.nbytes += r.nbytes
        if self.nbytes > CAPTURE_BYTES:
            log.info("re-fit: the original's rows exceed %d MiB; the re-fit will run the original again",
                     CAPTURE_BYTES >> 20)
            self.rows = None


def _refit_rows(c: Consumer, x: np.ndarray, seed: int, index: int) -> np.ndarray:
    """The re-fit's rows of batch `index` of a consumer input: the same positions for the original and the pruned
    model (the generator depends on the batch and the consumer only)."""
    return c.rows_of(x, np.random.default_rng((seed, index, c.node)), REFIT_ROWS)


def refit(a: Analysis, keep: np.ndarray, layers: LayerInputs, overrides: dict[str, np.ndarray],
          feeds: dict[str, np.ndarray], *, batch: int = 8, seed: int = 0,
          original: OriginalRows | None = None) -> dict[str, np.ndarray]:
    """A sequential, network-aware pass after the per-layer OBS update. Each consumer sees its inputs X' as the
    pruned network, with every consumer upstream of them already re-fitted, produces them, and its kept
    columns are corrected to reproduce its ORIGINAL outputs W·X:
    W'_K = W1_K + (W C_:,K − W1_K H'_KK)(H'_KK + λI)⁻¹, C = Σ x x'ᵀ, H' = Σ x' x'ᵀ over the same inputs (bias
    as a constant-1 column), W1 = the per-layer update's weights (the correction is zero when nothing upstream
    changed). Errors then stop compounding with depth. Returns updated overrides.

    Cost: linear in depth. The original and the pruned model each run once over the calibration set, segment
    by segment (spa.segments: a consumer's segment starts after every node its input needs), and the consumers
    of a segment are re-fitted just before the pruned model's segment is built with their new weights (sliced
    as the rewriter slices them): one forward pass and one small session per segment, where a session and a
    full forward pass of the zeroed model per consumer made the cost grow with the square of the depth. The
    pruned side runs the rewritten model, at the pruned width (at ratio 0.5 about a quarter of the MACs), which
    equals the zeroed original (the oracle) restricted to the kept channels: its consumer inputs are the kept
    columns directly. The result is the same as re-running the zeroed model before every consumer
    (tests/test_refit.py). `original`: the original's rows, kept by the calibration pass over the same `feeds`,
    `batch` and `seed`; the original then does not run again."""
    from ..calib import batches_of
    from ..rewrite import Rewriter
    from ..segments import SegmentedRun

    todo = {c.weight: c for key, c in layers.items() if key in a.slot_comps and c.rows}
    if not todo:
        return overrides
    view = a.view
    out = dict(overrides)
    batches = list(batches_of(feeds, batch))
    rw = Rewriter(a, keep, overrides=out)
    small = rw.apply()
    small_inits = {t.name: t for t in small.graph.initializer}
    refitted: set[str] = set()

    def sliced(name: str) -> onnx.TensorProto:
        """Re-fitted weights enter the pruned model's segments as the rewriter would slice them."""
        if name not in refitted:
            return small_inits[name]
        arr = out[name]
        for axis in range(arr.ndim):
            k = rw.kept(name, axis)
            if k is not None:
                arr = np.take(arr, k, axis=axis)
        return numpy_helper.from_array(np.ascontiguousarray(arr), name)

    def consumer_nodes(m: onnx.ModelProto) -> dict[int, str]:
        return {i: todo[n.input[1]].x for i, n in enumerate(m.graph.node) if len(n.input) > 1 and n.input[1] in todo}

    kept_rows = original.rows if original is not None else None
    if kept_rows is not None and any(len(kept_rows.get(c.node, ())) != len(batches) for c in todo.values()):
        raise AssertionError("re-fit: the original's kept rows are not of these batches")
    orig = None if kept_rows is not None else SegmentedRun(view.model, consumer_nodes(view.model), batches)
    pruned_nodes = consumer_nodes(small)
    pruned = SegmentedRun(small, pruned_nodes, batches, sliced)
    order = sorted(pruned_nodes, key=lambda i: (pruned.consumer_level[i], i))
    cons = [todo[small.graph.node[i].input[1]] for i in order]
    sums = _RefitProducts(cons, view, {c.weight: keep[a.slot_comps[(c.weight, c.in_axis)]] for c in cons}, seed,
                          kept_rows)
    # with the original's rows at hand, each consumer's products are made as its input is; where the original
    # runs again, once its rows are there too
    hooks = {"after": sums.after, "take": sums.take} if kept_rows is not None else {}
    for i, c in zip(order, cons):
        while pruned.done < pruned.consumer_level[i]:  # the segments before this consumer's own
            pruned.run_next(**hooks)
        if c.weight not in sums.sums:  # a graph input (no segment gives it), or the original runs again
            rows0 = (kept_rows[c.node] if kept_rows is not None else
                     [_refit_rows(c, x0, seed, bi) for bi, x0 in enumerate(orig.run_until(c.x))])
            pairs = enumerate(zip(rows0, pruned.run_until(c.x)))
            for wc, h1 in parallel.ordered_map(lambda p, c=c: sums.products(c, p[0], *p[1]), pairs,
                                               parallel.workers()):
                sums.add(c.weight, wc, h1)
        if kept_rows is not None:
            kept_rows.pop(c.node)
        if orig is not None:
            orig.served(c.x)
        pruned.served(c.x)
        _refit_one(c, view, *sums.pop(c.weight), out)
        refitted.update(n for n in (c.weight, c.bias) if n)
    log.info("re-fit %d consumers in %d segments", len(todo), len(pruned))
    return out


class _RefitProducts:
    """The re-fit's W C and H' of each consumer, summed over the batches in float64 (`refit`), from the original's
    rows and the pruned network's inputs. W is the original's (float32, bias column included), K the kept columns
    of W, not of H: a blocked consumer has no single H (its own H' is dense)."""

    def __init__(self, cons: list[Consumer], view, kept: dict[str, np.ndarray], seed: int,
                 kept_rows: dict[int, list[np.ndarray]] | None) -> None:
        self.seed, self.kept_rows = seed, kept_rows
        self.fixed: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # per consumer: W, K
        self.readers: dict[str, list[Consumer]] = defaultdict(list)  # consumer input -> its consumers
        for c in cons:
            W = _augmented(c, view, dtype=np.float32)
            self.fixed[c.weight] = W, np.setdiff1d(np.arange(W.shape[1]), c.columns(np.nonzero(~kept[c.weight])[0]))
            self.readers[c.x].append(c)
        self.sums: dict[str, list[np.ndarray]] = {}

    def products(self, c: Consumer, bi: int, r0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batch `bi`'s share of W C and H' (float32): from the original's rows r0 and the pruned input x1, whose
        rows are taken at the same positions (kept columns only). Batches are independent: they run side by side."""
        W, K = self.fixed[c.weight]
        r1 = _refit_rows(c, x1, self.seed, bi)
        if r1.shape[1] != len(K):
            raise AssertionError(f"re-fit: {c.weight} sees {r1.shape[1]} input columns, expected {len(K)}")
        # W C = W r0ᵀ r1, multiplied in the cheaper order: (W r0ᵀ) r1 when W has fewer rows than columns
        wc = (W @ r0.T) @ r1 if W.shape[0] < W.shape[1] else W @ (r0.T @ r1)
        return wc, r1.T @ r1

    def add(self, weight: str, wc: np.ndarray, h1: np.ndarray) -> None:
        if weight not in self.sums:
            self.sums[weight] = [wc.astype(np.float64), h1.astype(np.float64)]
        else:  # added in float64 in place: the same sums as converting each share first, without the copies
            np.add(self.sums[weight][0], wc, out=self.sums[weight][0])
            np.add(self.sums[weight][1], h1, out=self.sums[weight][1])

    def after(self, bi: int, values: dict[str, np.ndarray]) -> list[tuple[str, tuple[np.ndarray, np.ndarray]]]:
        """The products of every consumer whose input a segment's batch just gave (with the original's rows kept),
        in the worker that ran it: beside the other batches' runs rather than in a pass of their own after them."""
        assert self.kept_rows is not None
        return [(c.weight, self.products(c, bi, self.kept_rows[c.node][bi], values[t]))
                for t in values for c in self.readers.get(t, ())]

    def take(self, shares: list[tuple[str, tuple[np.ndarray, np.ndarray]]]) -> None:
        for weight, (wc, h1) in shares:
            self.add(weight, wc, h1)

    def pop(self, weight: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """K, W C and H' of a consumer whose batches are all in; forgotten here."""
        WC, Hn = self.sums.pop(weight)
        return self.fixed.pop(weight)[1], WC, Hn


def _refit_one(c: Consumer, view, K: np.ndarray, WC: np.ndarray, H: np.ndarray, out: dict[str, np.ndarray]) -> None:
    """The least-squares correction of one consumer's kept columns K (see `refit`; W C and H over the kept
    columns of x' only), written into `out`; the other columns become 0."""
    W1 = _augmented(c, view, out)
    lam = REFIT_DAMP * float(np.mean(np.diag(H))) if len(K) else 0.0
    resid = WC - W1[:, K] @ H  # gradient of ½‖W X − W' X'‖² at W' = W1 (kept columns)
    new = np.zeros_like(W1)
    new[:, K] = W1[:, K] + np.linalg.solve(H + (lam if lam > 0 else 1e-8) * np.eye(len(K)), resid.T).T
    _store(c, view, new, out)

