"""Run an ONNX model over a calibration set one segment at a time, so that weights may change between segments.

The OBSPA re-fit (spa.criteria.obspa.refit) corrects each consumer layer to the inputs that the pruned network,
with every layer before it already corrected, feeds it, as SparseGPT does block by block. Running the whole
model again after every layer costs O(depth²); here every node runs once per calibration batch.

The nodes that lead to the consumers' inputs are split into *segments* by consumer depth: a node's segment is
the largest number of consumers on a path from the graph inputs to it, counting a consumer only where it reads
its consumed input (a consumer is in segment L when its input comes from segments < L). So when segment L is
about to run, every consumer in it has its input at hand, and every consumer upstream of those inputs is in an
earlier segment: it can be re-fitted now and its new weights baked into segment L's session. One session per
segment (a chain network has one per consumer, parallel branches share theirs), each built from the nodes of
its segment only; values are held for the whole calibration set only while a later segment or consumer still
reads them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import onnx
from onnx import helper

from . import parallel
from .view import node_inputs, producers_of, topo_order

log = logging.getLogger(__name__)

T = TypeVar("T")


class SegmentedRun:
    """One model's values over the calibration batches, computed segment by segment on demand.

    `consumers`: node index → the input tensor that must be computed (in earlier segments) before that node
    runs. `initializer(name)`: the initializer as it should be baked into a segment's session, asked when the
    session is built (so weights changed since the start are taken)."""

    def __init__(self, model: onnx.ModelProto, consumers: dict[int, str], batches: list[dict[str, np.ndarray]],
                 initializer: Callable[[str], onnx.TensorProto] | None = None) -> None:
        self.model = model
        g = model.graph
        self.inits = {t.name: t for t in g.initializer}
        self.initializer = initializer or self.inits.__getitem__
        producer = {o: i for i, n in enumerate(g.node) for o in n.output if o}
        needed = producers_of(g, consumers.values(), producer)  # the nodes the consumers' inputs depend on
        self.level: dict[int, int] = {}
        for i in topo_order(model):
            if i not in needed and i not in consumers:
                continue
            self.level[i] = max([0] + [self.level[producer[t]] + (consumers.get(i) == t)
                                       for t in node_inputs(g.node[i]) if t in producer and producer[t] in self.level])
        self.consumer_level = {i: self.level[i] for i in consumers}
        self.segments: list[list[int]] = [[] for _ in range(max((self.level[i] for i in needed), default=-1) + 1)]
        for i in topo_order(model):
            if i in needed:
                self.segments[self.level[i]].append(i)
        # how many readers (nodes of later segments, consumers not yet served) each value still has
        self.readers: dict[str, int] = defaultdict(int)
        for i in needed:
            for t in set(node_inputs(g.node[i])):
                self.readers[t] += 1
        for x in consumers.values():
            self.readers[x] += 1
        self.values: dict[str, list[np.ndarray]] = {
            k: [b[k] for b in batches] for k in (batches[0] if batches else {}) if self.readers.get(k)}
        self.n_batches = len(batches)
        self.done = 0  # segments run so far
        self.sessions = 0
        self.workers = parallel.workers()  # the values of every batch are held anyway: no bound on memory here

    def __len__(self) -> int:
        return len(self.segments)

    def run_until(self, name: str) -> list[np.ndarray]:
        """Run segments until `name` is computed; its values, one array per batch."""
        while name not in self.values and self.done < len(self.segments):
            self.run_next()
        return self.values[name]

    def served(self, name: str) -> None:
        """A consumer has read `name`: forget it if nothing else will."""
        self._release(name)

    def run_next(self, after: Callable[[int, dict[str, np.ndarray]], T] | None = None,
                 take: Callable[[T], None] | None = None) -> None:
        """Run the next segment over every batch. `after(batch index, this segment's outputs)`: more work on each
        batch's values in the worker that ran it, right after its run (beside the other batches' runs, not after
        all of them); `take` gets its results on the calling thread, in batch order."""
        from .verify import session

        nodes = [self.model.graph.node[i] for i in self.segments[self.done]]
        self.done += 1
        if not nodes:
            return
        made = {o for n in nodes for o in n.output if o}
        reads = list(dict.fromkeys(t for n in nodes for t in node_inputs(n)))
        ins = [t for t in reads if t not in made and t not in self.inits]
        # produced here and read later (by a node outside this segment or a consumer)
        inside = defaultdict(int)
        for n in nodes:
            for t in set(node_inputs(n)):
                inside[t] += 1
        outs = [t for t in made if self.readers.get(t, 0) > inside.get(t, 0)]
        sub = helper.make_graph(
            nodes, f"segment{self.done - 1}",
            [helper.make_tensor_value_info(t, helper.np_dtype_to_tensor_dtype(self.values[t][0].dtype), None)
             for t in ins],
            [onnx.ValueInfoProto(name=t) for t in outs],
            [self.initializer(t) for t in reads if t in self.inits],
        )
        m = helper.make_model(sub, opset_imports=self.model.opset_import, ir_version=self.model.ir_version)
        m.functions.extend(self.model.functions)
        # optimised as spa.calib's, without an arena of its own; the batches side by side, single-threaded each
        # (spa.parallel)
        sess = session(m, optimize=True, threads=1 if self.workers > 1 else 0, spinning=False, arena=False)
        self.sessions += 1
        got: dict[str, list[np.ndarray]] = {t: [] for t in outs}

        def one(b: int) -> tuple[list[np.ndarray], T | None]:
            out = [np.asarray(v) for v in sess.run(outs, {t: self.values[t][b] for t in ins})]
            return out, (after(b, dict(zip(outs, out))) if after is not None else None)

        for out, extra in parallel.ordered_map(one, range(self.n_batches), self.workers):
            for t, v in zip(outs, out):
                got[t].append(v)
            if take is not None:
                take(extra)
        self.values.update(got)
        for n in nodes:
            for t in set(node_inputs(n)):
                self._release(t)

    def _release(self, name: str) -> None:
        self.readers[name] -= 1
        if self.readers[name] <= 0:
            self.values.pop(name, None)
