"""The stages wired together: analyze(), prune(), check().

    load → analyse → score → plan → rewrite → verify → (save)

Each returns plain data so the command line, tests and benchmarks share one path.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from . import criteria, io_safety, modelfile, parallel
from .analysis import DEFAULT_GROUP_CONV, GROUP_CONV_MODES, Analysis
from .analysis import analyze as _analyze
from .criteria import score
from .errors import BadArgument, BadModel, NothingPruned, SpaError, VerificationFailed
from .plan import Plan, check_ratio, keep_mask, make_plan
from .report import ModelStats, model_stats
from .rewrite import Rewriter
from .rules import RulesLike
from .rules.quant import dequantized
from .stream import Staging, stream_threshold
from .verify import check_model, check_model_file, oracle_error, oracle_errors
from .view import ModelView

ModelLike = str | os.PathLike[str] | onnx.ModelProto


def _load(model: ModelLike, stream_bytes: int | None = None) -> tuple[onnx.ModelProto, str | None]:
    if isinstance(model, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        modelfile.check_opset(m)
        modelfile.check_structure(m)
        modelfile.check_tensor_data(m)
        return m, None
    return modelfile.load(model, stream_bytes=stream_bytes), str(model)


def prepare(model: ModelLike, stream_bytes: int | None = None) -> tuple[ModelView, str | None]:
    """The model's view. With `stream_bytes`, a file whose external data exceeds it is not loaded: its large
    weights are read from disk when needed (see `spa.stream`)."""
    m, path = _load(model, stream_bytes)
    modelfile.lift_constants(m)
    return ModelView.build(m, base_dir=str(Path(path).resolve().parent) if path else None), path


def is_streamed(view: ModelView) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in view.model.graph.initializer)


@dataclass
class AnalyzeReport:
    analysis: Analysis
    stats: ModelStats
    seconds: float

    def as_dict(self) -> dict:
        groups = []
        for g in self.analysis.groups:
            groups.append(
                {
                    "id": g.id,
                    "key": g.key,
                    "channels": g.size,
                    "prunable": g.prunable,
                    "reason": g.why,
                    "reasons": g.frozen,
                    "lossy": g.lossy,
                    "members": [
                        {"tensor": m.tensor, "axis": m.axis, "param": m.is_param, "role": m.role}
                        for m in g.members
                    ],
                }
            )
        return {
            "stats": self.stats.as_dict(),
            "groups": groups,
            "prunable_groups": len(self.analysis.prunable),
            "frozen_groups": len(self.analysis.groups) - len(self.analysis.prunable),
            "ops_without_rule": self.analysis.unknown_ops,
            "seconds": round(self.seconds, 4),
        }


def check_group_conv(mode: str) -> None:
    if mode not in GROUP_CONV_MODES:
        raise BadArgument(f"group-conv must be one of {', '.join(GROUP_CONV_MODES)}, got {mode!r}")


def analyze(model: ModelLike, *, hidden: bool = True, group_conv: str = DEFAULT_GROUP_CONV,
            input_shape: InputShape = None, rules: RulesLike = None) -> AnalyzeReport:
    """Coupled channel groups and the model's statistics (MACs at `input_shape`, or for symbolic image/sequence
    sizes at the first size the model runs at). `rules`: channel rules added to spa's (one for an op spa covers
    replaces spa's) or a whole `spa.rules.RuleSet`, see spa.rules.rule_set."""
    t0 = time.perf_counter()
    check_group_conv(group_conv)
    view, path = prepare(model, stream_threshold())  # the analysis itself never needs the weights
    shapes = parse_input_shape(view, input_shape)
    a = _analyze_checked(view, hidden, group_conv, rules)
    size = Path(path).stat().st_size if path else None
    return AnalyzeReport(a, model_stats(view, size, at=mac_size(view, shapes)), time.perf_counter() - t0)


InputShape = dict[str, list[int]] | list[str] | None


def parse_input_shape(view: ModelView, input_shape: InputShape) -> dict[str, list[int]] | None:
    """`input_shape` as {input: dims}: `--input-shape` strings ("x=1,3,48,320") are parsed and checked against
    the model's inputs (BadArgument)."""
    if not input_shape:
        return None
    from .verify import parse_input_shapes

    if isinstance(input_shape, dict):
        return parse_input_shapes([f"{k}={','.join(map(str, v))}" for k, v in input_shape.items()], view.model)
    return parse_input_shapes(list(input_shape), view.model)


def mac_size(view: ModelView, input_shape: dict[str, list[int]] | None = None,
             size: int | None = None) -> dict[str, list[int]] | None:
    """The graph input dims MACs are counted at: `input_shape` (`--input-shape`) where given; symbolic image or
    sequence dims at `size` (the size verification ran at) or else at the first size the model runs at
    (spa.verify.OTHER_SIZES); None for a model whose sizes are all static (its declared dims are the size)."""
    from . import verify

    free = verify.has_free_dims(view.model)
    if not free and not input_shape:
        return None
    if free and size is None and not is_streamed(view):
        size = verify.runnable_size(view.model, shapes=input_shape)
    return verify.input_shapes(view.model, size, shapes=input_shape)


def frozen_reasons(a: Analysis, top: int = 5) -> list[tuple[str, int]]:
    """The most common reasons groups are frozen, names left out ("Reshape: axis 1 of a tensor is not
    channel-mapped" × 12), most frequent first."""
    counts: dict[str, int] = {}
    for g in a.groups:
        if not g.prunable:
            why = re.sub(r"'[^']*'", "'…'", g.why)
            why = re.sub(r"^(\S+) '…': ", r"\1: ", why)
            counts[why] = counts.get(why, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:top]


def _apply_ignore(a: Analysis, patterns: list[str]) -> None:
    """Freeze groups that touch a node or initializer matching any pattern (exact name, or a regex found in it)."""
    if not patterns:
        return
    regs = []
    for p in patterns:
        try:
            regs.append(re.compile(p))
        except re.error as e:
            raise BadArgument(f"--ignore {p!r}: bad regular expression ({e})") from None
    nodes = a.view.model.graph.node

    def hit(name: str) -> bool:
        return any(name == p or r.search(name) for p, r in zip(patterns, regs))

    for g in a.groups:
        if g.frozen:
            continue
        for m in g.members:
            names = [m.tensor]
            for i in a.view.consumers.get(m.tensor, []) + (
                [a.view.producer[m.tensor]] if m.tensor in a.view.producer else []
            ):
                names.append(nodes[i].name)
            if any(hit(n) for n in names if n):
                g.frozen.append(f"ignored by --ignore ({m.tensor})")
                break


@dataclass
class PruneReport:
    before: ModelStats
    after: ModelStats
    plan: Plan
    groups_total: int
    groups_prunable: int
    groups_pruned: int
    channels_removed: int
    seconds: dict[str, float] = field(default_factory=dict)
    oracle: float | None = None
    lossy_pruned: int = 0  # pruned groups whose normalisation statistics change (LayerNorm hidden widths)
    notes: list[str] = field(default_factory=list)  # what the user should know: nothing pruned, fixed outputs
    frozen_reasons: list[tuple[str, int]] = field(default_factory=list)  # the top reasons, with counts

    @property
    def nothing_pruned(self) -> bool:
        return self.channels_removed == 0
    calibration: dict | None = None  # data criteria: source, samples, batch, kinds of H (`_calibration_summary`)

    def as_dict(self) -> dict:
        return {
            "nothing_pruned": self.nothing_pruned,
            "notes": self.notes,
            "frozen_reasons": [{"reason": r, "groups": n} for r, n in self.frozen_reasons],
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "groups": {
                "total": self.groups_total,
                "prunable": self.groups_prunable,
                "frozen": self.groups_total - self.groups_prunable,
                "pruned": self.groups_pruned,
                "lossy_pruned": self.lossy_pruned,
            },
            "channels_removed": self.channels_removed,
            "criterion": self.plan.criterion,
            "ratio": self.plan.ratio,
            "mode": self.plan.mode,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "oracle_rel_error": self.oracle,
        } | ({"calibration": self.calibration} if self.calibration is not None else {})


def compute_plan(
    a: Analysis,
    *,
    ratio: float,
    criterion: str = "l1",
    global_: bool = False,
    max_group_ratio: float = 0.9,
    round_to: int = 1,
    seed: int = 0,
    data: dict | None = None,
) -> Plan:
    check_ratio(ratio)
    scores = compute_scores(a, criterion, seed, data)
    return make_plan(
        a, scores, ratio, global_=global_, max_group_ratio=max_group_ratio, round_to=round_to, criterion=criterion
    )


def compute_scores(a: Analysis, criterion: str = "l1", seed: int = 0, data: dict | None = None) -> dict[int, np.ndarray]:
    """Per prunable group: the criterion's (group-normalised) channel scores. Criteria that need data get
    `data` (layer-input statistics from spa.calib.collect, or gradients; made from the default data-free source
    here when not given)."""
    if criteria.get(criterion).needs_data and data is None:
        data = _criterion_data(a, criterion, None, None, seed)
    rng = np.random.default_rng(seed)
    view = a.view

    def weights(name: str) -> np.ndarray:
        """An initializer's values; quantized weights (integer codes) dequantized, so that scores compare real
        magnitudes, not codes or scales."""
        arr = view.array(name)
        assert arr is not None
        if arr.dtype.kind in "iu":
            real = dequantized(view, name)
            if real is not None:
                return real
        return arr

    return {g.id: score(criterion, g, weights, rng, data) for g in a.prunable}


TARGETS = ("macs", "params", "latency")


def plan_for_target(
    a: Analysis,
    scores: dict[int, np.ndarray],
    metric: str,
    fraction: float,
    *,
    max_group_ratio: float = 0.9,
    round_to: int = 8,
    criterion: str = "",
    steps: int = 14,
    threads: int = 1,
) -> tuple[Plan, float]:
    """The smallest global ratio whose pruned model keeps at most `fraction` of the original MACs, params or
    onnxruntime CPU latency, found by bisection (global ranking removes channels in a fixed order, so MACs
    and params only fall as the ratio grows; latency roughly does, and is measured, interleaved with the
    original, at every step). Returns the plan and the fraction reached."""
    if metric not in TARGETS:
        raise BadArgument(f"unknown target {metric!r}")
    if not (0.0 < fraction <= 1.0):
        raise BadArgument(f"--target-{metric} must be in (0, 1], got {fraction}")
    base_st = model_stats(a.view)
    tmp = None
    if metric == "latency":
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="spa-latency-")
        orig_path = Path(tmp.name) / "original.onnx"
        modelfile.save_atomic(a.view.model, orig_path)
        steps = min(steps, 10)

    def measure(plan: Plan) -> float:
        pruned = Rewriter(a, keep_mask(a, plan)).apply()
        if metric == "latency":
            from .tools.bench import compare

            cand = Path(tmp.name) / "candidate.onnx"
            modelfile.save_atomic(pruned, cand)
            base, new = compare([orig_path, cand], threads=threads, warmup=3, runs=15, memory=False)
            return new.median_ms / base.median_ms
        st = model_stats(ModelView.build(pruned))
        return st.macs / max(1, base_st.macs) if metric == "macs" else st.params / max(1, base_st.params)

    def plan_at(r: float) -> Plan:
        return make_plan(a, scores, r, global_=True, max_group_ratio=max_group_ratio, round_to=round_to,
                         criterion=criterion)

    try:
        lo, hi = 0.0, 0.999
        best = plan_at(hi)
        best_v = measure(best)
        if best_v > fraction:
            raise BadArgument(
                f"--target-{metric} {fraction} is unreachable: the most pruning allowed here keeps {best_v:.1%} "
                f"of the {metric} (max-group-ratio {max_group_ratio}, round-to {round_to})"
            )
        for _ in range(steps):
            mid = (lo + hi) / 2
            p = plan_at(mid)
            v = measure(p)
            if v <= fraction:
                hi, best, best_v = mid, p, v
            else:
                lo = mid
    finally:
        if tmp is not None:
            tmp.cleanup()
    best.ratio = round(hi, 4)
    return best, best_v


ALLOCATIONS = ("local", "energy")


@dataclass
class PruneOptions:
    """Every setting of a prune, shared by the `spa prune` command, `--out-dir` batches and the Python API
    (`spa.prune(model, ratio=0.5)` is `spa.prune(model, PruneOptions(ratio=0.5))`).

    What to remove: `ratio` per prunable group (or `global_` ranking, at most `max_group_ratio` of a group;
    `allocation` "energy": obspa's per-group ratios from its own cost, spa.sensitivity.energy_plan, "local", or
    None: energy for obspa with a plain ratio and real calibration data, with the token sources, or data-free on
    float inputs up to spa.sensitivity.DATA_FREE_ENERGY_MAX_RATIO, else local;
    `round_to` keeps widths multiples of N); one of `target_macs` / `target_params` / `target_latency` instead
    (fraction to keep; global ranking, ratio found by bisection); `plan`, a saved plan applied as is; `ignore`
    freezes groups touching matching names; `hidden=False` keeps LayerNorm/RMSNorm widths; `group_conv` picks
    how grouped convs are pruned. How to choose: `criterion` (spa.criteria.CRITERIA), `seed`. Criteria that need
    data (obspa, act, wanda, taylor, snip) use `calib` (an .npz path or arrays keyed by graph input name) or,
    without it, the data-free `calib_source` (spa.calib.SOURCES) with `calib_samples` synthetic samples (default:
    spa.calib.data_free_samples); `calib_source` None: spa.calib.default_source's (for obspa on token-id inputs
    spa.calib.TOKEN_SOURCE, with `calib` spa.calib.TOKEN_CALIB_SOURCE); obspa then compensates the consumers'
    remaining weights (`compensate`) and, with real calibration data (`refit` None = only then; not on byte models, whose statistics only choose
    channels: spa.calib.BYTE_RANK_ONLY_SOURCES), re-fits every consumer in graph order to the original
    outputs through the pruned network; for that, image inputs get rescaled copies of each sample
    (`calib_augment`), and the ratio is spread by the OBS cost unless `allocation` says otherwise.
    How to check: `verify` (checker + onnxruntime), `oracle` (True, "float32" or "float64": also measure the
    zero-group oracle error), `self_check` (None: on for models with at most SELF_CHECK_BYTES of weights: the
    oracle guards the write, SELF_CHECK_TOL), `input_shape` (graph input -> dims, or `--input-shape` strings:
    verify and count MACs at that size), `strict` (raise NothingPruned, exit 6, instead of writing an unpruned
    copy). `stream_bytes`: external data above it is streamed from disk (default spa.stream.stream_threshold())."""

    ratio: float = 0.5
    criterion: str = "l1"
    global_: bool = False
    max_group_ratio: float = 0.9
    round_to: int = 1
    # "local" | "energy" (per-group ratios by the OBS cost at the local plan's MACs; obspa only); None: `_allocation`
    allocation: str | None = None
    ignore: list[str] = field(default_factory=list)
    hidden: bool = True
    group_conv: str = DEFAULT_GROUP_CONV
    plan: Plan | None = None
    seed: int = 0
    verify: bool = True
    oracle: bool | str = False
    target_macs: float | None = None
    target_params: float | None = None
    target_latency: float | None = None
    calib: str | os.PathLike[str] | dict[str, np.ndarray] | None = None
    calib_source: str | None = None
    calib_samples: int | None = None
    calib_preprocess: dict[str, Any] | None = None  # how a folder of images becomes `calib` (spa.images)
    compensate: bool = True
    refit: bool | None = None
    damp: float | None = None  # obspa's relative damping of H (None: per source, spa.calib.SOURCE_DAMP, else 0.01)
    trust: str | None = None  # obspa's check of its update: "off", "gate", "shrink" (None: spa.calib.DATA_FREE_TRUST,
    # off today, for data-free sources; off with --calib; see spa.calib.Consumer.trust)
    calib_augment: bool = True  # the re-fit's calibration images get rescaled copies each (spa.augment)
    stream_bytes: int | None = None
    self_check: bool | None = None
    input_shape: InputShape = None
    strict: bool = False
    rules: RulesLike = None  # channel rules added to spa's, or a whole spa.rules.RuleSet (see spa.rules.rule_set)

    def check(self) -> None:
        """Refuse contradictory or out-of-range settings (BadArgument) before any work."""
        check_ratio(self.ratio)
        check_ratio(self.max_group_ratio, "max-group-ratio")
        check_group_conv(self.group_conv)
        criteria.get(self.criterion)
        if self.round_to < 1:
            raise BadArgument(f"--round-to must be ≥ 1, got {self.round_to}")
        if len(self.targets) > 1:
            raise BadArgument("give one of --target-macs / --target-params / --target-latency")
        if self.trust not in (None, "off", "gate", "shrink"):
            raise BadArgument(f"unknown trust check {self.trust!r} (choose from off, gate, shrink)")
        if self.damp is not None and not 0 < self.damp <= 100:
            raise BadArgument(f"--damp must be in (0, 100], got {self.damp}")
        if self.allocation is not None and self.allocation not in ALLOCATIONS:
            raise BadArgument(f"unknown allocation {self.allocation!r} (choose from {', '.join(ALLOCATIONS)})")
        if self.allocation == "energy" and (self.criterion != "obspa" or self.global_ or self.targets or self.plan):
            raise BadArgument("--allocate energy needs -c obspa and a --ratio (not --global, a target or a plan)")

    @property
    def targets(self) -> dict[str, float]:
        return {k: v for k, v in (("macs", self.target_macs), ("params", self.target_params),
                                  ("latency", self.target_latency)) if v is not None}

    @property
    def needs_weights_in_memory(self) -> bool:
        """The oracle, targets and data criteria read every weight: such prunes never stream."""
        return bool(self.oracle) or criteria.needs_data(self.criterion) or bool(self.targets)


@dataclass
class _Run:
    """What one prune carries between its stages: its progress callback and the time each stage took."""

    say: Callable[[str], None]
    seconds: dict[str, float] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)

    @contextlib.contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        """Announce the block and add its time to `seconds[name]`."""
        self.say(message)
        t1 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t1


@dataclass
class _Data:
    """What data criteria read: per-consumer statistics and the inputs they came from (the re-fit reads them
    again), and what the report says of them (source, samples, batch, kinds of H)."""

    layers: dict  # what the criterion reads: layer-input statistics (spa.calib) or gradients
    inputs: dict[str, np.ndarray]
    summary: dict
    source: str  # the source asked for (`calib_source`, else spa.calib.default_source's)
    original_rows: Any = None  # the re-fit's rows of the original's consumer inputs (obspa.OriginalRows)
    refit_inputs: dict[str, np.ndarray] | None = None  # what the re-fit fits to where not all of `inputs`
    compensated: tuple[np.ndarray, dict] | None = None  # (keep mask, OBS update) a probe computed already


def prune(model: ModelLike, options: PruneOptions | None = None, *, output: str | os.PathLike[str] | None = None,
          progress: Callable[[str], None] | None = None, **settings) -> tuple[onnx.ModelProto, PruneReport]:
    """Prune `model` (path or ModelProto) with `options` (any field may also be given as a keyword). Returns the
    pruned model (verified unless verify=False) and a report. With `output`, the verified model is also written
    there, atomically; a model file whose external data exceeds `stream_bytes` is then streamed (weights read
    from disk one at a time, the sliced ones written straight to the output's data file, verified from disk).

    The stages: prepare (load, analyse), calibrate (data criteria), choose the plan, compensate (obspa), emit
    (rewrite, verify, self-check, write), report."""
    o = replace(options or PruneOptions(), **settings)
    o.check()
    if output is not None:  # before any work: never write over what is read, nor into a device
        io_safety.check_io(models=[None if isinstance(model, onnx.ModelProto) else model],
                           reads=[("--calib", o.calib if isinstance(o.calib, (str, os.PathLike)) else None)],
                           writes=[("output", output)])
    run = _Run(progress or (lambda _msg: None))
    view, path, a, shapes = _prepare_stage(model, o, output, run)
    with parallel.blas_single_threaded() if criteria.get(o.criterion).needs_data else contextlib.nullcontext():
        data = _calibrate(a, o, run)
        plan, keep = _choose_plan(a, o, data, run)
        notes = _nothing_pruned(a, plan, o.strict)
        overrides = _compensate(a, keep, o, data, run)
    # the statistics (H and its inverses: hundreds of MB on a VGG-16) are not needed past this point: let them go
    # before the rewrite and the verification hold their own copies of the weights
    summary, data = data.summary if data else None, None
    pruned, emitted = _emit(view, path, a, keep, overrides, o, shapes, output, run, notes)
    rep = _report(view, path, a, plan, keep, pruned, emitted, o, shapes, output, run, notes)
    rep.calibration = summary
    return pruned, rep


def _prepare_stage(model: ModelLike, o: PruneOptions, output, run: _Run):
    with run.stage("load", "loading and inferring shapes"):
        stream = None if output is None or o.needs_weights_in_memory else stream_threshold(o.stream_bytes)
        view, path = prepare(model, stream)
        shapes = parse_input_shape(view, o.input_shape)
    with run.stage("analyze", f"analysing {len(view.model.graph.node)} nodes"):
        a = _analyze_checked(view, o.hidden, o.group_conv, o.rules)
        _apply_ignore(a, o.ignore)
    return view, path, a, shapes


def _calibrate(a: Analysis, o: PruneOptions, run: _Run) -> _Data | None:
    """Layer input statistics (or gradients) for a data criterion, from `calib` or the data-free source."""
    if not criteria.get(o.criterion).needs_data:
        return None
    from . import calib as calib_
    from .augment import REFIT_COPIES, SCALES, with_rescaled_copies

    source = o.calib_source or calib_.default_source(a.view, o.criterion, o.calib is not None)
    with run.stage("calibrate", f"collecting layer input statistics "
                                f"({'calibration data' if o.calib is not None else source})"):
        feeds = (calib_.load_calib(o.calib, a.view.model, **(o.calib_preprocess or {}))
                 if isinstance(o.calib, (str, os.PathLike)) else o.calib)
        if o.calib_source is None and feeds is not None:  # the default with calibration inputs depends on them
            ratio = None if o.targets or o.plan else o.ratio  # (and on the ratio)
            source = calib_.default_source(a.view, o.criterion, True, feeds, ratio)
        # the inputs the statistics (and the re-fit) read, made once
        inputs = calib_.source_feeds(a, source, feeds, seed=o.seed, samples=o.calib_samples)
        original_rows = augmented = None
        # how many real inputs come first, before "calib-prior"'s prior images (None: all are real)
        real = calib_.real_count(a.view, feeds) if source == "calib-prior" and feeds else None
        if _refits(o, source):
            from .criteria.obspa import OriginalRows

            original_rows = OriginalRows(o.seed)
            # rescaled copies of the real images only: the prior draws its strokes at every size already
            augmented = with_rescaled_copies({k: v[:real] for k, v in inputs.items()}) \
                if o.calib_augment and feeds is not None else None
            if augmented is not None and real is not None:
                inputs = {k: np.concatenate([v, inputs[k][real:]]) for k, v in augmented.items()}
                real = len(next(iter(augmented.values())))
            elif augmented is not None:
                inputs = augmented
        layers = _criterion_data(a, o.criterion, feeds, source, o.seed, inputs, original_rows,
                                 damp=o.damp, trust=o.trust,
                                 dense=calib_.REFIT_DENSE_COLS if _refits(o, source) else calib_.DENSE_COLS)
        summary = _calibration_summary(a, o.criterion, layers, inputs,
                                       "calib" if feeds is not None and source not in calib_.WITH_CALIB else source)
        if augmented is not None:
            summary["augment"] = f"rescaled copies of each image (x{', x'.join(map(str, SCALES))})"
        if real is not None:  # "calib-prior": how many of the samples are the prior's images (none if it drew none)
            summary["prior_images"] = len(next(iter(inputs.values()))) - real
        refit_inputs = None
        if real is not None and calib_.CALIB_PRIOR_REFIT == "real" and len(next(iter(inputs.values()))) > real:
            refit_inputs = {k: v[:real] for k, v in inputs.items()}
        elif augmented is not None and real is None and REFIT_COPIES is not None and REFIT_COPIES < len(SCALES):
            n = len(next(iter(feeds.values()))) * (1 + REFIT_COPIES)  # the real images come first, then each copy
            refit_inputs = {k: v[:n] for k, v in inputs.items()}
        return _Data(layers, inputs, summary, source, original_rows, refit_inputs)


def _choose_plan(a: Analysis, o: PruneOptions, data: _Data | None, run: _Run) -> tuple[Plan, np.ndarray]:
    layers = data.layers if data else None
    with run.stage("plan", f"scoring {len(a.prunable)} prunable groups ({o.criterion})"):
        plan = o.plan
        if plan is None and o.targets:
            (metric, frac), = o.targets.items()
            run.say(f"searching the global ratio for {frac:g} of the {metric}")
            plan, reached = plan_for_target(
                a, compute_scores(a, o.criterion, o.seed, layers), metric, float(frac),
                max_group_ratio=o.max_group_ratio, round_to=o.round_to, criterion=o.criterion)
            run.seconds["target_reached"] = reached
        if plan is None and _allocation(o, a.view, data) == "energy":
            from .sensitivity import energy_plans

            caps = _energy_caps(o, data.source if data else None, a.view)
            limits = [min(o.max_group_ratio, c * o.ratio) for c in caps]
            if len(set(limits)) == 1:  # --max-group-ratio binds both: one plan, nothing to probe
                caps, limits = caps[:1], limits[:1]
            plans = energy_plans(a, layers, o.ratio, limits, seed=o.seed)
            plan = plans[0] if len(plans) == 1 else _probed(a, o, data, dict(zip(caps, plans)), run)
        if plan is None:
            plan = compute_plan(a, ratio=o.ratio, criterion=o.criterion, global_=o.global_,
                                max_group_ratio=o.max_group_ratio, round_to=o.round_to, seed=o.seed, data=layers)
        return plan, keep_mask(a, plan)


def _nothing_pruned(a: Analysis, plan: Plan, strict: bool) -> list[str]:
    """The notes the report starts with: a plan that removes nothing is said (with the top frozen reasons), or
    refused with `strict` before anything is written."""
    if plan.removed:
        return []
    why = (f"no group is prunable ({len(a.groups)} frozen)" if not a.prunable else
           f"the plan removes no channel from the {len(a.prunable)} prunable group(s) (ratio too small?)")
    top = "; ".join(f"{r} ×{n}" for r, n in frozen_reasons(a)[:3])
    msg = f"nothing was pruned: {why}" + (f"; top frozen reasons: {top}" if top and not a.prunable else "")
    if strict:
        raise NothingPruned(msg + "; nothing was written (--strict)")
    return [msg]


def _allocation(o: PruneOptions, view: ModelView, data: _Data | None = None) -> str:
    """How the ratio is spread over the groups: `allocation` when given; by default, with a plain --ratio (no
    --global, target, plan or --round-to, which the energy plan does not honour), "energy" for calibrated obspa
    with its re-fit (PP-OCRv4 rec at 0.5, 32 lines with copies at 0.9 and 1.1, choice set: 93.5 % of the
    original's accuracy on average over seeds 0-2, worst 91.9 %, against 91.4 % / 89.0 % local;
    benchmarks/obspa_calib_fast_choice.txt), for obspa on the token sources (spa.calib.TOKEN_ENERGY_SOURCES, the
    defaults of token-id models), and for data-free obspa with its update on a model with floating-point inputs
    only, up to spa.sensitivity.DATA_FREE_ENERGY_MAX_RATIO (where it never lost on the selection sets; its cap
    probed, `_energy_caps`); "local"
    otherwise (above that ratio; on other models with id inputs, where it did lose; and where the statistics only
    choose channels, `_choice_only`: no update follows)."""
    if o.allocation is not None:
        return o.allocation
    plain = not (o.global_ or o.targets or o.plan) and o.round_to == 1
    if not plain or _choice_only(data):
        return "local"
    from . import calib as calib_
    from .sensitivity import DATA_FREE_ENERGY_MAX_RATIO

    source = data.source if data else None
    if _refits(o, source) or (o.criterion == "obspa" and source in calib_.TOKEN_ENERGY_SOURCES):
        return "energy"
    data_free = o.calib is None and o.criterion == "obspa" and o.compensate and bool(data and data.layers)
    return ("energy" if data_free and o.ratio <= DATA_FREE_ENERGY_MAX_RATIO + 1e-9 and calib_.float_inputs_only(view)
            else "local")


def _energy_caps(o: PruneOptions, source: str | None, view: ModelView) -> tuple[float, ...]:
    """How far beyond the ratio the energy plan may prune one group (x the ratio): REFIT_ENERGY_CAP with the
    re-fit; ENERGY_CAP where `--allocate energy` asks for it without the re-fit (the option chosen on the OCR
    recogniser) and on the token sources (chosen with that cap on all-MiniLM-L6-v2's selection sentences); else
    (data-free obspa's default on float inputs) both, the better one found by probing (spa.probe) on models with
    at most spa.probe.MAX_BYTES of weights, else REFIT_ENERGY_CAP, the cap that default was first chosen with."""
    from .calib import TOKEN_ENERGY_SOURCES
    from .probe import MAX_BYTES
    from .sensitivity import ENERGY_CAP, REFIT_ENERGY_CAP

    if _refits(o, source):
        return (REFIT_ENERGY_CAP,)
    if o.allocation == "energy" or source in TOKEN_ENERGY_SOURCES:
        return (ENERGY_CAP,)
    return (REFIT_ENERGY_CAP, ENERGY_CAP) if _weights_at_most(view, MAX_BYTES) else (REFIT_ENERGY_CAP,)


def _probed(a: Analysis, o: PruneOptions, data: _Data, plans: dict[float, Plan], run: _Run) -> Plan:
    """The candidate plan whose compensated model moves the outputs least on fresh prior samples (spa.probe); its
    OBS update is kept for the compensate stage, and the report's calibration summary says what was chosen."""
    from . import calib as calib_
    from . import probe
    from .criteria.obspa import compensate as obs_update

    run.say(f"probing {len(plans)} allocations on {probe.PROBE_SAMPLES} fresh {data.source} samples")
    probes = calib_.source_feeds(a, data.source, None, samples=probe.PROBE_SAMPLES, seed=o.seed + probe.PROBE_SEED)
    best, tried = probe.choose(a, plans, lambda keep: obs_update(a, keep, data.layers), probes,
                               calib_.batch_size(a.view))
    data.compensated = (best.keep, best.overrides)
    data.summary["allocation"] = {"cap": best.cap, "probe_samples": len(next(iter(probes.values()))),
                                  "probe_errors": {f"{c.cap:g}": round(c.error, 6) for c in tried}}
    return best.plan


def _refits(o: PruneOptions, source: str | None) -> bool:
    """Whether the prune ends with obspa's sequential re-fit: by default with real calibration data only (PP-OCRv4
    rec at 0.5: 0.065 -> 0.907 character accuracy; with synthetic inputs it fits their distribution and hurts).
    `source`: the statistics' source (_Data.source)."""
    from . import calib as calib_

    # nor with the token sources (calib_.TOKEN_CALIB_SOURCES): their new sequences are synthetic too (all-MiniLM-L6-v2
    # at 0.3, selection sentences: token-bag 0.938 without the re-fit, 0.928 with it)
    by_default = o.calib is not None and source not in calib_.TOKEN_CALIB_SOURCES
    return criteria.get(o.criterion).compensates and o.compensate and (o.refit if o.refit is not None else by_default)


def _choice_only(data: _Data | None) -> bool:
    """Whether the statistics only choose channels (spa.calib.BYTE_RANK_ONLY_SOURCES: byte models, data-free or
    calibrated): then no update and no re-fit, and by default the local plan (the re-fit is what the energy
    allocation spreads the ratio for; on Magika's selection files it lost 0.920 -> 0.514 at 0.5)."""
    return bool(data and data.layers) and any(getattr(c, "rank_only", False) for c in data.layers.values())


def _compensate(a: Analysis, keep: np.ndarray, o: PruneOptions, data: _Data | None,
                run: _Run) -> dict[str, np.ndarray] | None:
    """obspa's weight updates of the consumers (and, with real data, the sequential re-fit)."""
    if not criteria.get(o.criterion).compensates or not o.compensate or not data or not data.layers:
        return None
    from .criteria.obspa import compensate as obs_update

    with run.stage("compensate", "compensating the remaining weights (OBS update)"):
        done = data.compensated
        overrides = done[1] if done is not None and np.array_equal(done[0], keep) else obs_update(a, keep, data.layers)
        if _refits(o, data.source) and not _choice_only(data):
            from . import calib as calib_
            from .criteria.obspa import refit as obs_refit

            run.say("re-fitting every consumer to the original outputs through the pruned network")
            batch = calib_.batch_size(a.view, data.layers)
            feeds, original = data.inputs, data.original_rows
            if data.refit_inputs is not None:  # the first samples only: the original's rows of their whole batches
                feeds = data.refit_inputs
                n = len(next(iter(feeds.values())))
                original = original.first_batches(n // batch) if original is not None and n % batch == 0 else None
            overrides = obs_refit(a, keep, data.layers, overrides, feeds, seed=o.seed, batch=batch, original=original)
        return overrides


@dataclass
class _Emitted:
    """What emitting the pruned model found: the verification result, the oracle error, bytes written, and
    whether it went through a staging area (streamed weights)."""

    verified: object | None
    oracle: float | None
    written: int | None
    staged: bool


def _emit(view: ModelView, path: str | None, a: Analysis, keep: np.ndarray, overrides, o: PruneOptions,
          shapes, output, run: _Run, notes: list[str]) -> tuple[onnx.ModelProto, _Emitted]:
    """Rewrite, verify (checker + onnxruntime), self-check (zero-group oracle), write; any failure removes the
    staging area and writes nothing."""
    staging = pending = None
    err = verified = written = None
    try:
        with run.stage("rewrite", "rewriting"):
            staging = _staging_for(view, path, output)
            pruned = Rewriter(a, keep, overrides=overrides, sink=staging.put if staging else None).apply()
            if staging is not None:
                staging.finish(pruned, view.base_dir)
            # serialise once: onnx.checker, onnxruntime and the write share the bytes (None: over 2 GB in memory)
            blob = _serialise(pruned) if staging is None and (o.verify or output is not None) else None
            # written in the background while it is verified; it appears at `output` only after every check
            pending = modelfile.begin_save(blob, output, input_path=path) if output and blob else None
        if o.verify:
            with run.stage("verify", "verifying (onnx.checker, onnxruntime)"):
                verified, blob2 = _verify(pruned, view.model, path, staging, blob, shapes)
                if verified.wrong_declarations:
                    blob2 = _drop_wrong_declarations(pruned, verified, staging, notes)
                if blob2 is not blob and pending is not None:  # the model changed: write the new bytes
                    pending.abort()
                    pending = modelfile.begin_save(blob2, output, input_path=path) if blob2 else None
                blob = blob2
        guard = o.verify and staging is None and _self_check_on(view, o.self_check)
        if o.verify and staging is None and (o.oracle or guard):
            with run.stage("oracle", "zero-group oracle"):
                err, check = _oracle_or_none(a, keep, pruned, o.oracle, overrides)
            if guard and check is not None and not check <= SELF_CHECK_TOL:
                raise VerificationFailed(
                    f"self-check failed: the pruned outputs differ from the original's with the removed channels "
                    f"zeroed (error {check:.1e} > {SELF_CHECK_TOL:g}); nothing was written. "
                    + _blame(view.model) + " (--no-self-check skips this check)")
        if output is not None:
            with run.stage("write", "writing"):
                if staging is not None:
                    written = staging.commit()
                elif pending is not None:
                    written, pending = pending.commit(), None
                else:
                    written = modelfile.save_atomic(pruned, output, input_path=path, blob=blob)
    except BaseException:
        if staging is not None:
            staging.abort()
        if pending is not None:
            pending.abort()
        raise
    if o.oracle and err is None and not (o.verify and staging is None):
        with run.stage("oracle", "zero-group oracle"):
            err, _ = _oracle_or_none(a, keep, pruned, o.oracle, overrides)
    return pruned, _Emitted(verified, err if o.oracle else None, written, staging is not None)


def _report(view: ModelView, path: str | None, a: Analysis, plan: Plan, keep: np.ndarray,
            pruned: onnx.ModelProto, e: _Emitted, o: PruneOptions, shapes, output, run: _Run,
            notes: list[str]) -> PruneReport:
    at = mac_size(view, shapes, e.verified.size if e.verified is not None else None)
    before = model_stats(view, Path(path).stat().st_size if path else None, at=at)
    pruned_view = ModelView.build(pruned, base_dir=str(Path(output).resolve().parent) if e.staged else None)
    after = model_stats(pruned_view, e.written, at=at)
    run.seconds["total"] = time.perf_counter() - run.t0
    return PruneReport(before, after, plan, len(a.groups), len(a.prunable), len(plan.groups), plan.removed,
                       run.seconds, e.oracle, _lossy_pruned(a, keep), notes, frozen_reasons(a))


def _verify(pruned: onnx.ModelProto, original: onnx.ModelProto, path: str | None, staging: Staging | None,
            blob: bytes | None, shapes) -> tuple[object, bytes | None]:
    """check_model (or check_model_file for a staged model). A pruned graph whose folded shapes now let ONNX's
    checker see that an output declaration is wrong (ddddocr's CRNN: declared [1, seqlen], returns
    [T, 1, 8210]) fails the checker although nothing changed: if the original itself does not return what it
    declares, those declarations are corrected first (real rank, symbolic dims) and the check runs again."""
    from .verify import redeclare_outputs, wrong_declarations

    def run(b: bytes | None):
        if staging is not None:
            return check_model_file(str(staging.model_path), pruned, original, path, shapes=shapes)
        return check_model(pruned, original, blob=b, shapes=shapes)

    try:
        return run(blob), blob
    except VerificationFailed as e:
        wrong = wrong_declarations(original, shapes) if "onnx.checker" in str(e) else {}
        if not wrong:
            raise
    redeclare_outputs(pruned, wrong)
    blob = _reserialise(pruned, staging)
    verified = run(blob)
    verified.wrong_declarations.update(wrong)
    return verified, blob


def _drop_wrong_declarations(pruned: onnx.ModelProto, verified, staging: Staging | None,
                             notes: list[str]) -> bytes | None:
    """The original declares output shapes it does not return (verification compared the pruned outputs with
    what it really returns): the pruned model declares them with the real rank and symbolic dims, the report
    says so, and the model is serialised again."""
    from .verify import redeclare_outputs

    redeclare_outputs(pruned, verified.wrong_declarations)
    for name, (declared, real) in verified.wrong_declarations.items():
        notes.append(f"output '{name}' is declared {declared} but the model returns {real}: the pruned model "
                     f"declares it with rank {len(real)} and symbolic dims instead")
    return _reserialise(pruned, staging)


def _reserialise(pruned: onnx.ModelProto, staging: Staging | None) -> bytes | None:
    """After an edit of the pruned proto: the staged model file (what gets renamed into place) is written again,
    or the in-memory blob the checks and the write share is made again."""
    if staging is not None:
        staging.model_path.write_bytes(pruned.SerializeToString())
        return None
    return _serialise(pruned)


def _criterion_data(a: Analysis, criterion: str, feeds: dict | None, source: str | None, seed: int,
                inputs: dict | None = None, on_batch: Callable[..., None] | None = None,
                damp: float | None = None, trust: str | None = None, dense: int | None = None) -> dict:
    """What a data criterion reads: per-consumer input statistics (obspa, act, wanda) or, for gradient
    criteria, ∂L/∂w per initializer through the ONNX → torch round trip, on `feeds` or the source's inputs
    (`inputs`: those inputs, already made by `spa.calib.source_feeds`; `on_batch`: sees every batch's consumer
    inputs, spa.calib.accumulate; `dense`: the widest consumer with a dense H, spa.calib.collect)."""
    from . import calib

    source = source or calib.default_source(a.view, criterion, feeds is not None)
    if inputs is None:
        inputs = calib.source_feeds(a, source, feeds, seed=seed)
    if criteria.get(criterion).needs == "gradients":
        from .criteria.gradient import collect as grads

        return grads(a.view.model, inputs, batch=calib.batch_size(a.view))
    return calib.collect(a, source, feeds, seed=seed, feeds=inputs, on_batch=on_batch, damp=damp, trust=trust,
                         dense=calib.DENSE_COLS if dense is None else dense)


def _calibration_summary(a: Analysis, criterion: str, layers: dict, inputs: dict, source: str) -> dict:
    """What `prune --json` says about a data criterion's statistics: the source, the samples and the batch
    they were run in, per kind of H ("dense", "blocked": spa.calib.Consumer.kind) how many consumers, and how many
    of them only chose channels, without a weight update ("rank_only": spa.calib.BYTE_RANK_ONLY), and for obspa in
    how many rounds it chose them where that is more than one ("rounds": spa.calib.ROUNDS)."""
    from collections import Counter

    from . import calib

    cons = None if criteria.get(criterion).needs == "gradients" else layers
    out = {"source": source, "samples": len(next(iter(inputs.values()))) if inputs else 0,
           "batch": calib.batch_size(a.view, cons)}
    if cons is not None:
        out["consumers"] = dict(sorted(Counter(c.kind for c in cons.values()).items()))
        if any(c.rank_only for c in cons.values()):  # statistics that chose channels but fitted no update
            out["rank_only"] = sum(c.rank_only for c in cons.values())
        rounds = max((c.rounds for c in cons.values() if not c.rank_only), default=1)
        if criterion == "obspa" and rounds > 1:  # obspa chose channels in rounds (spa.calib.ROUNDS)
            out["rounds"] = rounds
    return out


def _lossy_pruned(a: Analysis, keep: np.ndarray) -> int:
    return sum(1 for g in a.prunable if g.lossy and not keep[g.comps].all())


def _serialise(model: onnx.ModelProto) -> bytes | None:
    try:
        blob = model.SerializeToString()
    except Exception:  # noqa: BLE001 - over protobuf's 2 GB limit
        return None
    return blob if len(blob) <= modelfile.TWO_GB else None


SELF_CHECK_BYTES = 64 << 20  # weights up to this size get the zero-group oracle as a self-check by default
SELF_CHECK_TOL = 1e-3  # relative; float32 noise of a correct prune stays orders of magnitude below


def _self_check_on(view: ModelView, self_check: bool | None) -> bool:
    return self_check if self_check is not None else _weights_at_most(view, SELF_CHECK_BYTES)


def _weights_at_most(view: ModelView, limit: int) -> bool:
    total = 0
    for t in view.inits.values():  # declared sizes (the loader checked them against the data present): reading
        # raw_data to measure it would copy every weight once more
        total += _itemsize(t.data_type) * int(np.prod(t.dims, dtype=np.int64))
        if total > limit:
            return False
    return True


def _itemsize(data_type: int) -> int:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize or 4
    except (KeyError, TypeError, ValueError):  # strings and undefined types: counted like float32
        return 4


def _blame(model: onnx.ModelProto) -> str:
    """Who is at fault when the self-check fails: a model the ONNX checker rejects is malformed (its readers
    may disagree on what it computes); only a valid one points at spa's analysis."""
    bad = modelfile.malformed(model)
    if bad:
        return f"The input model is malformed ({bad})"
    return "This is a bug in spa's analysis: please report it with the model"


def _analyze_checked(view: ModelView, hidden: bool, group_conv: str = DEFAULT_GROUP_CONV,
                     rules: RulesLike = None) -> Analysis:
    """The analysis; a crash on a model that ONNX's own full check rejects (a kernel_shape its weight does not
    have, ...) is the file's fault: exit 3 with the checker's reason, not an internal error."""
    try:
        return _analyze(view, hidden=hidden, group_conv=group_conv, rules=rules)
    except SpaError:
        raise
    except Exception:
        bad = modelfile.malformed(view.model)
        if bad:
            raise BadModel(f"the model is inconsistent: {bad}") from None
        raise


def _oracle_or_none(a: Analysis, keep: np.ndarray, pruned: onnx.ModelProto, oracle: bool | str,
                    overrides: dict | None) -> tuple[float | None, float | None]:
    """The zero-group oracle error (relative; "float64" in the reference evaluator, else onnxruntime) and the
    self-check's measure (outputs scaled to at least 1). (None, None) when the zeroed reference itself cannot
    be run and the oracle was not asked for."""
    precision = oracle if isinstance(oracle, str) else "float32"
    try:
        err, check = oracle_errors(a, keep, pruned, precision=precision, overrides=overrides, floors=(1e-6, 1.0))
        return err, check
    except Exception:
        if oracle:
            raise
        return None, None


def _staging_for(view: ModelView, path: str | None, output: str | os.PathLike[str] | None):
    """A `Staging` area beside `output` when the model was loaded streamed (weights left on disk), else None.
    Made only when the rewrite starts, so a failure before it leaves nothing behind."""
    if output is None or path is None or not is_streamed(view):
        return None
    return Staging(output, keep=io_safety.model_files(path))


@dataclass
class CheckResult:
    trials: int
    worst: float
    groups_tested: int
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def check(model: ModelLike, *, trials: int = 3, ratio: float = 0.5, seed: int = 0, tol: float = 1e-5,
          hidden: bool = True, group_conv: str = DEFAULT_GROUP_CONV, rules: RulesLike = None) -> CheckResult:
    """Self-test: random plans (random criterion, local and global), the zero-group oracle must hold. `rules`: as
    for `analyze`."""
    check_group_conv(group_conv)
    view, _ = prepare(model)
    a = _analyze_checked(view, hidden, group_conv, rules)
    small = model_stats(view).macs < 50_000_000  # the float64 reference evaluator is slow on big models
    worst, failures = 0.0, []
    for k in range(trials):
        plan = compute_plan(a, ratio=ratio, criterion="random", global_=bool(k % 2), seed=seed + k)
        keep = keep_mask(a, plan)
        pruned = Rewriter(a, keep).apply()
        try:
            check_model(pruned, view.model)
            err = oracle_error(a, keep, pruned, seed=seed + k)
            if not err <= tol and small:
                # float32 rounding can exceed 1e-5 on ill-conditioned graphs: decide in float64
                err = oracle_error(a, keep, pruned, seed=seed + k, precision="float64")
        except Exception as e:  # noqa: BLE001 - reported, not raised
            failures.append(f"trial {k}: {e}")
            continue
        worst = max(worst, err)
        if not err <= tol:
            failures.append(f"trial {k}: outputs differ by {err:.2e} (relative) from the zeroed original")
    return CheckResult(trials, worst, len(a.prunable), failures)
