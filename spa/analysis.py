"""Slots → coupled channel groups.

Every rule links atoms (single indices along a tensor axis). The connected components of the link graph are
*channels*: each one lives at some positions of some slots. Channels that live in exactly the same set of
slots are interchangeable units of one *group*: removing any subset of them is a consistent edit of all the
group's members. A group is prunable unless one of its slots is frozen (graph input/output, an op without a
rule, an axis a rule cannot follow, an unknown size); the reasons are kept for `spa analyze`.

Plain data leaves this module: `Analysis` (groups with their members and per-position channel ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .view import ModelView, node_inputs, topo_order
from .rules import DEFAULT, RuleSet, RulesLike, rule_set
from .rules.base import OTHER, NodeCtx
from .rules.couplings import Couplings, Slot


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of an undirected graph on `n` nodes given as edge arrays; returns the smallest
    node id of each node's component. Vectorised hook-and-compress (no Python loop over edges)."""
    parent = np.arange(n, dtype=np.int64)
    while True:
        ra, rb = parent[a], parent[b]
        diff = ra != rb
        if not diff.any():
            return parent
        ra, rb = ra[diff], rb[diff]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))
        while True:
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp
    # unreachable


@dataclass
class Member:
    """One slot of a group: where the group's channels live along one tensor axis."""

    tensor: str
    axis: int
    is_param: bool
    role: str
    neutral: float
    ids: np.ndarray  # per index along the axis: the group-local channel id, or -1 (another group's channel)

    @property
    def label(self) -> str:
        return f"{self.tensor}[{self.axis}]"


@dataclass
class Group:
    id: int
    size: int  # number of channels (units that are kept or removed together)
    members: list[Member]
    frozen: list[str]  # why not prunable; empty → prunable
    comps: np.ndarray = field(repr=False)  # global channel ids, in local order
    width: int = 0  # indices per channel in the anchor slot (1 normally; >1 for grouped-conv blocks)
    # why removing these channels is not exact (normalisation statistics over the channels change); empty: exact
    lossy: list[str] = field(default_factory=list)

    @property
    def prunable(self) -> bool:
        return not self.frozen and self.size >= 2

    @property
    def params(self) -> list[Member]:
        return [m for m in self.members if m.is_param]

    @property
    def anchor(self) -> Member:
        ps = self.params
        return ps[0] if ps else self.members[0]

    @property
    def key(self) -> str:
        """Stable identity across models with the same graph: a digest of its member slots."""
        names = "|".join(sorted(m.label for m in self.members))
        return hashlib.sha1(names.encode()).hexdigest()[:12]

    @property
    def why(self) -> str:
        if self.frozen:
            return self.frozen[0]
        if self.size < 2:
            return "single channel"
        return ""


@dataclass
class Analysis:
    view: ModelView
    groups: list[Group]
    slot_comps: dict[Slot, np.ndarray]  # per slot: global channel id at each index
    comp_group: np.ndarray  # global channel id → group id (-1: not in a reported group)
    comp_local: np.ndarray  # global channel id → index within its group
    unknown_ops: dict[str, list[str]]  # op type → node names without a rule
    # nodes computing statistics over prunable channels (LayerNorm, ReduceMean): (node output, tensor, axis)
    lossy_sites: list[tuple[str, str, int]] = field(default_factory=list)
    group_conv: str = "positions"  # the grouped-convolution mode the groups were found in (rewrites follow it)
    rules: RuleSet = DEFAULT  # the rules the groups were found with: the rewriter and the oracle use the same

    @property
    def prunable(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]

    def group_by_key(self) -> dict[str, Group]:
        return {g.key: g for g in self.groups}

    def to_networkx(self):
        """The dependency graph as a `networkx.MultiDiGraph`, for users to query, draw or export (GraphML).

        Nodes: `op:<node>` (kind "op", op_type, frozen reason if the op has no channel rule), `tensor:<name>`
        (kind "tensor", shape, initializer, the ids of the groups living on it) and `group:<id>` (kind "group":
        channels, width, prunable, lossy, status "prunable" / "lossy" / "frozen", reason). Edges: op → tensor
        ("produces"), tensor → op ("consumes", input position), tensor → group ("member", axis, role). The
        grouping itself is computed by a numpy union-find (`components`), far faster on big graphs; this is
        its result in networkx's vocabulary."""
        import networkx as nx

        view = self.view
        g = nx.MultiDiGraph(name=view.model.graph.name or "model")
        unknown = {n: op for op, names in self.unknown_ops.items() for n in names}

        def tensor(name: str) -> str:
            key = f"tensor:{name}"
            if key not in g:
                shape = view.shape(name)
                g.add_node(key, kind="tensor", name=name, initializer=name in view.inits,
                           shape="" if shape is None else "x".join("?" if d is None else str(d) for d in shape),
                           groups="")
            return key

        for i, node in enumerate(view.model.graph.node):
            op = f"op:{node.name}" if node.name else f"op:#{i}"
            if op in g:  # node names are not unique in every file
                op = f"op:#{i}"
            g.add_node(op, kind="op", name=node.name, op_type=node.op_type, domain=node.domain or "",
                       reason=f"op {unknown[node.name]} has no channel rule" if node.name in unknown else "")
            for k, t in enumerate(node.input):
                if t:
                    g.add_edge(tensor(t), op, kind="consumes", index=k)
            for k, t in enumerate(node.output):
                if t:
                    g.add_edge(op, tensor(t), kind="produces", index=k)
        for grp in self.groups:
            status = ("lossy" if grp.lossy else "prunable") if grp.prunable else "frozen"
            gk = f"group:{grp.id}"
            g.add_node(gk, kind="group", group=grp.id, key=grp.key, channels=grp.size, width=grp.width,
                       prunable=grp.prunable, lossy=bool(grp.lossy), status=status,
                       reason=grp.why or (grp.lossy[0] if grp.lossy else ""))
            for m in grp.members:
                t = tensor(m.tensor)
                g.add_edge(t, gk, kind="member", axis=m.axis, role=m.role)
                ids = [x for x in g.nodes[t]["groups"].split(",") if x]
                if str(grp.id) not in ids:
                    g.nodes[t]["groups"] = ",".join([*ids, str(grp.id)])
        return g


_FLOAT_DTYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_ROLE_ORDER = {"out": 0, "scale": 1, "bias": 2, "stat": 3, "in": 4, "other": 5}


GROUP_CONV_MODES = ("positions", "groups")
DEFAULT_GROUP_CONV = "positions"


def analyze(view: ModelView, hidden: bool = True, group_conv: str = DEFAULT_GROUP_CONV,
            rules: RulesLike = None) -> Analysis:
    """Coupled channel groups of `view`. hidden=False keeps the widths that only lossy pruning could change
    (channels normalised together by LayerNorm/RMSNorm: a transformer's residual stream). `group_conv`: how a
    grouped (non-depthwise) convolution is pruned, "positions" (the same in-group positions removed from every
    group; the group count stays) or "groups" (whole groups removed). `rules`: extra rules (a rule for an op spa
    already covers replaces spa's), or a whole `RuleSet`; see spa.rules.rule_set. The analysis keeps the set, so
    that rewriting and verification use the same rules."""
    if group_conv not in GROUP_CONV_MODES:
        raise ValueError(f"group_conv must be one of {GROUP_CONV_MODES}, got {group_conv!r}")
    ruleset = rule_set(rules)
    c = Couplings(view, hidden, group_conv)
    unknown: dict[str, list[str]] = {}
    for name in view.graph_inputs:
        c.freeze_tensor(name, f"graph input '{name}'")
    for name in view.graph_outputs:
        c.freeze_tensor(name, f"graph output '{name}'")

    nodes = view.model.graph.node
    for idx in topo_order(view.model):
        node = nodes[idx]
        n = NodeCtx(node, view, c)
        rule = ruleset.rule_for(node)
        c.mentioned = set()
        c.freed_tensors = set()
        c.node_reason = None
        if rule is None:
            dom = f" (domain {node.domain})" if node.domain not in ("", "ai.onnx") else ""
            unknown.setdefault(node.op_type + dom, []).append(n.name)
            for t in set(_all_tensors(node)):
                c.freeze_tensor(t, f"{n.where()}: op {node.op_type}{dom} has no channel rule")
            continue
        try:
            rule.couple(n)
        except Exception as e:  # a rule that trips on an odd node fails closed for that node
            for t in set(_all_tensors(node)):
                c.freeze_tensor(t, f"{n.where()}: rule error ({type(e).__name__}: {e})")
            continue
        # fail closed: every axis the rule did not mention is frozen
        for t in n.inputs + n.outputs:
            if t in c.freed_tensors:
                continue
            s = view.shape(t)
            if s is None:
                c.freeze_tensor(t, f"{n.where()}: shape of '{t}' is unknown")
                continue
            for ax, d in enumerate(s):
                if d != 1 and (t, ax) not in c.mentioned:
                    why = c.node_reason or f"axis {ax} of '{t}' is not channel-mapped"
                    c.frozen.setdefault((t, ax), f"{n.where()}: {why}")

    a = _groups(view, c, unknown)
    a.group_conv = group_conv
    a.rules = ruleset
    return a


def _all_tensors(node) -> list[str]:
    return node_inputs(node) + [o for o in node.output if o]


def _labels_of_pairs(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """One label per distinct (first, second) pair, numbered in sorted order: np.unique(np.stack([first,
    second], 1), axis=0, return_inverse=True)[1], without the row-wise sort that np.unique(axis=0) does
    (ResNet-50: 7 ms of a 45 ms analysis)."""
    order = np.lexsort((second, first))
    f, s = first[order], second[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (f[1:] != f[:-1]) | (s[1:] != s[:-1])
    labels = np.empty(len(order), dtype=np.int64)
    labels[order] = np.cumsum(new) - 1
    return labels


def _groups(view: ModelView, c: Couplings, unknown: dict[str, list[str]]) -> Analysis:
    a, b = c.edges()
    roots = components(c.n_atoms, a, b)
    # np.unique(roots, return_inverse=True) without its sort: roots are node ids, so a mark per id ranks them
    is_root = np.zeros(c.n_atoms, dtype=bool)
    is_root[roots] = True
    comp_of_atom = (np.cumsum(is_root) - 1)[roots]
    n_comp = int(is_root.sum())

    slots = list(c.offset)
    slot_comps = {s: comp_of_atom[c.offset[s] : c.offset[s] + c.size[s]] for s in slots}

    # which slots each channel lives in → a signature; channels with equal signatures form one group
    rng = np.random.default_rng(12345)
    keys = rng.integers(1, 2**63 - 1, size=len(slots), dtype=np.int64).astype(np.uint64)
    pc, ps = _slot_pairs(slots, slot_comps, n_comp)
    sig = np.zeros(n_comp, dtype=np.uint64)
    np.add.at(sig, pc, keys[ps])
    cnt = np.bincount(pc, minlength=n_comp)
    has_param = np.zeros(n_comp, dtype=bool)
    # groups are reported only where they touch a floating-point initializer (weights, not shape constants) or a
    # quantized weight (integer codes that a rule marked as such, along the axes a consumer gave a role: a
    # kernel's spatial axes pass through DequantizeLinear but are no channels)
    is_param_slot = np.array(
        [s[0] in view.inits and (view.inits[s[0]].data_type in _FLOAT_DTYPES or (s[0] in c.quantized and s in c.roles))
         for s in slots],
        dtype=bool,
    )
    has_param[pc[is_param_slot[ps]]] = True

    grp_of_comp = _labels_of_pairs(sig, cnt)

    pc_sorted, ps_sorted = pc, ps  # _slot_pairs sorts by component, then slot
    starts = np.searchsorted(pc_sorted, np.arange(n_comp))
    ends = np.searchsorted(pc_sorted, np.arange(n_comp), side="right")

    comp_group = np.full(n_comp, -1, dtype=np.int64)
    comp_local = np.full(n_comp, -1, dtype=np.int64)
    groups: list[Group] = []
    # deterministic group order: by first appearance in the graph's slots
    first_comp_of_grp: dict[int, int] = {}
    for comp in range(n_comp):
        if has_param[comp]:
            first_comp_of_grp.setdefault(int(grp_of_comp[comp]), comp)
    comps_by_grp: dict[int, list[int]] = {}
    for comp in np.nonzero(has_param)[0]:
        comps_by_grp.setdefault(int(grp_of_comp[comp]), []).append(int(comp))

    for gid_raw, rep in sorted(first_comp_of_grp.items(), key=lambda kv: _first_slot(kv[1], ps_sorted, starts)):
        member_slot_ids = ps_sorted[starts[rep] : ends[rep]]
        comps = np.array(comps_by_grp[gid_raw], dtype=np.int64)
        mslots = [slots[i] for i in member_slot_ids]
        mslots.sort(key=lambda s: (s[0] not in view.inits, _ROLE_ORDER.get(c.roles.get(s, ("other",))[0], 9)))
        anchor = mslots[0]
        lab = slot_comps[anchor]
        in_grp = grp_of_comp[lab] == gid_raw
        pos = np.nonzero(in_grp)[0]
        ucomp, first_idx = np.unique(lab[pos], return_index=True)
        local_order = ucomp[np.argsort(first_idx, kind="stable")]
        gid = len(groups)
        comp_group[local_order] = gid
        comp_local[local_order] = np.arange(len(local_order))
        members, frozen, lossy = _members(view, c, mslots, slot_comps, gid, comp_group, comp_local)
        width = int(np.count_nonzero(members[0].ids >= 0) // max(1, len(local_order)))
        assert len(local_order) == len(comps)
        groups.append(Group(gid, len(local_order), members, frozen, local_order, width, lossy))

    return Analysis(view, groups, slot_comps, comp_group, comp_local, unknown, c.lossy_sites)


def _slot_pairs(slots: list[Slot], slot_comps: dict[Slot, np.ndarray], n_comp: int) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct (component, slot index) pair, sorted by component and then slot: one np.unique over
    all slots at once (one call per slot cost ResNet-50 0.13 s of its 0.25 s analysis)."""
    if not slots:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sizes = np.array([len(slot_comps[s]) for s in slots], dtype=np.int64)
    slot_of = np.repeat(np.arange(len(slots), dtype=np.int64), sizes)
    comps = np.concatenate([slot_comps[s] for s in slots]).astype(np.int64)
    key = np.sort(comps * len(slots) + slot_of)
    key = key[np.concatenate(([True], key[1:] != key[:-1]))]  # np.unique hashes first: 8x slower here (numpy 2.4)
    return key // len(slots), key % len(slots)


def _members(view: ModelView, c: Couplings, mslots: list[Slot], slot_comps: dict[Slot, np.ndarray],
             gid: int, comp_group: np.ndarray, comp_local: np.ndarray) -> tuple[list[Member], list[str], list[str]]:
    """A group's members (one per slot: where its channels sit along the axis, -1 elsewhere), and the distinct
    reasons its slots are frozen or lossy."""
    members: list[Member] = []
    frozen: list[str] = []
    lossy: list[str] = []
    for s in mslots:
        lab_s = slot_comps[s]
        ids = np.where(comp_group[lab_s] == gid, comp_local[lab_s], -1)
        role, neutral = c.roles.get(s, (OTHER, 0.0))
        members.append(Member(s[0], s[1], s[0] in view.inits, role, neutral, ids))
        r = c.frozen.get(s) or c.frozen_tensors.get(s[0])
        if r and r not in frozen:
            frozen.append(r)
        lr = c.lossy.get(s)
        if lr and lr not in lossy:
            lossy.append(lr)
    return members, frozen, lossy


def _first_slot(comp: int, ps_sorted: np.ndarray, starts: np.ndarray) -> int:
    return int(ps_sorted[starts[comp]])
