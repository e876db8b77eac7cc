"""A self-contained HTML view of an analysis (and, optionally, of a plan): `spa analyze --html`.

One file, no external resources (inline CSS, JS and SVG; system fonts), so it opens offline and can be
attached to a ticket. It shows:

* a header with the model's statistics and the group counts (and the plan's summary when one is given);
* the graph drawn top to bottom: a layered layout computed here (layer = longest path from the graph inputs,
  long edges routed through virtual points, a few barycentre sweeps to untangle each layer). A node is filled
  with the colour of the prunable group its weights' output channels belong to (a left stripe: the group of
  its input channels); a node that touches a frozen group is outlined in red and its tooltip says why;
* a table of the groups (filterable); clicking a row highlights the group's nodes and edges in the graph,
  clicking a node selects its group.

Every name that comes from the model is escaped (`html.escape`); the only script data are integers.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..view import node_inputs, topo_order
from ..report import human

if TYPE_CHECKING:
    from ..api import AnalyzeReport
    from ..plan import Plan

# A stable palette, indexed by group id. Light enough for dark text, distinct from the frozen red outline.
# PALETTE[1] (group 1) is the tests' probe colour: keep it distinctive.
PALETTE = [
    "#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494", "#8dd3c7",
    "#bebada", "#80b1d3", "#dbdb8d", "#f7b6d2", "#bc80bd", "#ccebc5", "#c49c94", "#aec7e8",
    "#9edae5", "#c2a5cf", "#e7ba52", "#ce6dbd",
]
FROZEN_RED = "#d62728"
PLAIN_FILL = "#f3f4f6"
FROZEN_FILL = "#e5e7eb"

_ROLE_ORDER = {"out": 0, "scale": 1, "bias": 2, "stat": 3, "other": 4, "in": 5}

# layout constants (SVG user units = CSS px at zoom 1)
BOX_W, BOX_H = 150, 34
IO_W = 110
DUMMY_W = 8
GAP_X = 18
LAYER_H = 58
MARGIN = 20
LABEL_CHARS = 22
TIP_REASONS = 6
TIP_CHARS = 240
MEMBER_SHOW = 3
MEMBER_TIP = 40
DUMMY_BUDGET = 20000  # virtual points for long edges; longer edges beyond it are drawn as direct curves
DUMMY_MAX_SPAN = 400
LANES, LANE_GAP = 24, 6


def color(gid: int) -> str:
    return PALETTE[gid % len(PALETTE)]


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _cut_left(s: str, n: int) -> str:
    return s if len(s) <= n else "…" + s[-(n - 1):]


def _short_name(name: str, op: str) -> str:
    """'/layer1/layer1.0/conv1/Conv' → 'layer1.0/conv1' (the last two path parts, op suffix dropped)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if len(parts) > 1 and (parts[-1] == op or parts[-1].split("_")[0] == op):
        parts = parts[:-1]
    two = "/".join(parts[-2:])
    return two if len(two) <= LABEL_CHARS else _cut_left(parts[-1] if parts else "", LABEL_CHARS)


def _bytes(n: int) -> str:
    for div, suf in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= div:
            return f"{n / div:.2f} {suf}"
    return f"{n} B"


# ----------------------------------------------------------------------------------------------- layout
@dataclass
class _Box:
    kind: str  # "op" | "in" | "out" | "dummy"
    width: int
    preds: list[int] = field(default_factory=list)
    succs: list[int] = field(default_factory=list)
    layer: int = 0
    x: float = 0.0


def _layout(boxes: list[_Box], order: list[int], edges: list[tuple[int, int]]) -> tuple[list[list[int]], dict]:
    """Layers (longest path), virtual points on long edges, barycentre ordering, x placement.
    Mutates `boxes` (adds dummies, sets layer and x). Returns the layers and, per edge, its list of box ids."""
    for a, b in edges:
        boxes[a].succs.append(b)
        boxes[b].preds.append(a)
    _assign_layers(boxes, order)
    paths = _add_dummies(boxes, edges)
    layers = _order_layers(boxes, order)
    _place_x(boxes, layers)
    return layers, paths


def _assign_layers(boxes: list[_Box], order: list[int]) -> None:
    """Layer = longest path from a source; sources that are not graph inputs (constants, nodes reading only
    initializers) sit just above their first consumer instead of at the top."""
    for v in order:
        bx = boxes[v]
        bx.layer = max((boxes[p].layer + 1 for p in bx.preds), default=0)
    for v in reversed(order):
        bx = boxes[v]
        if not bx.preds and bx.kind == "op" and bx.succs:
            bx.layer = max(0, min(boxes[s].layer for s in bx.succs) - 1)


def _add_dummies(boxes: list[_Box], edges: list[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    """Virtual points on edges spanning several layers (shortest first, within DUMMY_BUDGET), so long edges
    take part in the ordering. Returns each edge's chain of box ids."""
    paths: dict[tuple[int, int], list[int]] = {}
    spans = sorted(((boxes[b].layer - boxes[a].layer, a, b) for a, b in edges), key=lambda t: t[0])
    budget = DUMMY_BUDGET
    for span, a, b in spans:
        if span <= 1 or span > DUMMY_MAX_SPAN or span - 1 > budget:
            paths[(a, b)] = [a, b]
            continue
        budget -= span - 1
        chain = [a]
        prev = a
        for k in range(1, span):
            d = len(boxes)
            boxes.append(_Box("dummy", DUMMY_W, [prev], [], boxes[a].layer + k))
            boxes[prev].succs.append(d)
            chain.append(d)
            prev = d
        boxes[prev].succs.append(b)
        boxes[b].preds.append(prev)
        # the direct a→b adjacency is replaced by the chain for ordering purposes
        boxes[a].succs.remove(b)
        boxes[b].preds.remove(a)
        chain.append(b)
        paths[(a, b)] = chain
    return paths


def _order_layers(boxes: list[_Box], order: list[int]) -> list[list[int]]:
    """Boxes per layer, ordered by a few barycentre sweeps (down, up, down) to untangle the edges."""
    n_layers = max((bx.layer for bx in boxes), default=-1) + 1
    layers: list[list[int]] = [[] for _ in range(n_layers)]
    for v in order:
        layers[boxes[v].layer].append(v)
    for d in range(len(order), len(boxes)):
        if boxes[d].kind == "dummy":
            layers[boxes[d].layer].append(d)
    pos = {v: i for layer in layers for i, v in enumerate(layer)}

    def sweep(down: bool) -> None:
        rng = range(1, n_layers) if down else range(n_layers - 2, -1, -1)
        for li in rng:
            layer = layers[li]
            keys = []
            for v in layer:
                nb = boxes[v].preds if down else boxes[v].succs
                nb = [u for u in nb if boxes[u].layer == li + (-1 if down else 1)]
                keys.append((sum(pos[u] for u in nb) / len(nb)) if nb else float(pos[v]))
            idx = sorted(range(len(layer)), key=lambda i: (keys[i], i))
            layer[:] = [layer[i] for i in idx]
            for i, v in enumerate(layer):
                pos[v] = i

    for _ in range(2):
        sweep(True)
        sweep(False)
    sweep(True)
    return layers


def _place_x(boxes: list[_Box], layers: list[list[int]]) -> None:
    """Each box wants the mean x of its predecessors (layer 0: packed), then the layer is packed left to right
    without overlap and shifted back so the displacement averages out."""
    def sep(a: int, b: int) -> float:
        both_dummies = boxes[a].kind == "dummy" and boxes[b].kind == "dummy"
        return (boxes[a].width + boxes[b].width) / 2 + (4 if both_dummies else GAP_X)

    for li, layer in enumerate(layers):
        if not layer:
            continue
        want = []
        for v in layer:
            ps = boxes[v].preds
            want.append(sum(boxes[p].x for p in ps) / len(ps) if ps and li > 0 else None)
        xs: list[float] = []
        for i, v in enumerate(layer):
            w = want[i]
            if i == 0:
                x = w if w is not None else 0.0
            else:
                lo = xs[-1] + sep(layer[i - 1], v)
                x = max(w, lo) if w is not None else lo
            xs.append(x)
        known = [(x, w) for x, w in zip(xs, want) if w is not None]
        if known:
            shift = sum(x - w for x, w in known) / len(known)
            xs = [x - shift for x in xs]
        for v, x in zip(layer, xs):
            boxes[v].x = x
    if boxes:
        lo = min(bx.x - bx.width / 2 for bx in boxes)
        for bx in boxes:
            bx.x += MARGIN - lo


# ------------------------------------------------------------------------------------------------ render
def render(report: "AnalyzeReport", path: str | Path, *, plan: "Plan | None" = None, title: str | None = None) -> None:
    """Write the HTML view of `report` (and of `plan`, if given) to `path`."""
    Path(path).write_text(to_html(report, plan=plan, title=title), encoding="utf-8")


@dataclass
class _Colouring:
    """Which groups each box touches, and which group fills it / stripes its left edge."""

    touches: list[set[int]]
    fill_of: dict[int, tuple[int, int]]  # box → (role rank, group id) of the best prunable param group
    stripe_of: dict[int, int]  # box → group id of its input channels (role "in")
    tensor_groups: dict[str, set[int]]


@dataclass
class _Drawing:
    """The laid-out graph: boxes (ops, then graph inputs, then outputs, then virtual points), edges and lanes."""

    boxes: list[_Box]
    order: list[int]
    layers: list[list[int]]
    paths: dict
    edge_tensors: dict[tuple[int, int], list[str]]
    lane_of: dict[tuple[int, int], int]
    right: float
    inputs: list[str]
    outputs: list[str]

    @property
    def width(self) -> int:
        return int(self.right + MARGIN)

    @property
    def height(self) -> int:
        return int(len(self.layers) * LAYER_H + MARGIN * 2)


def _ypos(bx: _Box) -> float:
    return MARGIN + bx.layer * LAYER_H


def _colouring(a, in_box: dict[str, int], out_box: dict[str, int], n_boxes: int) -> _Colouring:
    view = a.view
    c = _Colouring([set() for _ in range(n_boxes)], {}, {}, {})
    for g in a.groups:
        for m in g.members:
            c.tensor_groups.setdefault(m.tensor, set()).add(g.id)
            users = list(view.consumers.get(m.tensor, []))
            if m.tensor in view.producer:
                users.append(view.producer[m.tensor])
            if m.tensor in in_box:
                users.append(in_box[m.tensor])
            if m.tensor in out_box:
                users.append(out_box[m.tensor])
            for i in users:
                c.touches[i].add(g.id)
            if m.is_param and g.prunable:
                rank = _ROLE_ORDER.get(m.role, 4)
                for i in view.consumers.get(m.tensor, []):
                    if m.role == "in":
                        c.stripe_of.setdefault(i, g.id)
                    else:
                        cur = c.fill_of.get(i)
                        if cur is None or (rank, g.id) < cur:
                            c.fill_of[i] = (rank, g.id)
    # a node with only input-channel weights in a prunable group (e.g. the classifier) is filled by that group
    for i, gid in c.stripe_of.items():
        c.fill_of.setdefault(i, (9, gid))
    return c


def _draw(view, in_box: dict[str, int], out_box: dict[str, int]) -> _Drawing:
    nodes = view.model.graph.node
    n_nodes = len(nodes)
    inputs, outputs = list(in_box), list(out_box)
    boxes: list[_Box] = [_Box("op", BOX_W) for _ in range(n_nodes)]
    boxes += [_Box("in", IO_W) for _ in inputs] + [_Box("out", IO_W) for _ in outputs]
    edge_tensors: dict[tuple[int, int], list[str]] = {}
    for i, node in enumerate(nodes):
        for t in node_inputs(node):
            src = view.producer.get(t, in_box.get(t))
            if src is not None and src != i:
                edge_tensors.setdefault((src, i), []).append(t)
    for name, b in out_box.items():
        src = view.producer.get(name, in_box.get(name))
        if src is not None:
            edge_tensors.setdefault((src, b), []).append(name)
    order = list(range(n_nodes, n_nodes + len(inputs))) + topo_order(view.model) + list(out_box.values())
    layers, paths = _layout(boxes, order, list(edge_tensors))
    right = max((bx.x + bx.width / 2 for bx in boxes), default=0)
    # edges spanning several layers without virtual points run down lanes right of the drawing
    long_direct = [e for e in edge_tensors if len(paths.get(e, e)) == 2 and boxes[e[1]].layer - boxes[e[0]].layer > 1]
    lane_of = {e: k % LANES for k, e in enumerate(long_direct)}
    if long_direct:
        right += 12 + LANE_GAP * min(LANES, len(long_direct))
    return _Drawing(boxes, order, layers, paths, edge_tensors, lane_of, right, inputs, outputs)


def _svg_edges(dr: _Drawing, col: _Colouring) -> list[str]:
    boxes, svg = dr.boxes, []
    for (a_, b_), ts in dr.edge_tensors.items():
        chain = dr.paths.get((a_, b_), [a_, b_])
        gids = sorted(set().union(*(col.tensor_groups.get(t, set()) for t in ts)))
        dg = f' data-g="{" ".join(map(str, gids))}"' if gids else ""
        lane = dr.lane_of.get((a_, b_))
        if lane is not None:
            sb, db = boxes[a_], boxes[b_]
            sx, sy, dx, dy = round(sb.x), round(_ypos(sb) + BOX_H), round(db.x), round(_ypos(db))
            lx = round(dr.right - LANE_GAP * lane)
            gap = LAYER_H - BOX_H
            svg.append(f'<path d="M{sx},{sy}C{sx},{sy + gap // 2} {lx},{sy + gap // 2} {lx},{sy + gap}'
                       f'V{dy - gap}C{lx},{dy - gap // 2} {dx},{dy - gap // 2} {dx},{dy}"{dg}/>')
            continue
        pts = []
        for k, v in enumerate(chain):
            bx = boxes[v]
            y = _ypos(bx)
            if k == 0:
                pts.append((bx.x, y + BOX_H))
            elif k == len(chain) - 1:
                pts.append((bx.x, y))
            else:
                pts.append((bx.x, y))
                pts.append((bx.x, y + BOX_H))
        pts = [(round(x), round(y)) for x, y in pts]
        pts = [p for k, p in enumerate(pts) if k in (0, len(pts) - 1) or not (pts[k - 1][0] == p[0] == pts[k + 1][0])]
        d = [f"M{pts[0][0]:.0f},{pts[0][1]:.0f}"]
        for (x1, y1), (x2, y2) in zip(pts, pts[1:]):
            if x1 == x2:
                d.append(f"V{y2:.0f}")
            else:
                my = (y1 + y2) / 2
                d.append(f"C{x1:.0f},{my:.0f} {x2:.0f},{my:.0f} {x2:.0f},{y2:.0f}")
        svg.append(f'<path d="{"".join(d)}"{dg}/>')
    return svg


def _frozen_lines(by_id: dict, gids) -> list[str]:
    out = []
    for gid in sorted(gids):
        g = by_id[gid]
        if not g.prunable:
            out.append(f"group {gid} frozen: {_cut(g.why, TIP_CHARS)}")
    if len(out) > TIP_REASONS:
        out = out[:TIP_REASONS] + [f"… and {len(out) - TIP_REASONS} more frozen groups"]
    return out


def _svg_node(v: int, dr: _Drawing, col: _Colouring, nodes, by_id: dict, plan_by_key: dict) -> str:
    """One box: its rectangle (filled by its group), label, stripe and tooltip (frozen reasons)."""
    n_nodes = len(nodes)
    bx = dr.boxes[v]
    x0 = bx.x - bx.width / 2
    y0 = _ypos(bx)
    gids = col.touches[v]
    frozen = _frozen_lines(by_id, gids)
    cls = "n"
    if bx.kind == "op":
        node = nodes[v]
        name = node.name or (node.output[0] if node.output else "")
        op = node.op_type
        line1 = _cut(op, LABEL_CHARS)
        line2 = _short_name(name, op)
        tip = [f"{op}  {_cut(name, TIP_CHARS)}"]
        if node.domain not in ("", "ai.onnx"):
            tip[0] += f"  (domain {_cut(node.domain, 60)})"
    else:
        name = dr.inputs[v - n_nodes] if bx.kind == "in" else dr.outputs[v - n_nodes - len(dr.inputs)]
        line1 = "input" if bx.kind == "in" else "output"
        line2 = _cut(name, 17)
        tip = [f"graph {line1} {_cut(name, TIP_CHARS)}"]
        cls += " io"
    fill = PLAIN_FILL
    fg = col.fill_of.get(v)
    if fg is not None:
        fill = color(fg[1])
        g = by_id[fg[1]]
        gp = plan_by_key.get(g.key)
        after = f" → {len(gp.keep)}" if gp is not None else ""
        tip.append(f"group {g.id}: {g.size}{after} channels")
    if gids:
        shown = sorted(gids)
        tip.append("groups: " + ", ".join(map(str, shown[:30])) + (" …" if len(shown) > 30 else ""))
    tip += frozen
    if frozen:
        cls += " fz"
    attrs = f' data-i="{v}"'
    if gids:
        attrs += f' data-g="{" ".join(map(str, sorted(gids)))}"'
    if fg is not None:
        attrs += f' data-p="{fg[1]}"'
    rx = 12 if bx.kind != "op" else 4
    parts = [
        f'<g class="{cls}"{attrs}><title>{_e(chr(10).join(tip))}</title>',
        f'<rect x="{x0:.0f}" y="{y0:.0f}" width="{bx.width}" height="{BOX_H}" rx="{rx}" fill="{fill}"/>',
    ]
    sg = col.stripe_of.get(v)
    if sg is not None and fg is not None and sg != fg[1]:
        parts.append(f'<rect class="st" x="{x0 + 1:.0f}" y="{y0 + 1:.0f}" width="7" height="{BOX_H - 2}" '
                     f'fill="{color(sg)}"/>')
    parts.append(f'<text x="{bx.x:.0f}" y="{y0 + 14:.0f}" class="t1">{_e(line1)}</text>')
    parts.append(f'<text x="{bx.x:.0f}" y="{y0 + 27:.0f}" class="t2">{_e(line2)}</text></g>')
    return "".join(parts)


def _svg(dr: _Drawing, col: _Colouring, nodes, by_id: dict, plan_by_key: dict) -> list[str]:
    w, h = dr.width, dr.height
    return [
        f'<svg id="graph" width="{w}" height="{h}" viewBox="0 0 {w} {h}" data-w="{w}" data-h="{h}">',
        '<defs><marker id="ah" viewBox="0 0 8 8" refX="8" refY="4" markerUnits="userSpaceOnUse" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0L8,4L0,8z" fill="#8a94a6"/></marker></defs>',
        '<g id="edges">',
        *_svg_edges(dr, col),
        "</g><g id=\"nodes\">",
        *(_svg_node(v, dr, col, nodes, by_id, plan_by_key) for v in dr.order),
        "</g></svg>",
    ]


def _table_row(g, plan: "Plan | None", plan_by_key: dict) -> str:
    params = [m.label for m in g.members if m.is_param] or [m.label for m in g.members]
    shown = ", ".join(f"<span>{_e(_cut(p, 120))}</span>" for p in params[:MEMBER_SHOW])
    more = f" … +{len(params) - MEMBER_SHOW}" if len(params) > MEMBER_SHOW else ""
    tipm = "\n".join(_cut(m.label, 120) + f"  ({m.role})" for m in g.members[:MEMBER_TIP])
    if len(g.members) > MEMBER_TIP:
        tipm += f"\n… {len(g.members) - MEMBER_TIP} more"
    status = "prunable" if g.prunable else "frozen"
    reason = g.why
    if len(g.frozen) > 1:
        reason += f" (+{len(g.frozen) - 1} more)"
    reason_tip = "\n".join(_cut(r, 400) for r in g.frozen[:10])
    sw = color(g.id) if g.prunable else FROZEN_FILL
    cells = [
        f'<td><span class="sw" style="background:{sw}"></span></td>',
        f'<td class="num" title="key {_e(g.key)}">{g.id}</td>',
        f'<td class="num">{g.size}</td>',
        f'<td class="{status}">{status}</td>',
    ]
    if plan is not None:
        gp = plan_by_key.get(g.key)
        if gp is not None:
            k = len(gp.keep)
            pct = 100.0 * k / max(1, gp.size)
            cells.append(
                f'<td class="num w"><span class="bar"><span style="width:{pct:.0f}%;background:{sw}"></span>'
                f"</span>{gp.size} → <b>{k}</b></td>"
            )
        else:
            cells.append(f'<td class="num w same">{g.size} → {g.size}</td>')
    cells.append(f'<td class="why" title="{_e(reason_tip)}">{_e(_cut(reason, 200))}</td>')
    cells.append(f'<td class="mem" title="{_e(tipm)}">{shown}{more}</td>')
    return f'<tr data-g="{g.id}" data-c="{sw}" class="{status}">' + "".join(cells) + "</tr>"


def _facts_and_notes(report: "AnalyzeReport", plan: "Plan | None") -> tuple[list[tuple[str, str]], list[str]]:
    """The header: model statistics, group counts, the plan's summary; notes (ops without a rule, stray plan
    entries)."""
    a = report.analysis
    groups = a.groups
    st = report.stats
    n_prunable = len(a.prunable)
    chans = sum(g.size for g in a.prunable)
    facts = [
        ("nodes", f"{st.nodes:,}"),
        ("params", human(st.params)),
        ("MACs", human(st.macs)),
        ("file", _bytes(st.size_bytes)),
        ("groups", f"{len(groups)}"),
        ("prunable", f"{n_prunable} ({chans:,} ch)"),
        ("frozen", f"{len(groups) - n_prunable}"),
    ]
    notes: list[str] = []
    if a.unknown_ops:
        ops = ", ".join(f"{_e(_cut(op, 60))} ×{len(ns)}" for op, ns in sorted(a.unknown_ops.items())[:20])
        notes.append(f"ops without a channel rule (their tensors are frozen): {ops}")
    if plan is not None:
        keys = {g.key for g in groups}
        matched = [gp for gp in plan.groups if gp.key in keys]
        removed = sum(gp.size - len(gp.keep) for gp in matched)
        facts.append(("plan", f"{_e(plan.criterion or '?')} {_e(plan.mode or '')} ratio {plan.ratio:g}"))
        facts.append(("pruned groups", f"{len(matched)}"))
        facts.append(("channels removed", f"{removed:,} of {chans:,}"))
        stray = len(plan.groups) - len(matched)
        if stray:
            notes.append(f"{stray} plan entr{'y' if stray == 1 else 'ies'} match no group of this model")
    return facts, notes


def to_html(report: "AnalyzeReport", *, plan: "Plan | None" = None, title: str | None = None) -> str:
    """The page: header (facts, notes, legend), the laid-out graph as SVG, the group table, inline CSS/JS."""
    t0 = time.perf_counter()
    a = report.analysis
    view = a.view
    model = view.model
    n_nodes = len(model.graph.node)
    in_box = {name: n_nodes + k for k, name in enumerate(view.graph_inputs)}
    out_box = {name: n_nodes + len(in_box) + k for k, name in enumerate(view.graph_outputs)}
    col = _colouring(a, in_box, out_box, n_nodes + len(in_box) + len(out_box))
    dr = _draw(view, in_box, out_box)
    by_id = {g.id: g for g in a.groups}
    plan_by_key = {gp.key: gp for gp in plan.groups} if plan is not None else {}
    svg = _svg(dr, col, model.graph.node, by_id, plan_by_key)
    rows = [_table_row(g, plan, plan_by_key) for g in a.groups]
    facts, notes = _facts_and_notes(report, plan)
    name = title or model.graph.name or "model"
    facts_html = "".join(f'<div class="f"><span>{_e(k)}</span><b>{v}</b></div>' for k, v in facts)
    notes_html = "".join(f'<div class="note">{n}</div>' for n in notes)
    plan_th = "<th>width</th>" if plan is not None else ""
    took = time.perf_counter() - t0
    doc = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>spa — {_e(_cut(name, 120))}</title><style>{_CSS}</style></head><body>",
        f'<header><h1>spa <small>{_e(_cut(name, 120))}</small></h1><div class="facts">{facts_html}</div>',
        notes_html,
        '<div class="legend"><span><i class="sw" style="background:' + color(0) + '"></i>fill: group of the '
        'node\'s output channels (weights)</span><span><i class="sw stripe" style="background:' + color(2)
        + '"></i>left stripe: group of its input channels</span><span><i class="sw fzl"></i>red outline: '
        "touches a frozen group (hover for why)</span><span>click a row or a node to highlight a group</span>"
        "</div></header>",
        '<main><section id="gp"><div class="tools"><button id="zo" title="zoom out">−</button>'
        '<button id="zi" title="zoom in">+</button><button id="zf" title="fit width">fit</button>'
        f'<button id="zr" title="actual size">1:1</button><span class="dim">{n_nodes:,} nodes · '
        f"{len(dr.layers)} layers · layout {took:.2f}s</span></div>",
        '<div id="gs">', "\n".join(svg), "</div></section>",
        '<section id="tp"><div class="tools"><input id="q" type="search" placeholder="filter groups (id, tensor, '
        'reason…)" autocomplete="off"><select id="s"><option value="">all</option><option value="prunable">'
        'prunable</option><option value="frozen">frozen</option></select><span id="cnt" class="dim"></span></div>',
        '<div id="ts"><table><thead><tr><th></th><th>id</th><th>ch</th><th>status</th>'
        f"{plan_th}<th>reason</th><th>members</th></tr></thead><tbody>",
        "\n".join(rows),
        "</tbody></table></div></section></main>",
        f"<script>{_JS}</script></body></html>\n",
    ]
    return "\n".join(doc)


_CSS = """
*{box-sizing:border-box}
html,body{margin:0;height:100%}
body{font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2937;
 background:#fff;display:flex;flex-direction:column}
header{padding:8px 14px;border-bottom:1px solid #e5e7eb;background:#f9fafb}
h1{font-size:17px;margin:0 0 6px}
h1 small{font-weight:400;color:#4b5563;margin-left:6px}
.facts{display:flex;flex-wrap:wrap;gap:6px}
.f{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:3px 9px}
.f span{color:#6b7280;margin-right:6px}
.note{margin-top:5px;color:#92400e}
.legend{margin-top:6px;color:#4b5563;font-size:12px;display:flex;flex-wrap:wrap;gap:16px}
.legend .sw{display:inline-block;vertical-align:-2px;margin-right:5px}
.sw{display:inline-block;width:14px;height:14px;border-radius:3px;border:1px solid #9ca3af}
.sw.stripe{width:5px}
.sw.fzl{background:#fff;border:2px solid #d62728}
main{flex:1;display:flex;min-height:0}
section{display:flex;flex-direction:column;min-width:0;min-height:0}
#gp{flex:1 1 50%;border-right:1px solid #e5e7eb}
#tp{flex:1 1 50%}
.tools{display:flex;gap:6px;align-items:center;padding:6px 10px;border-bottom:1px solid #e5e7eb}
.tools input{flex:1;min-width:120px;padding:4px 8px;border:1px solid #d1d5db;border-radius:5px;font:inherit}
.tools select,.tools button{font:inherit;padding:3px 9px;border:1px solid #d1d5db;border-radius:5px;background:#fff}
.tools button{cursor:pointer}
.dim{color:#6b7280;font-size:12px}
#gs,#ts{flex:1;overflow:auto;min-height:0}
#graph{display:block;margin:0 auto}
#edges path{fill:none;stroke:#a3acb9;stroke-width:1.2;marker-end:url(#ah)}
.n rect{stroke:#6b7280;stroke-width:1}
.n.io rect{stroke-dasharray:4 2}
.n rect.st{stroke:none}
.n.fz>rect:first-of-type{stroke:#d62728;stroke-width:2.5}
.n text{font-size:11px;text-anchor:middle;fill:#111827;pointer-events:none}
.n .t1{font-weight:600}
.n .t2{fill:#374151;font-size:10.5px}
.n{cursor:pointer}
#graph.hi .n{opacity:.22}
#graph.hi #edges path{opacity:.15}
#graph.hi .n.hl{opacity:1}
#graph.hi .n.hl>rect:first-of-type{stroke:#111827;stroke-width:3}
#graph.hi #edges path.hl{opacity:1;stroke-width:3}
table{border-collapse:collapse;width:100%}
th{position:sticky;top:0;background:#f3f4f6;text-align:left;font-weight:600;padding:5px 6px;
 border-bottom:1px solid #d1d5db;z-index:1}
td{padding:4px 6px;border-bottom:1px solid #f0f1f3;vertical-align:top}
tbody tr{cursor:pointer}
tbody tr:hover{background:#f5f7ff}
tr.sel{background:#fff7d6!important;outline:2px solid #f59e0b;outline-offset:-2px}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.prunable{color:#047857;font-weight:600}
td.frozen{color:#b91c1c;font-weight:600}
td.why{color:#4b5563;max-width:26em}
td.mem{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:11.5px;
 max-width:34em}
td.mem span{display:inline-block;max-width:100%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;
 vertical-align:top}
td.w.same{color:#9ca3af}
.bar{display:inline-block;width:48px;height:8px;border:1px solid #d1d5db;border-radius:3px;margin-right:6px;
 vertical-align:0;overflow:hidden}
.bar span{display:block;height:100%}
@media (max-width:900px){main{flex-direction:column}#gp{border-right:0;border-bottom:1px solid #e5e7eb}}
"""

_JS = r"""
(function(){
var svg=document.getElementById('graph'),gs=document.getElementById('gs'),ts=document.getElementById('ts');
var W=+svg.dataset.w,H=+svg.dataset.h,z=1;
var byG={},eByG={},i,k;
function add(m,g,el){(m[g]||(m[g]=[])).push(el);}
var ns=svg.querySelectorAll('.n');
function index(els,m){
  for(var j=0;j<els.length;j++){
    var g=els[j].getAttribute('data-g');
    if(g){g=g.split(' ');for(k=0;k<g.length;k++)add(m,g[k],els[j]);}
  }
}
index(ns,byG);index(svg.querySelectorAll('#edges path'),eByG);
var rows=document.querySelectorAll('tbody tr'),rowBy={};
for(i=0;i<rows.length;i++)rowBy[rows[i].getAttribute('data-g')]=rows[i];
var cur=null;
function clear(){
  svg.classList.remove('hi');
  var h=svg.querySelectorAll('.hl');for(var j=0;j<h.length;j++){h[j].classList.remove('hl');h[j].style.stroke='';}
  if(cur!==null&&rowBy[cur])rowBy[cur].classList.remove('sel');
}
function zoom(nz){
  z=Math.max(0.05,Math.min(4,nz));
  svg.setAttribute('width',Math.round(W*z));svg.setAttribute('height',Math.round(H*z));
}
function centre(el,how){
  var b=el.getBBox();
  gs.scrollTo({left:(b.x+b.width/2)*z-gs.clientWidth/2,top:(b.y+b.height/2)*z-gs.clientHeight/2,
               behavior:how});
}
function show(g,fromGraph,how){
  if(!rowBy[g])return;
  clear();
  if(cur===g){cur=null;return;}
  cur=g;
  var row=rowBy[g],c=row?row.getAttribute('data-c'):'#111827';
  var n=byG[g]||[],e=eByG[g]||[];
  svg.classList.add('hi');
  for(var j=0;j<n.length;j++)n[j].classList.add('hl');
  for(j=0;j<e.length;j++){e[j].classList.add('hl');e[j].style.stroke=c;}
  if(row){row.classList.add('sel');if(fromGraph){row.hidden=false;row.scrollIntoView({block:'center'});}}
  if(n.length&&!fromGraph)centre(n[0],how||'smooth');
}
function onRow(){show(this.getAttribute('data-g'),false);}
for(i=0;i<rows.length;i++)rows[i].addEventListener('click',onRow);
svg.addEventListener('click',function(ev){
  var t=ev.target.closest?ev.target.closest('.n'):null;
  if(!t){clear();cur=null;return;}
  var g=t.getAttribute('data-p')||(t.getAttribute('data-g')||'').split(' ')[0];
  if(g)show(g,true);
});
var q=document.getElementById('q'),s=document.getElementById('s'),cnt=document.getElementById('cnt');
function filter(){
  var v=q.value.trim().toLowerCase(),st=s.value,n=0;
  for(var j=0;j<rows.length;j++){
    var r=rows[j],ok=(!st||r.classList.contains(st));
    if(ok&&v){
      var hay=(r.textContent+' '+(r.cells[r.cells.length-1].title||'')).toLowerCase();
      ok=hay.indexOf(v)>=0||r.getAttribute('data-g')===v;
    }
    r.hidden=!ok;if(ok)n++;
  }
  cnt.textContent=n+' / '+rows.length+' groups';
}
q.addEventListener('input',filter);s.addEventListener('change',filter);filter();
document.getElementById('zi').onclick=function(){zoom(z*1.25);};
document.getElementById('zo').onclick=function(){zoom(z/1.25);};
document.getElementById('zr').onclick=function(){zoom(1);};
document.getElementById('zf').onclick=function(){zoom((gs.clientWidth-4)/W);};
var fit=(gs.clientWidth-4)/W;
if(fit<1&&fit>=0.6)zoom(fit);
else if(fit<1&&ns.length){var b0=ns[0].getBBox();gs.scrollLeft=(b0.x+b0.width/2)-gs.clientWidth/2;}
function fromHash(){
  var m=/^#g=(\d+)$/.exec(location.hash);
  if(m&&m[1]!==cur&&rowBy[m[1]]){show(m[1],false,'auto');rowBy[m[1]].scrollIntoView({block:'center'});}
}
window.addEventListener('hashchange',fromHash);fromHash();
})();
"""
