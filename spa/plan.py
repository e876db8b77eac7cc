"""Scores + ratio → which channels of each group to keep. A `Plan` is plain, JSON-serialisable data that can
be applied again later to the same model or to another model with the same graph (e.g. a trained copy)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .analysis import Analysis
from .errors import BadArgument


@dataclass
class GroupPlan:
    key: str
    size: int
    keep: list[int]
    members: list[str] = field(default_factory=list)


@dataclass
class Plan:
    groups: list[GroupPlan]
    criterion: str = ""
    ratio: float = 0.0
    mode: str = "local"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Parse and validate a plan: every field must have its type (indices are ints, not floats, strings
        or NaN), so a hand-edited or hostile file fails here with one line (exit 2)."""
        try:
            d = json.loads(text, parse_constant=_no_constant)
        except RecursionError:
            raise BadArgument("not a spa plan (JSON nested too deeply)") from None
        if not isinstance(d, dict) or not isinstance(d.get("groups"), list):
            raise BadArgument("not a spa plan (no list of groups)")
        groups = []
        for i, g in enumerate(d["groups"]):
            if not isinstance(g, dict) or set(g) - {"key", "size", "keep", "members"}:
                raise BadArgument(f"not a spa plan (group {i} has unexpected fields)")
            key, size, keep, members = g.get("key"), g.get("size"), g.get("keep"), g.get("members", [])
            if not isinstance(key, str) or not _is_int(size) or size < 1:
                raise BadArgument(f"not a spa plan (group {i}: key must be text, size a positive integer)")
            if not isinstance(keep, list) or not all(_is_int(k) for k in keep):
                raise BadArgument(f"not a spa plan (group {i}: keep must be a list of integers)")
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise BadArgument(f"not a spa plan (group {i}: members must be a list of names)")
            groups.append(GroupPlan(key, size, keep, members))
        ratio, criterion, mode = d.get("ratio", 0.0), d.get("criterion", ""), d.get("mode", "")
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not math.isfinite(ratio):
            raise BadArgument("not a spa plan (ratio must be a number)")
        if not isinstance(criterion, str) or not isinstance(mode, str):
            raise BadArgument("not a spa plan (criterion and mode must be text)")
        return cls(groups, criterion, float(ratio), mode)

    def save(self, path: str | Path) -> None:
        """Write the plan as JSON, atomically (`spa.io_safety.atomic_write`)."""
        from .io_safety import atomic_write

        atomic_write(path, self.to_json(), label="plan")

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan file: a regular file of at most MAX_PLAN_BYTES (not /dev/zero, not a FIFO), read with
        that cap, then validated by `from_json`."""
        import os
        import stat

        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise BadArgument(f"{path}: not a regular file")
                text = f.read(MAX_PLAN_BYTES + 1)
        except OSError as e:
            raise BadArgument(f"{path}: cannot read the plan ({e.strerror or e})") from None
        if len(text) > MAX_PLAN_BYTES:
            raise BadArgument(f"{path}: larger than {MAX_PLAN_BYTES >> 20} MB; not a spa plan")
        try:
            return cls.from_json(text.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadArgument(f"{path}: not a spa plan (not UTF-8 text)") from None
        except ValueError as e:  # JSON syntax, NaN/Infinity
            raise BadArgument(f"{path}: not a spa plan ({type(e).__name__})") from None
        except BadArgument as e:
            raise BadArgument(f"{path}: {e}") from None

    @property
    def removed(self) -> int:
        return sum(g.size - len(g.keep) for g in self.groups)

    def then(self, second: Plan) -> Plan:
        """The plan of the original model that removes what this plan and then `second` remove, `second` being a
        plan of the model this one pruned (after any fine-tuning: `spa finetune` keeps the tensors' names, and a
        group's key is a digest of them): each group keeps the original indices that both keep.  Raises BadArgument if
        `second` is not a plan of the pruned model (a group whose size is not what this plan kept)."""
        out = {g.key: g for g in self.groups}
        for g in second.groups:
            g1 = out.get(g.key)
            if g1 is None:  # not pruned by the first plan: its size is the original's
                out[g.key] = g
                continue
            if g.size != len(g1.keep) or max(g.keep, default=-1) >= len(g1.keep):
                raise BadArgument(f"plan group {g.key} ({', '.join(g.members[:2])}...) has {g.size} channels in the "
                                  f"second plan, the first kept {len(g1.keep)}: give the plans in the order they were "
                                  "applied, each of the model the one before produced")
            out[g.key] = GroupPlan(g.key, g1.size, sorted(g1.keep[i] for i in g.keep), g1.members)
        return Plan(list(out.values()), second.criterion, second.ratio, "steps")


MAX_PLAN_BYTES = 64 << 20  # a plan lists kept channel indices: far below this even for the largest models


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a plan can hold")


def check_ratio(ratio: float, name: str = "ratio") -> None:
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and 0.0 <= ratio < 1.0):
        raise BadArgument(f"{name} must be in [0, 1), got {ratio}")


def _round_keep(n: int, keep: int, round_to: int) -> int:
    keep = max(1, min(n, keep))
    if round_to > 1 and n > round_to:
        keep = max(round_to, int(math.ceil(keep / round_to)) * round_to)
        keep = min(keep, n)
    return keep


def make_plan(
    analysis: Analysis,
    scores: dict[int, np.ndarray],
    ratio: float,
    *,
    global_: bool = False,
    max_group_ratio: float = 0.9,
    round_to: int = 1,
    criterion: str = "",
) -> Plan:
    """Local: remove floor(ratio·n) lowest-scoring channels of every prunable group. Global: rank every
    channel of every prunable group by its (group-normalised) score and remove the lowest ratio·total,
    never more than max_group_ratio of one group. `round_to` rounds kept widths up to a multiple."""
    check_ratio(ratio)
    check_ratio(max_group_ratio, "max-group-ratio")
    if round_to < 1:
        raise BadArgument(f"round-to must be ≥ 1, got {round_to}")
    groups = [g for g in analysis.prunable if g.id in scores]
    n_keep: dict[int, int] = {}
    if not global_:
        for g in groups:
            n_keep[g.id] = g.size - int(math.floor(ratio * g.size + 1e-9))
    else:
        total = sum(g.size for g in groups)
        budget = int(math.floor(ratio * total + 1e-9))
        gid = np.concatenate([np.full(g.size, g.id) for g in groups]) if groups else np.zeros(0, int)
        allsc = np.concatenate([scores[g.id] for g in groups]) if groups else np.zeros(0)
        order = np.lexsort((gid, allsc))
        cap = {g.id: min(g.size - 1, int(math.floor(max_group_ratio * g.size + 1e-9))) for g in groups}
        removed = {g.id: 0 for g in groups}
        left = budget
        for i in order:
            if left == 0:
                break
            k = int(gid[i])
            if removed[k] < cap[k]:
                removed[k] += 1
                left -= 1
        for g in groups:
            n_keep[g.id] = g.size - removed[g.id]
    out = []
    for g in groups:
        keep = _round_keep(g.size, n_keep[g.id], round_to)
        if keep >= g.size:
            continue
        s = scores[g.id]
        best = np.sort(np.argsort(-s, kind="stable")[:keep])
        out.append(GroupPlan(g.key, g.size, [int(i) for i in best], sorted(m.label for m in g.members)))
    return Plan(out, criterion, ratio, "global" if global_ else "local")


def keep_mask(analysis: Analysis, plan: Plan) -> np.ndarray:
    """Per global channel id: True if kept. Raises if the plan does not fit this model's groups."""
    keep = np.ones(len(analysis.comp_group), dtype=bool)
    by_key = analysis.group_by_key()
    for gp in plan.groups:
        g = by_key.get(gp.key)
        if g is None:
            raise BadArgument(f"plan group {gp.key} ({', '.join(gp.members[:2])}...) is not in this model")
        if g.size != gp.size:
            raise BadArgument(f"plan group {gp.key} has {gp.size} channels, the model's has {g.size}")
        if not g.prunable:
            raise BadArgument(f"plan prunes group {gp.key}, which is frozen here: {g.why}")
        if not gp.keep or min(gp.keep) < 0 or max(gp.keep) >= g.size or len(set(gp.keep)) != len(gp.keep):
            raise BadArgument(f"plan group {gp.key}: kept indices out of range or repeated")
        m = np.zeros(g.size, dtype=bool)
        m[gp.keep] = True
        keep[g.comps[~m]] = False
    return keep
