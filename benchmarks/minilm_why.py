"""Where does all-MiniLM-L6-v2 lose its embeddings when pruned at 0.3 (issue 12's transformer goal)? On the
MiniLM SELECTION sentences of benchmarks/generalise.py only (64 GPL-3 sentences; never the held-out docstrings or
GPL-2 ones), with the data-free setting before branch minilm4 (--calib-source common --allocate energy: damping
0.1, 261 samples, groups capped at 1.5x the ratio; "common" then drew the common tokens of spa.priors.common_tokens
only), seed 0. Every row is a zeroed model (removed channels zeroed, spa.verify's
oracle, equal to the pruned one) scored by the benchmark's metric (mean cosine of mean-pooled embeddings):
- choice vs update: the plan with and without obspa's update; the update computed from statistics of the
  selection sentences themselves ("oracle" statistics: the best any prior could do for this plan); the plan
  chosen on oracle statistics; l1's channel choice (local) with the OBS update;
- per group: the plan restricted to one group (one block's heads, or its MLP), 1 - cosine of each; heads only,
  MLP only;
- drift: per block, the relative error ||h' - h|| / ||h|| of the residual stream after the attention's LayerNorm
  and after the block's output LayerNorm, on real (unpadded) tokens;
- which part of the statistics: the update from H rebuilt of the prior's mean and the oracle's covariance (and
  the reverse), and from the oracle's statistics in one consumer only;
- which inputs give statistics like the oracle's (the same plan): the prior's sequences with token ids drawn from
  the selection sentences' own tokens (their unigram frequencies, or uniformly over their distinct tokens), and
  real sentences of the same genre that are not evaluated (other GPL-3 sentences) or of the held-out kinds (the
  32 calibration sentences of `--calib 32`); how much of the sentences' tokens the prior's token set covers.
`--allocation`: heads against MLP channels and per-block shares at the same parameters. Output:
benchmarks/minilm_why.txt.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/minilm_why.py > benchmarks/minilm_why.txt
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/minilm_why.py --allocation >> benchmarks/minilm_why.txt
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generalise import minilm

from spa.analysis import analyze
from spa.api import compute_plan, prepare
from spa.calib import collect, session_with_outputs, source_feeds
from spa.criteria.obspa import compensate
from spa.plan import keep_mask
from spa.priors import common_token_inputs, common_tokens
from spa.sensitivity import energy_plan
from spa.verify import zeroed_model

RATIO = 0.3
CAP = 1.5 * RATIO


def block_outputs(model) -> list[str]:
    """The residual stream after each attention LayerNorm and each block's output LayerNorm, in order."""
    return [n.output[0] for n in model.graph.node if n.op_type == "LayerNormalization"]


def _selection_and_prior():
    """The selection sentences' model, inputs, view, analysis, and the "prior" statistics: spa's "common" as it
    was before branch minilm4 (the common tokens of the first component only)."""
    b = minilm(selection=True)
    (_, x), = b.dists.items()
    view, _ = prepare(b.model)
    a = analyze(view)
    feeds = source_feeds(a, "common", None, seed=0)
    prior = collect(a, "common", None, seed=0, feeds=common_token_inputs(
        view, len(feeds["input_ids"]), 0, feeds["input_ids"].shape[1], tokens=common_tokens))
    return b, x, view, a, prior


def main() -> None:
    b, x, view, a, prior = _selection_and_prior()
    oracle = collect(a, "calib", x, seed=0, damp=0.1)
    plan = energy_plan(a, prior, RATIO, max_group_ratio=CAP, seed=0)
    keep = keep_mask(a, plan)
    names = block_outputs(b.model)
    mask = x["attention_mask"].astype(bool)
    ref = session_with_outputs(b.model, names).run(names, x)

    def score(k: np.ndarray, over: dict | None = None) -> float:
        return b.metric(zeroed_model(a, k, over), x)

    def drift(k: np.ndarray, over: dict | None = None) -> list[float]:
        out = session_with_outputs(zeroed_model(a, k, over), names).run(names, x)
        return [float(np.linalg.norm((o - r)[mask]) / np.linalg.norm(r[mask])) for o, r in zip(out, ref)]

    kept = {g.id: int(keep[g.comps].sum()) for g in a.prunable}
    print("# all-MiniLM-L6-v2, selection sentences, ratio 0.3, seed 0; cosine to the original's embeddings")
    print("# energy plan, kept per group (heads of 12 / MLP of 1536), blocks 0-5:",
          " ".join(f"{kept[g.id]}/{g.size}" for g in a.prunable))
    base = compensate(a, keep, prior)
    print(f"plan prior, update prior: {score(keep, base):.4f}", flush=True)
    print(f"plan prior, no update: {score(keep):.4f}", flush=True)
    print(f"plan prior, update oracle: {score(keep, compensate(a, keep, oracle)):.4f}", flush=True)
    oplan = energy_plan(a, oracle, RATIO, max_group_ratio=CAP, seed=0)
    okeep = keep_mask(a, oplan)
    print("# oracle energy plan, kept per group:", " ".join(f"{int(okeep[g.comps].sum())}/{g.size}" for g in a.prunable))
    print(f"plan oracle, update oracle: {score(okeep, compensate(a, okeep, oracle)):.4f}", flush=True)
    print(f"plan oracle, update prior: {score(okeep, compensate(a, okeep, prior)):.4f}", flush=True)
    lkeep = keep_mask(a, compute_plan(a, ratio=RATIO, criterion="obspa", seed=0, data=prior))
    print(f"local plan prior, update prior: {score(lkeep, compensate(a, lkeep, prior)):.4f}", flush=True)
    l1keep = keep_mask(a, compute_plan(a, ratio=RATIO, criterion="l1"))
    print(f"local l1 choice, update prior: {score(l1keep, compensate(a, l1keep, prior)):.4f}", flush=True)
    print(f"local l1 choice, no update: {score(l1keep):.4f}", flush=True)

    print("# one group pruned alone (the energy plan's channels of that group; update prior): 1 - cosine")
    heads = np.ones_like(keep)
    mlp = np.ones_like(keep)
    for g in a.prunable:
        k = np.ones_like(keep)
        k[g.comps] = keep[g.comps]
        (heads if g.size == 12 else mlp)[g.comps] = keep[g.comps]
        kind = "heads" if g.size == 12 else "mlp"
        print(f"group {g.id} ({kind}, block {(g.id - 1) // 2}, kept {kept[g.id]}/{g.size}): "
              f"{1 - score(k, compensate(a, k, prior)):.4f}", flush=True)
    print(f"heads only: {score(heads, compensate(a, heads, prior)):.4f}", flush=True)
    print(f"mlp only: {score(mlp, compensate(a, mlp, prior)):.4f}", flush=True)

    print("# drift ||h'-h||/||h|| on real tokens after each LayerNorm: the embeddings', then per block the attention's and the output's")
    for name, k, over in (("plan prior, update prior", keep, base), ("plan prior, no update", keep, None),
                          ("plan prior, update oracle", keep, compensate(a, keep, oracle)),
                          ("heads only, update prior", heads, compensate(a, heads, prior)),
                          ("mlp only, update prior", mlp, compensate(a, mlp, prior))):
        print(f"{name}: " + " ".join(f"{d:.3f}" for d in drift(k, over)), flush=True)
    statistics(b, a, x, prior, oracle, keep)


def moments(c) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of a consumer's input columns, from H and its constant-1 bias column."""
    h = c.grams[0] / c.rows
    mu = h[:-1, -1].copy()
    return mu, h[:-1, :-1] - np.outer(mu, mu)


def with_moments(c, mu: np.ndarray, cov: np.ndarray):
    """A copy of consumer `c` whose H is built from `mu` and `cov` (one row: H is only ever used normalised)."""
    h = np.ones_like(c.grams[0])
    h[:-1, :-1] = cov + np.outer(mu, mu)
    h[:-1, -1] = h[-1, :-1] = mu
    return dataclasses.replace(c, grams=[h], rows=1, _hinv=None)


def statistics(b, a, x, prior, oracle, keep) -> None:
    from generalise import prose_sentences

    from models import minilm as mm
    from spa.priors import low_cosine_tokens

    def update(stats) -> float:
        return b.metric(zeroed_model(a, keep, compensate(a, keep, stats)), x)

    print("# which part of the statistics (plan prior; update from):")
    for name, (mean_of, cov_of) in (("mean prior, covariance oracle", (prior, oracle)),
                                    ("mean oracle, covariance prior", (oracle, prior))):
        mixed = {k: with_moments(c, moments(mean_of[k])[0], moments(cov_of[k])[1]) for k, c in prior.items()}
        print(f"{name}: {update(mixed):.4f}", flush=True)
    for i, k in enumerate(prior):
        if k[0] in {m.tensor for g in a.prunable if g.size > 12 for m in g.params}:
            print(f"oracle statistics in MLP consumer of block {i // 2} only: {update({**prior, k: oracle[k]}):.4f}",
                  flush=True)
    print("# which inputs (plan prior; update from the statistics of):")
    feeds = source_feeds(a, "common", None, seed=0)
    ids, rng = feeds["input_ids"], np.random.default_rng(1)
    real = x["input_ids"][x["attention_mask"] != 0]
    table, = [a.view.array(n.input[0]) for n in b.model.graph.node  # the word embeddings (rows = tokens)
              if n.op_type == "Gather" and n.input[1] == "input_ids"]
    for name, pool in (("the prior's sequences, ids drawn from the selection sentences' tokens (unigram)", real),
                       ("the same, uniformly over their distinct tokens", np.unique(real)),
                       ("the same, uniformly over the common tokens (= the prior)", common_tokens(table)),
                       ("the same, common tokens and the 5 % least aligned with the mean row",
                        np.union1d(common_tokens(table), low_cosine_tokens(table, 0.05)))):
        print(f"{name}: {update(collect(a, 'common', None, seed=0, feeds={**feeds, 'input_ids': rng.choice(pool, ids.shape)})):.4f}",
              flush=True)
    for share in (0.05, 0.1):
        print(f"share of the sentences' tokens (by count) in the common {share:.0%} / in the {share:.0%} least aligned: "
              f"{np.isin(real, common_tokens(table, share)).mean():.3f} / "
              f"{np.isin(real, low_cosine_tokens(table, share)).mean():.3f}")
    _, tok = mm.load()
    gpl3 = prose_sentences("/usr/share/common-licenses/GPL-3")[64:]  # not the 64 evaluated
    for n in (32, len(gpl3)):
        print(f"{n} other GPL-3 sentences (damping 0.1): "
              f"{update(collect(a, 'calib', mm.encode(tok, gpl3[:n]), seed=0, damp=0.1)):.4f}", flush=True)
    print(f"the 32 calibration sentences of --calib 32 (damping 0.1): {update(collect(a, 'calib', b.calib, seed=0, damp=0.1)):.4f}")
    print(f"token-bag-common on them (its defaults): {update(collect(a, 'token-bag-common', b.calib, seed=0)):.4f}")


def allocation() -> None:
    """Heads against MLP channels, and per-block shares, at the same parameters (the prior's update, as above)."""
    from spa.criteria.obspa import obspa

    b, x, view, a, prior = _selection_and_prior()
    keep = keep_mask(a, energy_plan(a, prior, RATIO, max_group_ratio=CAP, seed=0))
    scores = {g.id: obspa(g, view.array, None, prior) for g in a.prunable}
    mlps = [g for g in a.prunable if g.size > 12]
    total = sum(int(keep[g.comps].sum()) for g in mlps)

    def keeping(counts: dict[int, int]) -> np.ndarray:
        k = np.ones_like(keep)
        for g in a.prunable:
            k[g.comps] = False
            k[g.comps[np.argsort(-scores[g.id])[: counts[g.id]]]] = True
        return k

    def score(k: np.ndarray) -> float:
        return b.metric(zeroed_model(a, k, compensate(a, k, prior)), x)

    # one head (Q, K, V rows and output columns of 32 channels) holds as many parameters as 64 MLP channels
    print("# allocation at the energy plan's parameters (prior as above; update prior)")
    for heads in (1, 2):
        counts = {g.id: 12 - heads if g.size == 12 else int(keep[g.comps].sum()) + 64 * heads for g in a.prunable}
        print(f"{heads} head(s) removed per block, 64 fewer MLP channels removed per head: {score(keeping(counts)):.4f}",
              flush=True)
    even = {g.id: 12 if g.size == 12 else round(total / len(mlps)) for g in a.prunable}
    print(f"every MLP at the same width ({round(total / len(mlps))}): {score(keeping(even)):.4f}", flush=True)
    for spare in ((0,), (5,), (0, 5)):
        counts = dict(even)
        for i, g in enumerate(mlps):
            counts[g.id] += 100 * (len(mlps) - len(spare)) // len(spare) if i in spare else -100
        print(f"blocks {spare} spared (100 channels from each other block): {score(keeping(counts)):.4f}", flush=True)


if __name__ == "__main__":
    allocation() if sys.argv[1:] == ["--allocation"] else main()
