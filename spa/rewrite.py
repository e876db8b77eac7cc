"""Plan → a physically smaller model.

Generic part: every initializer slot of a pruned channel is sliced (np.take along the axis). Op-specific part:
each node's rule rewrites the attributes and shape constants that count channels (`Rule.rewrite`), so that
analysis and rewriting are driven by the same rules. Then stale shape annotations are dropped, nodes and
initializers the rewrite made dead are removed, and initializer-backed graph inputs get their new shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from .analysis import Analysis
from .view import node_inputs, shape_sources, topo_order
from .rules.base import RewriteCtx

Sink = Callable[[str, np.ndarray], onnx.TensorProto]


class Rewriter:
    def __init__(
        self,
        analysis: Analysis,
        keep: np.ndarray,
        *,
        sink: Sink | None = None,
        overrides: dict[str, np.ndarray] | None = None,
    ) -> None:
        """`sink(name, array)` encodes each sliced initializer (default: inline in the proto; a streamed model
        passes `spa.stream.Staging.put`, which writes it to the output's external data file at once).
        `overrides`: initializer name → new full-size values (OBSPA's compensated weights), used instead of
        the model's own."""
        self.a = analysis
        self.overrides = overrides or {}
        self.sink: Sink = sink or (lambda name, arr: numpy_helper.from_array(np.ascontiguousarray(arr), name))
        self.view = analysis.view
        self.keep = keep
        # the weights about to be sliced are not copied (step 1 of apply() replaces them): on a CNN pruned
        # everywhere that is most of the model's bytes
        sliced = {name for (name, axis) in self.a.slot_comps if name in self.view.inits and self.kept(name, axis) is not None}
        self.model = _copy_without(self.view.model, sliced)
        self._new_inits: dict[str, onnx.TensorProto] = {}
        self._new_nodes: list[onnx.NodeProto] = []
        self._uses: dict[str, int] = {k: len(v) for k, v in self.view.consumers.items()}
        self._counter = 0

    def kept(self, name: str, axis: int) -> np.ndarray | None:
        comps = self.a.slot_comps.get((name, axis))
        if comps is None:
            return None
        m = self.keep[comps]
        if m.all():
            return None
        return np.nonzero(m)[0]

    @property
    def changed_any(self) -> bool:
        return not self.keep.all()

    def changed_tensor(self, name: str) -> bool:
        s = self.view.shape(name)
        return s is not None and any(self.kept(name, ax) is not None for ax in range(len(s)))

    def set_input_const(self, node: onnx.NodeProto, i: int, value: np.ndarray) -> None:
        old = node.input[i] if i < len(node.input) else ""
        shared = (
            not old
            or old not in self.view.inits
            or self._uses.get(old, 0) > 1
            or old in self.view.graph_outputs
        )
        if shared:
            self._counter += 1
            base = old or f"{node.name or node.op_type}_in{i}"
            name = f"{base}__spa{self._counter}"
            while name in self.view.shapes or name in self._new_inits:
                self._counter += 1
                name = f"{base}__spa{self._counter}"
        else:
            name = old
        self._new_inits[name] = numpy_helper.from_array(np.asarray(value), name)
        if self.model.ir_version < 4 and name != old:  # IR < 4: every initializer is also a graph input
            self.model.graph.input.append(
                onnx.helper.make_tensor_value_info(name, self._new_inits[name].data_type, list(value.shape))
            )
        while len(node.input) <= i:
            node.input.append("")
        node.input[i] = name

    def patch_input(self, node: onnx.NodeProto, i: int, entries: dict[int, int]) -> None:
        """A shape input computed at run time (e.g. from a dynamic batch and sequence) whose entries `entries`
        (position → new value) must change: feed `input * keep + values` instead (Mul, Add on int64)."""
        src = node.input[i]
        s = self.view.shape(src)
        assert s is not None and len(s) == 1 and s[0] is not None, (src, s)
        keep = np.ones(s[0], np.int64)
        vals = np.zeros(s[0], np.int64)
        for m, v in entries.items():
            keep[m], vals[m] = 0, v
        self._counter += 1
        base = f"{src}__spa_patch{self._counter}"
        self._new_inits[base + "_keep"] = numpy_helper.from_array(keep, base + "_keep")
        self._new_inits[base + "_vals"] = numpy_helper.from_array(vals, base + "_vals")
        self._new_nodes += [
            onnx.helper.make_node("Mul", [src, base + "_keep"], [base + "_m"], name=base + "_mul"),
            onnx.helper.make_node("Add", [base + "_m", base + "_vals"], [base], name=base + "_add"),
        ]
        node.input[i] = base

    def apply(self) -> onnx.ModelProto:
        g = self.model.graph
        # 1. slice initializers along every pruned slot
        cuts: dict[str, list[tuple[int, np.ndarray]]] = {}
        for (name, axis) in self.a.slot_comps:
            if name in self.view.inits:
                k = self.kept(name, axis)
                if k is not None:
                    cuts.setdefault(name, []).append((axis, k))
        for i, t in enumerate(g.initializer):
            if t.name in self.overrides and t.name not in cuts:
                g.initializer[i].CopyFrom(self.sink(t.name, self.overrides[t.name]))
            if t.name in cuts:
                arr = self.overrides.get(t.name)
                if arr is None:
                    arr = self.view.array(t.name)  # cached: the criteria usually decoded it already
                for axis, k in cuts[t.name]:
                    arr = np.take(arr, k, axis=axis)
                g.initializer[i].CopyFrom(self.sink(t.name, arr))
                del arr
        # 2. per-node attribute / shape-constant rewrites
        for node in g.node:
            rule = self.a.rules.rule_for(node)  # the rules the analysis used
            if rule is None:
                continue
            touched = any(self.changed_tensor(t) for t in list(node.input) + list(node.output) if t)
            if touched or (rule.always_rewrite and self.changed_any):
                rule.rewrite(RewriteCtx(node, self.view, self))
        g.node.extend(self._new_nodes)  # sorted topologically below
        # shape arithmetic folded at analysis: wherever a rule did not rewrite it and the shapes it was computed
        # from changed, write its original value as a constant (it must not follow the pruned shapes)
        if self.changed_any:
            stale: dict[str, bool] = {}
            for node in g.node:
                for i, t in enumerate(node.input):
                    if t not in self.view.folded:
                        continue
                    if t not in stale:
                        stale[t] = any(self.changed_tensor(s) for s in shape_sources(self.view, t))
                    if stale[t]:
                        self.set_input_const(node, i, self.view.folded[t])
        existing = {t.name: i for i, t in enumerate(g.initializer)}
        for name, t in self._new_inits.items():
            if name in existing:
                g.initializer[existing[name]].CopyFrom(t)
            else:
                g.initializer.append(t)
        # 3. shapes: drop stale annotations, fix initializer-backed inputs
        del g.value_info[:]
        dims = {t.name: list(t.dims) for t in g.initializer}
        for inp in g.input:
            if inp.name in dims and inp.type.HasField("tensor_type"):
                shp = inp.type.tensor_type.shape
                del shp.dim[:]
                for d in dims[inp.name]:
                    shp.dim.add().dim_value = d
        _remove_new_dead(self.view.model, self.model)
        order = topo_order(self.model)
        if order != list(range(len(g.node))):  # emit a valid (sorted) graph even from an unsorted input
            nodes = [g.node[i] for i in order]
            del g.node[:]
            g.node.extend(nodes)
        return self.model


def _copy_without(src: onnx.ModelProto, hollow: set[str]) -> onnx.ModelProto:
    """A copy of `src` in which the initializers named in `hollow` keep only name, type and dims (their data is
    about to be replaced)."""
    m = onnx.ModelProto()
    if not hollow:
        m.CopyFrom(src)
        return m
    for msg, dst in ((src, m), (src.graph, m.graph)):
        for fd, v in msg.ListFields():
            if fd.name == "graph" and msg is src:
                continue
            if fd.name == "initializer" and msg is src.graph:
                for t in v:
                    if t.name in hollow:
                        h = dst.initializer.add()
                        h.name, h.data_type = t.name, t.data_type
                        h.dims.extend(t.dims)
                    else:
                        dst.initializer.add().CopyFrom(t)
            elif hasattr(v, "extend"):
                getattr(dst, fd.name).extend(v)
            elif hasattr(v, "CopyFrom"):
                getattr(dst, fd.name).CopyFrom(v)
            else:
                setattr(dst, fd.name, v)
    return m


def _live(model: onnx.ModelProto) -> tuple[set[int], set[str]]:
    g = model.graph
    producer = {o: i for i, n in enumerate(g.node) for o in n.output if o}
    need = [o.name for o in g.output]
    live_nodes: set[int] = set()
    used: set[str] = set()
    while need:
        t = need.pop()
        if t in used:
            continue
        used.add(t)
        i = producer.get(t)
        if i is not None and i not in live_nodes:
            live_nodes.add(i)
            need.extend(node_inputs(g.node[i]))
    return live_nodes, used


def _remove_new_dead(before: onnx.ModelProto, after: onnx.ModelProto) -> None:
    """Remove nodes and initializers that were live before the rewrite and are dead after it (e.g. the
    Shape→Gather→Concat chain of a Reshape target folded to a constant)."""
    live_b, used_b = _live(before)
    live_a, used_a = _live(after)
    g = after.graph
    drop_nodes = {i for i in live_b if i not in live_a}
    if drop_nodes:
        keep = [n for i, n in enumerate(g.node) if i not in drop_nodes]
        del g.node[:]
        g.node.extend(keep)
    init_names_before = {t.name for t in before.graph.initializer}
    keep_inits = [
        t for t in g.initializer if t.name in used_a or (t.name in init_names_before and t.name not in used_b)
    ]
    if len(keep_inits) != len(g.initializer):
        dropped = {t.name for t in g.initializer} - {t.name for t in keep_inits}
        del g.initializer[:]
        g.initializer.extend(keep_inits)
        inputs = [i for i in g.input if i.name not in dropped]
        del g.input[:]
        g.input.extend(inputs)
