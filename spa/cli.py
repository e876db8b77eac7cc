"""The `spa` command: parse arguments, call the API, print tables or JSON, map errors to exit codes.

Exit codes: 0 ok; 2 bad argument; 3 unreadable/unsupported model; 4 verification failed; 5 cannot write;
1 anything unexpected (reported in one line too). `spa check` exits 4 when the oracle fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import BadArgument, SpaError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Structurally Prune Anything: analyse and structurally prune ONNX models.",
)


def _console():
    from rich.console import Console

    return Console()


def _fail(msg: str, code: int) -> None:
    print(f"spa: error: {msg}", file=sys.stderr)
    raise typer.Exit(code)


def _guard(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except SpaError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; nothing was written", 130)
        except typer.Exit:
            raise
        except MemoryError:
            _fail("out of memory", 1)
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            _fail(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", 1)

    return wrapper


def _write_html(rep, path: Path, model: Path, plan=None) -> None:
    """Render the HTML report atomically (temporary file + rename)."""
    import os
    import tempfile

    from . import graph
    from .errors import WriteFailed
    from .html import to_html

    if graph._same_file(path, model):
        raise BadArgument(f"--html path {path} is the input model")
    d = path.parent if str(path.parent) else Path(".")
    if not d.is_dir():
        raise WriteFailed(f"directory {d} does not exist")
    text = to_html(rep, plan=plan, title=model.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=d)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, graph.default_mode())
        os.replace(tmp, path)
    except OSError as e:
        raise WriteFailed(f"cannot write {path}: {e.strerror or e}") from None


class _progress:
    """A transient spinner on stderr naming the current stage (only on a terminal, never with --quiet/--json)."""

    def __init__(self, off: bool) -> None:
        self.status = None
        if not off and sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status("starting")

    def __enter__(self):
        if self.status is None:
            return lambda _msg: None
        self.status.__enter__()
        return lambda msg: self.status.update(msg)

    def __exit__(self, *exc) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)


def _pct(a: float, b: float) -> str:
    return f"{(b - a) / a * 100:+.1f}%" if a else "-"


@app.command()
@_guard
def analyze(
    model: Annotated[Path, typer.Argument(help="ONNX model file")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    all_groups: Annotated[bool, typer.Option("--all", help="list every group (default: a summary)")] = False,
    html: Annotated[Optional[Path], typer.Option("--html", help="also write a self-contained HTML report")] = None,
    no_hidden: Annotated[bool, typer.Option("--no-hidden", help="keep widths that are normalised together (LayerNorm/RMSNorm hidden size): prune heads and MLPs only")] = False,
) -> None:
    """Coupled channel groups: prunable or frozen (with the reason), params and FLOPs."""
    from . import api
    from .report import human

    rep = api.analyze(model, hidden=not no_hidden)
    if html:
        _write_html(rep, html, model)
    d = rep.as_dict()
    if as_json:
        print(json.dumps(d, indent=1))
        return
    from rich.table import Table

    con = _console()
    s = rep.stats
    con.print(
        f"[bold]{model}[/]: {s.nodes} nodes, {human(s.params)} params, {human(s.macs)} MACs/sample "
        f"({human(s.flops)} FLOPs), {human(s.size_bytes, 'B')}"
    )
    a = rep.analysis
    t = Table(title=f"{len(a.groups)} channel groups: {len(a.prunable)} prunable, {len(a.groups) - len(a.prunable)} frozen")
    t.add_column("id", justify="right")
    t.add_column("channels", justify="right")
    t.add_column("status")
    t.add_column("members (initializers)")
    t.add_column("reason")
    shown = a.groups if all_groups or len(a.groups) <= 60 else [g for g in a.groups if not g.prunable][:40]
    for g in shown:
        ps = [m.label for m in g.params]
        more = f" +{len(ps) - 3}" if len(ps) > 3 else ""
        t.add_row(
            str(g.id),
            str(g.size) + (f"×{g.width}" if g.width > 1 else ""),
            ("[yellow]lossy[/]" if g.lossy else "[green]prunable[/]") if g.prunable else "[red]frozen[/]",
            ", ".join(ps[:3]) + more,
            g.why or (g.lossy[0] if g.lossy and g.prunable else ""),
        )
    con.print(t)
    if shown is not a.groups:
        con.print(f"(showing frozen groups only; --all lists all {len(a.groups)})")
    n_lossy = sum(1 for g in a.prunable if g.lossy)
    if n_lossy:
        con.print(f"{n_lossy} prunable group(s) are lossy: channels normalised together (LayerNorm/RMSNorm/mean over "
                  "channels); removing some changes the statistics of the rest. --no-hidden keeps them.")
    if a.unknown_ops:
        con.print("ops without a channel rule (their channels are frozen): " + ", ".join(
            f"{op} ×{len(v)}" for op, v in sorted(a.unknown_ops.items())))


@app.command()
@_guard
def prune(
    models: Annotated[list[Path], typer.Argument(help="ONNX model file (several: with --out-dir)")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="where to write the pruned model")] = None,
    ratio: Annotated[float, typer.Option("--ratio", "-r", help="fraction of channels removed per group, 0 ≤ R < 1")] = 0.5,
    criterion: Annotated[str, typer.Option("--criterion", "-c", help="l1 | l2 | random | bn | obspa | act | wanda | taylor | snip")] = "l1",
    calib: Annotated[Optional[Path], typer.Option("--calib", help="calibration inputs (.npz keyed by graph input name, first axis = samples) for obspa/act/wanda")] = None,
    calib_source: Annotated[Optional[str], typer.Option("--calib-source", help="data-free input statistics without --calib: binary (default) | structured | noise | bn | bn-synth")] = None,
    calib_samples: Annotated[Optional[int], typer.Option("--calib-samples", help="synthetic samples for the data-free statistics (default 128)")] = None,
    global_: Annotated[bool, typer.Option("--global", help="rank all groups' channels together")] = False,
    max_group_ratio: Annotated[float, typer.Option("--max-group-ratio", help="per-group cap for --global")] = 0.9,
    round_to: Annotated[Optional[int], typer.Option("--round-to", help="keep group widths multiples of N (default 1; 8 with a target)")] = None,
    ignore: Annotated[Optional[list[str]], typer.Option("--ignore", help="freeze groups touching this node/initializer (name or regex); repeatable")] = None,
    plan_in: Annotated[Optional[Path], typer.Option("--plan", help="apply this saved plan (JSON) instead of computing one")] = None,
    plan_out: Annotated[Optional[Path], typer.Option("--save-plan", help="write the plan as JSON")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed for the random criterion")] = 0,
    oracle: Annotated[bool, typer.Option("--oracle", help="also run the zero-group oracle")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print nothing on success (errors still go to stderr)")] = False,
    html: Annotated[Optional[Path], typer.Option("--html", help="write an HTML report of the groups and widths before → after")] = None,
    target_macs: Annotated[Optional[float], typer.Option("--target-macs", help="keep at most this fraction of the MACs (global ranking, ratio found by bisection)")] = None,
    target_params: Annotated[Optional[float], typer.Option("--target-params", help="keep at most this fraction of the parameters")] = None,
    target_latency: Annotated[Optional[float], typer.Option("--target-latency", help="keep at most this fraction of the onnxruntime CPU latency (measured here)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="prune every model given into DIR/<file name> (one line each)")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="with --out-dir: prune this many models at once (processes)")] = 1,
    no_self_check: Annotated[bool, typer.Option("--no-self-check", help="skip the zero-group oracle that guards models with up to 64 MB of weights")] = False,
    no_hidden: Annotated[bool, typer.Option("--no-hidden", help="keep widths that are normalised together (LayerNorm/RMSNorm hidden size): prune heads and MLPs only")] = False,
) -> None:
    """Prune a model and write the smaller one (atomically, never over the input)."""
    from . import api, graph
    from .plan import Plan, check_ratio
    from .report import human

    check_ratio(ratio)
    check_ratio(max_group_ratio, "max-group-ratio")
    if round_to is None:
        round_to = 8 if any(v is not None for v in (target_macs, target_params, target_latency)) else 1
    if round_to < 1:
        raise BadArgument(f"--round-to must be ≥ 1, got {round_to}")
    if out_dir is not None or len(models) > 1:
        if out_dir is None or output is not None:
            raise BadArgument("several models: give --out-dir DIR (not -o)")
        if html or plan_out:
            raise BadArgument("--html and --save-plan take one model; run them per model")
        options = dict(ratio=ratio, criterion=criterion, global_=global_, max_group_ratio=max_group_ratio,
                       round_to=round_to, ignore=ignore or [], plan=Plan.load(plan_in) if plan_in else None,
                       seed=seed, oracle=oracle, target_macs=target_macs, target_params=target_params,
                       target_latency=target_latency, calib=calib, calib_source=calib_source,
                       calib_samples=calib_samples,
                       hidden=not no_hidden, self_check=False if no_self_check else None)
        _prune_many(models, out_dir, options, jobs, as_json, quiet)
        return
    model = models[0]
    if output is None:
        raise BadArgument("give -o/--output (or --out-dir DIR)")
    if graph._same_file(output, model):
        raise BadArgument(f"output path {output} is the input file; refusing to overwrite the input")
    if output.exists() and output.is_dir():
        raise BadArgument(f"output path {output} is a directory")
    plan = Plan.load(plan_in) if plan_in else None
    with _progress(quiet or as_json) as say:
        pruned, rep = api.prune(
            model,
            ratio=ratio,
            criterion=criterion,
            global_=global_,
            max_group_ratio=max_group_ratio,
            round_to=round_to,
            ignore=ignore or [],
            plan=plan,
            seed=seed,
            oracle=oracle,
            progress=say,
            target_macs=target_macs,
            target_params=target_params,
            target_latency=target_latency,
            calib=calib,
            calib_source=calib_source,
            calib_samples=calib_samples,
            output=output,
            hidden=not no_hidden,
            self_check=False if no_self_check else None,
        )
    if html:
        _write_html(api.analyze(model, hidden=not no_hidden), html, model, plan=rep.plan)
    if plan_out:
        rep.plan.save(plan_out)
    if quiet:
        return
    if as_json:
        d = rep.as_dict()
        d["output"] = str(output)
        print(json.dumps(d, indent=1))
        return
    from rich.table import Table

    b, a = rep.before, rep.after
    t = Table(title=f"{model.name} → {output.name}  ({rep.plan.mode}, {rep.plan.criterion or 'plan'}, ratio {rep.plan.ratio})")
    t.add_column("")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    t.add_column("change", justify="right")
    t.add_row("params", human(b.params), human(a.params), _pct(b.params, a.params))
    t.add_row("MACs / sample", human(b.macs), human(a.macs), _pct(b.macs, a.macs))
    t.add_row("FLOPs / sample", human(b.flops), human(a.flops), _pct(b.flops, a.flops))
    t.add_row("file size", human(b.size_bytes, "B"), human(a.size_bytes, "B"), _pct(b.size_bytes, a.size_bytes))
    t.add_row("nodes", str(b.nodes), str(a.nodes), "")
    t.add_row("groups pruned / prunable / frozen", "", f"{rep.groups_pruned} / {rep.groups_prunable} / {rep.groups_total - rep.groups_prunable}", "")
    if rep.lossy_pruned:
        t.add_row("lossy groups pruned (norm statistics change)", "", str(rep.lossy_pruned), "")
    t.add_row("channels removed", "", str(rep.channels_removed), "")
    if rep.oracle is not None:
        t.add_row("zero-group oracle (rel. error)", "", f"{rep.oracle:.1e}", "")
    con = _console()
    con.print(t)
    checks = "onnx.checker, onnxruntime" + (", zero-group oracle" if "oracle" in rep.seconds else "")
    con.print(f"verified ({checks}) and written in {rep.seconds.get('total', 0):.2f}s")


def _prune_many(models: list[Path], out_dir: Path, options: dict, jobs: int, as_json: bool, quiet: bool) -> None:
    """One line per model as it finishes (in input order); exit code of the first failure, if any."""
    from .batch import prune_many

    def show(o) -> None:
        if not as_json and (not quiet or not o.ok):
            print(o.line(), file=sys.stdout if o.ok else sys.stderr, flush=True)

    results = prune_many(models, out_dir, options, jobs=jobs, on_done=show)
    if as_json:
        print(json.dumps([{"model": o.model, "output": o.output, "ok": o.ok, "exit_code": o.exit_code,
                           "error": o.error, **({"report": o.report} if o.ok else {})} for o in results], indent=1))
    failed = [o for o in results if not o.ok]
    if failed:
        if not as_json:
            print(f"spa: error: {len(failed)} of {len(results)} models failed", file=sys.stderr)
        raise typer.Exit(failed[0].exit_code or 1)


@app.command()
@_guard
def check(
    model: Annotated[Path, typer.Argument(help="ONNX model file")],
    trials: Annotated[int, typer.Option(help="random plans to try")] = 3,
    ratio: Annotated[float, typer.Option("--ratio", "-r")] = 0.5,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    no_hidden: Annotated[bool, typer.Option("--no-hidden", help="keep widths that are normalised together (LayerNorm/RMSNorm hidden size): prune heads and MLPs only")] = False,
) -> None:
    """Self-test: prune random channels, zero the same ones in the original; outputs must agree (1e-5)."""
    from . import api

    from .plan import check_ratio

    check_ratio(ratio)
    res = api.check(model, trials=trials, ratio=ratio, seed=seed, hidden=not no_hidden)
    if as_json:
        print(json.dumps({"ok": res.ok, "trials": res.trials, "worst_rel_error": res.worst,
                          "prunable_groups": res.groups_tested, "failures": res.failures}, indent=1))
    else:
        status = "OK" if res.ok else "FAILED"
        print(f"{status}: {res.trials} random plans over {res.groups_tested} prunable groups, "
              f"worst relative error {res.worst:.1e}")
        for f in res.failures:
            print("  " + f)
    if not res.ok:
        raise typer.Exit(4)


@app.command()
@_guard
def bench(
    models: Annotated[list[Path], typer.Argument(help="ONNX models: the first is the baseline for the ratios")],
    provider: Annotated[str, typer.Option(help="cpu | cuda (onnxruntime-gpu)")] = "cpu",
    batch: Annotated[int, typer.Option(help="batch size of the timed runs")] = 1,
    threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads")] = 1,
    runs: Annotated[int, typer.Option(help="timed runs per model (interleaved across models)")] = 30,
    warmup: Annotated[int, typer.Option(help="untimed runs per model first")] = 5,
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="measure peak RSS in a fresh process")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Params, MACs, file size, onnxruntime latency (median, p10-p90) and peak memory, side by side."""
    from . import bench as b

    with _progress(as_json) as say:
        say(f"timing {len(models)} model(s), {runs} interleaved runs each")
        res = b.compare([str(m) for m in models], provider=provider, batch=batch, threads=threads, warmup=warmup,
                        runs=runs, memory=memory)
    rows = b.table_rows(res)
    if as_json:
        print(json.dumps({"benches": [r.as_dict() for r in res], "rows": rows}, indent=1))
    else:
        print(f"onnxruntime {res[0].provider}, batch {batch}, threads {threads}, {runs} interleaved runs")
        print(b.format_table(rows))


@app.command()
@_guard
def sweep(
    model: Annotated[Path, typer.Argument(help="ONNX model file")],
    ratios: Annotated[str, typer.Option(help="comma-separated ratios, e.g. 0.1,0.3,0.5,0.7")] = "0.1,0.3,0.5,0.7",
    out_dir: Annotated[Path, typer.Option("--out-dir", help="where the pruned models go")] = Path("spa-sweep"),
    criterion: Annotated[str, typer.Option("--criterion", "-c")] = "l1",
    global_: Annotated[bool, typer.Option("--global")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="prune in this many processes")] = 1,
    threads: Annotated[int, typer.Option(help="onnxruntime threads for timing")] = 1,
    runs: Annotated[int, typer.Option(help="timed runs per model")] = 20,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="write MACs/params/latency vs ratio as PNG")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Prune at several ratios (in parallel), then measure params, MACs and latency of all side by side."""
    from dataclasses import asdict

    from . import graph
    from . import sweep as sw
    from .report import human

    rs = sw.parse_ratios(ratios)
    graph.load(model)  # a bad file fails here with one line, before any worker starts
    if plot is not None and graph._same_file(plot, model):
        raise BadArgument("--plot path is the input model")
    with _progress(as_json) as say:
        say(f"pruning at {len(rs)} ratios with {jobs} job(s), then timing")
        points = sw.sweep(str(model), rs, str(out_dir), criterion=criterion, global_=global_, jobs=jobs,
                          threads=threads, runs=runs)
        if plot is not None:
            sw.plot(points, str(plot), title=model.name)
    if as_json:
        print(json.dumps([asdict(p) for p in points], indent=1))
        return
    base = points[0]
    print(f"{'ratio':>6s} {'params':>9s} {'MACs':>9s} {'MACs x':>7s} {'median ms':>10s} {'speed-up':>9s}  file")
    for p in points:
        print(f"{p.ratio:6.2f} {human(p.params):>9s} {human(p.macs):>9s} {p.macs / base.macs:7.3f} "
              f"{p.median_ms:10.3f} {base.median_ms / p.median_ms:8.2f}x  {p.path}")
    if plot is not None:
        print(f"plot: {plot}")


@app.command()
@_guard
def convert(
    source: Annotated[str, typer.Argument(help="TorchScript file, module.py:factory (torch, or JAX/Flax), .keras file, SavedModel dir or pickled scikit-learn estimator")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the ONNX file to write")],
    framework: Annotated[str, typer.Option("--framework", "-f", help="auto | torch | keras | sklearn | jax")] = "auto",
    input_shape: Annotated[Optional[str], typer.Option("--input-shape", help="example input shape, e.g. 1,3,224,224 (';' between several inputs); required for torch and jax")] = None,
    exporter: Annotated[str, typer.Option("--exporter", help="torch exporter: auto | legacy | dynamo")] = "auto",
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset")] = 17,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print nothing on success")] = False,
) -> None:
    """Convert a PyTorch or Keras model to ONNX (checked against onnxruntime, written atomically)."""
    import logging
    import zipfile

    from . import graph
    from .errors import WriteFailed

    frameworks, exporters = ("auto", "torch", "keras", "sklearn", "jax"), ("auto", "legacy", "dynamo")
    if framework not in frameworks:
        raise BadArgument(f"unknown framework {framework!r}; use one of {', '.join(frameworks)}")
    if exporter not in exporters:
        raise BadArgument(f"unknown exporter {exporter!r}; use one of {', '.join(exporters)}")
    if not 7 <= opset <= 23:
        raise BadArgument(f"--opset must be between 7 and 23, got {opset}")
    shapes = None
    if input_shape is not None:
        try:
            shapes = [[int(d) for d in s.replace("x", ",").split(",")] for s in input_shape.split(";")]
        except ValueError:
            shapes = None
        if not shapes or any(not s or any(d < 1 for d in s) for s in shapes):
            raise BadArgument(f"bad --input-shape {input_shape!r}: expected positive integers like 1,3,224,224")

    py, sep, factory = source.rpartition(":")
    is_factory = bool(sep and py.endswith(".py") and factory)
    src = Path(py if is_factory else source)
    if not src.exists():
        raise BadArgument(f"{src} does not exist")
    if graph._same_file(output, src):
        raise BadArgument(f"output path {output} is the input; refusing to overwrite the input")
    if output.is_dir():
        raise BadArgument(f"output path {output} is a directory")
    d = output.parent if str(output.parent) else Path(".")
    if not d.is_dir():
        raise WriteFailed(f"output directory {d} does not exist")

    if framework == "auto":
        suffix = src.suffix.lower()
        if is_factory:
            from converters.jax_export import is_jax_source

            framework = "jax" if is_jax_source(src) else "torch"
        elif suffix in (".pt", ".pth", ".ts", ".torchscript", ".jit"):
            framework = "torch"
        elif suffix in (".keras", ".h5", ".hdf5") or (src / "saved_model.pb").is_file():
            framework = "keras"
        elif suffix in (".pkl", ".pickle", ".joblib"):
            framework = "sklearn"
        elif suffix == ".onnx":
            raise BadArgument(f"{src} is already an ONNX model")
        elif zipfile.is_zipfile(src):
            with zipfile.ZipFile(src) as z:
                names = z.namelist()
            if any(n.endswith("config.json") for n in names) and any(n.endswith(".weights.h5") for n in names):
                framework = "keras"
            elif any(n.endswith(("/code/", "data.pkl", "constants.pkl")) for n in names):
                framework = "torch"
        if framework == "auto":
            raise BadArgument(f"cannot tell the framework of {src}; pass --framework torch or keras")

    notes: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage())

    logger = logging.getLogger("spa.converters")
    handler, propagate = _Collect(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if framework == "torch":
            if is_factory and src.suffix != ".py":
                raise BadArgument(f"{src} is not a .py file")
            if shapes is None:
                raise BadArgument("--input-shape is required for torch models, e.g. --input-shape 1,3,224,224")
            import torch

            from converters.torch_export import export_torch, load_torch_source

            module = load_torch_source(source)
            g = torch.Generator().manual_seed(0)
            xs = tuple(torch.randn(s, generator=g) for s in shapes)
            info = export_torch(module, xs, output, exporter=exporter, opset=opset)
            how = f"torch, {info.exporter} exporter"
        elif framework == "sklearn":
            from converters.sklearn_export import export_sklearn, load_estimator

            n_feat = shapes[0][-1] if shapes else None
            info = export_sklearn(load_estimator(src), output, n_feat, opset=opset)
            how = "scikit-learn, skl2onnx"
        elif framework == "jax":
            if not is_factory:
                raise BadArgument("JAX models are given as file.py:factory (returning a Flax NNX module or a function)")
            if shapes is None:
                raise BadArgument("--input-shape is required for JAX models, e.g. --input-shape 1,28,28,1")
            if exporter != "auto":
                raise BadArgument("--exporter applies to torch models only")
            from converters.jax_export import export_jax, load_jax_source

            info = export_jax(load_jax_source(source), shapes, output, opset=opset)
            how = "jax, jax2onnx"
        else:
            if is_factory:
                raise BadArgument("module.py:factory sources are torch models; drop --framework keras")
            if exporter != "auto":
                raise BadArgument("--exporter applies to torch models only")
            from converters.keras_export import export_keras

            info = export_keras(src, output, opset=opset, input_shape=shapes)
            how = f"keras, tf2onnx {info.route}"
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    notes += getattr(info, "warnings", [])
    if quiet:
        return
    for n in dict.fromkeys(notes):
        print(f"spa: warning: {n}", file=sys.stderr)
    print(f"wrote {output} ({how}, opset {info.opset}; onnxruntime matches within {info.max_error:.1e})")


@app.command()
@_guard
def finetune(
    model: Annotated[Path, typer.Argument(help="ONNX model to fine-tune (typically the output of spa prune)")],
    data: Annotated[Path, typer.Option("--data", help=".npz: one array per graph input (keyed by its name) and, without --teacher, the targets")],
    output: Annotated[Path, typer.Option("-o", "--output", help="where to write the fine-tuned ONNX model")],
    teacher: Annotated[Path | None, typer.Option("--teacher", help="the original model: distil from it (no targets needed; every output is matched)")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="passes over the data (0: only re-estimate BatchNorm statistics)")] = 3,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (decays to 0 along a cosine)")] = 1e-3,
    batch: Annotated[int, typer.Option("--batch", help="samples per step")] = 32,
    loss: Annotated[str | None, typer.Option("--loss", help="ce (class indices or probabilities) | mse (default ce; not with --teacher)")] = None,
    input_key: Annotated[str | None, typer.Option("--input", help="npz key holding the (single) graph input, if not named after it")] = None,
    target_key: Annotated[str | None, typer.Option("--target", help="npz key of the targets (default: target, y, labels or label)")] = None,
    temperature: Annotated[float, typer.Option("--temperature", help="--teacher: temperature of the KL on class scores")] = 2.0,
    output_loss: Annotated[list[str] | None, typer.Option("--output-loss", help="--teacher: NAME=kl|mse|off for one output (repeatable; default chosen per output)")] = None,
    freeze_bn: Annotated[bool, typer.Option("--freeze-bn", help="keep BatchNorm running statistics (default: re-estimate them on the data)")] = False,
    seed: Annotated[int, typer.Option("--seed", help="seed of the sample order")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print nothing on success")] = False,
) -> None:
    """Fine-tune through PyTorch (ONNX -> torch -> train -> ONNX), checked in onnxruntime, written atomically.
    With --teacher ORIGINAL.onnx the data needs no targets: the pruned model learns to match the original."""
    from .distill import parse_output_loss
    from .finetune import finetune as run

    def progress(epoch: int, total: int, value: float, seconds: float) -> None:
        eta = seconds / epoch * (total - epoch)
        print(f"epoch {epoch}/{total}: loss {value:.4g} ({seconds:.0f}s, ETA {eta:.0f}s)", file=sys.stderr, flush=True)

    rep = run(model, data, output, epochs=epochs, lr=lr, batch=batch, loss=loss, input_key=input_key,
              target_key=target_key, seed=seed, teacher=teacher, temperature=temperature,
              output_loss=parse_output_loss(output_loss), freeze_bn=freeze_bn,
              progress=None if quiet or as_json else progress)
    if as_json:
        print(json.dumps(rep.as_dict(), indent=1))
    elif not quiet:
        acc = ""
        if rep.accuracy_before is not None and rep.accuracy_after is not None:
            acc = f", accuracy {rep.accuracy_before:.3f} -> {rep.accuracy_after:.3f}"
        print(f"{rep.loss_name} loss {rep.loss_before:.4g} -> {rep.loss_after:.4g}{acc} on {rep.samples} samples "
              f"({rep.epochs} epochs)")
        for o in rep.outputs:
            if o["loss"] == "off":
                print(f"  output {o['output']}: not matched ({o['why']})")
            else:
                print(f"  output {o['output']}: {o['loss']} on {o['compared']} ({o['why']}), "
                      f"{o['before']:.4g} -> {o['after']:.4g}")
        bn = {"none": "no BatchNormalization (folded into the convolutions?)",
              "frozen": f"{rep.bn_layers} BatchNorm layers kept their statistics",
              "re-estimated": f"{rep.bn_layers} BatchNorm layers re-estimated on the data"}[rep.bn]
        print(f"wrote {rep.path} (onnxruntime matches the trained torch module within {rep.export_error:.1e}; "
              f"{bn}; {rep.seconds:.1f}s)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
