"""Prune in two steps with a distillation between them (`--steps R1:E1` of benchmarks/distill_rec_heldout.py):
spa's data-free default prunes the original at R1, `spa finetune --teacher` distils that for E1 epochs, data-free
obspa prunes the distilled model again, every group losing the same share (`--allocate local`, the default's own
allocation above 0.3), sized so that the result keeps no more parameters and MACs than the one-shot data-free prune
at the target ratio, and the caller distils the result as it distils a one-shot prune.

Gradual pruning lets the network adapt between the steps; the second prune's choice is made on weights that the
distillation has already moved towards the teacher.  `spa finetune` writes the trained weights back into the input
graph, so the distilled model holds the tensors of the first prune and the second prune's groups carry the same keys
as the original's (a digest of their members' names): `spa.plan.Plan.then` turns the two plans into one plan of the
original, which `spa finetune --plan` needs to match the intermediate features against the teacher.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import onnx

import spa
from spa.plan import Plan

# the second prune's ratio starts R2_SPAN below 1 - (1 - ratio) / (1 - r1) (the first step's allocation is not local,
# so the channel shares do not multiply exactly) and rises by R2_STEP until the result is no larger than the one-shot
R2_STEP, R2_SPAN = 0.01, 0.05


def stepped(original: onnx.ModelProto, ratio: float, r1: float, seed: int, tmp: Path,
            distil: Callable[[Path, Path, Path, int], None], e1: int) -> tuple[onnx.ModelProto, Plan, dict]:
    """Prune `original` at `r1` (data-free default), distil it `e1` epochs (`distil(pruned, plan, out, epochs)`),
    prune the result with local data-free obspa at the smallest ratio (on a grid of R2_STEP from R2_SPAN below
    1 - (1 - ratio) / (1 - r1)) that keeps no more params and MACs than the one-shot data-free default at `ratio`
    (local above 0.3); returns the final pruned model, the composed plan of the original and facts for the log
    (ratios, sizes, seconds)."""
    _, one = spa.prune(original, ratio=ratio, criterion="obspa", seed=seed)  # the one-shot default's sizes
    base = one.before  # the original's params and MACs
    target = (one.after.params / base.params, one.after.macs / base.macs)
    t0 = time.perf_counter()
    first, rep1 = spa.prune(original, ratio=r1, criterion="obspa", seed=seed)
    prune1_s = time.perf_counter() - t0
    onnx.save(first, str(tmp / "step1.onnx"))
    rep1.plan.save(tmp / "step1.plan.json")
    t1 = time.perf_counter()
    distil(tmp / "step1.onnx", tmp / "step1.plan.json", tmp / "step1_distilled.onnx", e1)
    distil1_s = time.perf_counter() - t1
    mid = onnx.load(str(tmp / "step1_distilled.onnx"))
    r2 = round(max(0.0, 1 - (1 - ratio) / (1 - r1) - R2_SPAN), 2)
    while r2 < 0.95:  # local allocation: the sizes do not depend on the criterion, so l1 (fast) finds the ratio
        _, rep = spa.prune(mid, ratio=r2, criterion="l1", allocation="local")
        if rep.after.params <= one.after.params and rep.after.macs <= one.after.macs:
            break
        r2 = round(r2 + R2_STEP, 2)
    t2 = time.perf_counter()
    second, rep2 = spa.prune(mid, ratio=r2, criterion="obspa", seed=seed, allocation="local")
    prune2_s = time.perf_counter() - t2
    pk, mk = rep2.after.params / base.params, rep2.after.macs / base.macs
    plan = rep1.plan.then(rep2.plan)
    facts = {"r1": r1, "e1": e1, "r2": r2, "params_kept": pk, "macs_kept": mk, "one_shot_params_kept": target[0],
             "one_shot_macs_kept": target[1], "prune1_s": prune1_s, "distil1_s": distil1_s, "prune2_s": prune2_s,
             "groups": len(plan.groups)}
    return second, plan, facts


def stepped_start(b, r: float, seed: int, steps: str, tmp: Path, distil: Callable,
                  say: Callable[[str], None] | None = None) -> tuple[float, float, float]:
    """`--steps R1:E1` (benchmarks/stepped.py): the two-step prune of `b`'s model to the size of the one-shot prune at
    `r`, saved where pruned_only saves its prune (with the composed plan), its first distillation's log and its
    pruned-only scores on `b`'s distributions passed to `say` as comments; `distil(pruned, plan, out, epochs)` returns
    finetune_cli's (seconds, load, log). Returns the params and MACs kept and the two prunes' seconds."""
    from generalise import PRUNED_HOW

    say = say or (lambda text: print(text, flush=True))
    r1, e1 = steps.split(":")
    logs = []

    def first(pruned: Path, plan: Path, out: Path, epochs: int) -> None:
        secs, load, log = distil(pruned, plan, out, epochs)
        logs.append(f"# steps: first distillation ({epochs} epochs) at {r1}, seed {seed}: wall {secs:.1f}s, {load}"
                    + "\n#     " + "\n#     ".join(log.strip().splitlines()))

    pruned, plan, f = stepped(b.model, r, float(r1), seed, tmp, first, int(e1))
    onnx.save(pruned, str(tmp / "pruned.onnx"))
    plan.save(tmp / "pruned.plan.json")
    say("\n".join(logs))
    before = {d: b.metric(pruned, data) for d, data in b.dists.items()}
    say(f"# steps: data-free obspa at {f['r1']} ({f['prune1_s']:.1f}s), distilled {f['e1']} epochs "
        f"({f['distil1_s']:.0f}s), then local data-free obspa at {f['r2']} ({f['prune2_s']:.1f}s): params kept "
        f"{f['params_kept']:.4f}, MACs kept {f['macs_kept']:.4f} (the one-shot data-free prune at {r}: "
        f"{f['one_shot_params_kept']:.4f} / {f['one_shot_macs_kept']:.4f}); composed plan of {f['groups']} groups")
    prune_s = f["prune1_s"] + f["prune2_s"]
    say(f"# pruned only (obspa {PRUNED_HOW['data-free-stepped']}) at {r}, seed {seed}: "
        + ", ".join(f"{d} {v:.4f}" for d, v in before.items()) + f"; params kept {f['params_kept']:.4f}, MACs kept "
        f"{f['macs_kept']:.4f}, prune {prune_s:.1f}s")
    return f["params_kept"], f["macs_kept"], prune_s
