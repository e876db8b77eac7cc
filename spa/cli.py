"""The `spa` command: parse arguments, call the API, print tables or JSON, map errors to exit codes.

Exit codes: 0 ok; 2 bad argument; 3 unreadable/unsupported model; 4 verification failed; 5 cannot write;
1 anything unexpected (reported in one line too). `spa check` exits 4 when the oracle fails.

No `from __future__ import annotations` here: typer would then evaluate every option's annotation string
(typing.get_type_hints) each time it builds the command line, 0.04 s of every run; real annotations take 0.004.
"""

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


def _rich(text: object) -> str:
    """A model- or user-controlled string for rich: markup escaped (`conv[/bold]w` stays text) and control
    characters shown, not sent to the terminal."""
    from rich.markup import escape

    from .errors import printable

    return escape(printable(text))


def _say(text: object, err: bool = False) -> None:
    """Print plain text (names from models and paths included) with control characters made visible."""
    from .errors import printable

    print(printable(text), file=sys.stderr if err else sys.stdout, flush=err)


def _fail(msg: str, code: int) -> None:
    from .errors import printable

    print(f"spa: error: {printable(msg)}", file=sys.stderr)
    raise typer.Exit(code)


class Terminated(BaseException):
    """SIGTERM (or SIGHUP), raised in the main thread so every `finally` and staging clean-up runs; a
    BaseException so no `except Exception` swallows it."""


def _on_signal(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def _install_signal_handlers() -> None:
    import signal

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            try:
                signal.signal(sig, _on_signal)
            except (ValueError, OSError):  # not the main thread, or not allowed here
                pass


def _guard(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except SpaError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Terminated as e:
            _fail("terminated by a signal", 128 + (e.args[0] if e.args else 15))
        except typer.Exit:
            raise
        except MemoryError:
            _fail("out of memory", 1)
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            _fail(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", 1)

    return wrapper


def _write_html(rep, path: Path, model: Path, plan=None) -> None:
    """Render the HTML report and write it atomically (the destination was checked before the work began)."""
    from .tools.html import to_html
    from .io_safety import atomic_write

    atomic_write(path, to_html(rep, plan=plan, title=model.name), label="--html")


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


INPUT_SHAPE_HELP = ("input dims to verify, time and count MACs at, e.g. x=1,3,48,320 (NAME= may be left out for "
                    "a single input; repeatable). Default for symbolic image/sequence sizes: the first size the "
                    "model runs at")


@app.command()
@_guard
def analyze(
    model: Annotated[Path, typer.Argument(help="ONNX model file")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    all_groups: Annotated[bool, typer.Option("--all", help="list every group (default: a summary)")] = False,
    html: Annotated[Optional[Path], typer.Option("--html", help="also write a self-contained HTML report")] = None,
    graphml: Annotated[Optional[Path], typer.Option("--graphml", help="also write the dependency graph (ops, tensors, channel groups) as GraphML for networkx, Gephi or yEd")] = None,
    no_hidden: Annotated[bool, typer.Option("--no-hidden", help="keep widths that are normalised together (LayerNorm/RMSNorm hidden size): prune heads and MLPs only")] = False,
    input_shape: Annotated[Optional[list[str]], typer.Option("--input-shape", help=INPUT_SHAPE_HELP)] = None,
    group_conv: Annotated[str, typer.Option("--group-conv", help="grouped convs: positions (the same in-group positions from every group; default) | groups (whole groups)")] = "positions",
) -> None:
    """Coupled channel groups: prunable or frozen (with the reason), params and FLOPs."""
    from . import api, io_safety
    from .report import human

    io_safety.check_io(models=[model], writes=[("--html", html), ("--graphml", graphml)])
    rep = api.analyze(model, hidden=not no_hidden, group_conv=group_conv, input_shape=input_shape)
    if html:
        _write_html(rep, html, model)
    if graphml:
        import networkx as nx

        from .io_safety import atomic_write

        atomic_write(graphml, "\n".join(nx.generate_graphml(rep.analysis.to_networkx())) + "\n", label="--graphml")
    d = rep.as_dict()
    if as_json:
        print(json.dumps(d, indent=1))
        return
    from rich.table import Table

    con = _console()
    s = rep.stats
    con.print(
        f"[bold]{_rich(model)}[/]: {s.nodes} nodes, {human(s.params)} params, {human(s.macs)} MACs/sample "
        f"({human(s.flops)} FLOPs){_rich(_at(s))}, {human(s.size_bytes, 'B')}",
        soft_wrap=True,  # a long path is never split across lines
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
            _rich(", ".join(ps[:3]) + more),
            _rich(g.why or (g.lossy[0] if g.lossy and g.prunable else "")),
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
            f"{_rich(op)} ×{len(v)}" for op, v in sorted(a.unknown_ops.items())))
    if not a.prunable:
        _warn("nothing can be pruned: no prunable channel group; top frozen reasons: "
              + "; ".join(f"{r} ×{n}" for r, n in api.frozen_reasons(a, 3)))


def _at(s) -> str:
    """' at x=1×3×48×96' when MACs were counted at a size (symbolic image/sequence dims, --input-shape)."""
    from .verify import format_shapes

    return f" at {format_shapes(s.input_shapes)}" if s.input_shapes else ""


def _warn(msg: str) -> None:
    _say(f"spa: warning: {msg}", err=True)


@app.command()
@_guard
def prune(
    models: Annotated[list[Path], typer.Argument(help="ONNX model file (several: with --out-dir)")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="where to write the pruned model")] = None,
    ratio: Annotated[float, typer.Option("--ratio", "-r", help="fraction of channels removed per group, 0 ≤ R < 1")] = 0.5,
    criterion: Annotated[str, typer.Option("--criterion", "-c", help="l1 | l2 | random | bn | obspa | act | wanda | taylor | snip")] = "l1",
    calib: Annotated[Optional[Path], typer.Option("--calib", help="calibration inputs for obspa/act/wanda: .npz keyed by graph input name (first axis = samples), or a folder of images (see --calib-size ...)")] = None,
    calib_source: Annotated[Optional[str], typer.Option("--calib-source", help="data-free input statistics without --calib: strokes (default; common for obspa on token-id inputs) | binary | structured | noise | bn | bn-synth | mix | common (token ids: everyday words); with --calib: calib (the inputs alone; the default for other inputs, ratios above 0.3 and targets) | calib-prior (images: and --calib-samples images of the strokes prior, default 64; the default for obspa on images up to ratio 0.3) | token-bag (its tokens also shuffled into new sequences) | token-bag-common (and common sequences) | token-splice (sequences spliced from spans of it instead) | token-splice-common (and common sequences) | token-splice-bag-common (spliced, shuffled and common sequences; the default for obspa on token-id inputs)")] = None,
    calib_samples: Annotated[Optional[int], typer.Option("--calib-samples", help="synthetic samples for the data-free statistics (default 128, fewer for models with large inputs or many MACs: --json says how many)")] = None,
    calib_size: Annotated[Optional[str], typer.Option("--calib-size", help="--calib DIR of images: resize to HxW (default: the model's fixed size)")] = None,
    calib_mean: Annotated[Optional[str], typer.Option("--calib-mean", help="--calib DIR: per-channel mean subtracted after --calib-scale, e.g. 0.485,0.456,0.406 (default 0)")] = None,
    calib_std: Annotated[Optional[str], typer.Option("--calib-std", help="--calib DIR: per-channel std divided by, e.g. 0.229,0.224,0.225 (default 1)")] = None,
    calib_scale: Annotated[Optional[str], typer.Option("--calib-scale", help="--calib DIR: pixel (0-255) multiplier, e.g. 1/255 (the default) or 1")] = None,
    calib_bgr: Annotated[bool, typer.Option("--calib-bgr", help="--calib DIR: channels in BGR order (default RGB)")] = False,
    calib_layout: Annotated[Optional[str], typer.Option("--calib-layout", help="--calib DIR: nchw (default) | nhwc")] = None,
    calib_gray: Annotated[bool, typer.Option("--calib-gray", help="--calib DIR: grayscale (automatic for a 1-channel input)")] = False,
    global_: Annotated[bool, typer.Option("--global", help="rank all groups' channels together")] = False,
    max_group_ratio: Annotated[float, typer.Option("--max-group-ratio", help="per-group cap for --global")] = 0.9,
    allocate: Annotated[Optional[str], typer.Option("--allocate", help="local (every group loses --ratio) | energy (obspa: per-group ratios by the OBS cost, at the local plan's MACs; the default for obspa with --calib, and data-free on models with float inputs only up to --ratio 0.3, where each group may lose up to 1.1x or 1.5x the ratio, whichever moves the outputs less on fresh prior samples; else local. Asked for: up to 1.5x)")] = None,
    damp: Annotated[Optional[float], typer.Option("--damp", help="obspa: relative damping of the layer statistics, H + damp·mean diag H (default 0.01; 0.1 with --calib-source common); more trusts synthetic statistics less")] = None,
    trust: Annotated[Optional[str], typer.Option("--trust", help="obspa: check each layer's weight update on held-aside samples: shrink | gate | off (default)")] = None,
    round_to: Annotated[Optional[int], typer.Option("--round-to", help="keep group widths multiples of N (default 1; 8 with a target)")] = None,
    ignore: Annotated[Optional[list[str]], typer.Option("--ignore", help="freeze groups touching this node/initializer (name or regex); repeatable")] = None,
    plan_in: Annotated[Optional[Path], typer.Option("--plan", help="apply this saved plan (JSON) instead of computing one")] = None,
    plan_out: Annotated[Optional[Path], typer.Option("--save-plan", help="write the plan as JSON")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="seed for the random criterion")] = 0,
    oracle: Annotated[bool, typer.Option("--oracle", help="also run the zero-group oracle")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print nothing on success (errors still go to stderr)")] = False,
    html: Annotated[Optional[Path], typer.Option("--html", help="write an HTML report of the groups and widths before → after")] = None,
    target_macs: Annotated[Optional[float], typer.Option("--target-macs", help="keep at most this fraction of the MACs (global ranking, ratio found by bisection)")] = None,
    target_params: Annotated[Optional[float], typer.Option("--target-params", help="keep at most this fraction of the parameters")] = None,
    target_latency: Annotated[Optional[float], typer.Option("--target-latency", help="keep at most this fraction of the onnxruntime CPU latency (measured here)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="prune every model given into DIR/<file name> (one line each)")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="with --out-dir: prune this many models at once (processes)")] = 1,
    no_self_check: Annotated[bool, typer.Option("--no-self-check", help="skip the zero-group oracle that guards models with up to 64 MB of weights")] = False,
    no_hidden: Annotated[bool, typer.Option("--no-hidden", help="keep widths that are normalised together (LayerNorm/RMSNorm hidden size): prune heads and MLPs only")] = False,
    input_shape: Annotated[Optional[list[str]], typer.Option("--input-shape", help=INPUT_SHAPE_HELP)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="exit 6 and write nothing when nothing would be pruned")] = False,
    latency: Annotated[bool, typer.Option("--latency", help="also time the original and the pruned model in onnxruntime (CPU, interleaved runs) and show both")] = False,
    group_conv: Annotated[str, typer.Option("--group-conv", help="grouped convs: positions (the same in-group positions from every group; default) | groups (whole groups)")] = "positions",
) -> None:
    """Prune a model and write the smaller one (atomically, never over the input)."""
    from . import io_safety

    if len(models) == 1:
        io_safety.prefetch(models[0])  # read on the other core while numpy, onnx and onnxruntime import
    from . import api
    from .plan import Plan

    preprocess = {k: v for k, v in {"size": calib_size, "mean": calib_mean, "std": calib_std, "scale": calib_scale,
                                    "bgr": calib_bgr, "layout": calib_layout, "gray": calib_gray}.items() if v}
    if preprocess and calib is None:
        raise BadArgument(f"--calib-{next(iter(preprocess))} needs --calib DIR (a folder of images)")
    targets = any(v is not None for v in (target_macs, target_params, target_latency))
    opts = api.PruneOptions(
        ratio=ratio, criterion=criterion, global_=global_, max_group_ratio=max_group_ratio, allocation=allocate,
        round_to=(8 if targets else 1) if round_to is None else round_to, ignore=ignore or [], seed=seed,
        oracle=oracle, target_macs=target_macs, target_params=target_params, target_latency=target_latency,
        calib=calib, calib_source=calib_source, calib_samples=calib_samples, calib_preprocess=preprocess or None,
        damp=damp, trust=trust, hidden=not no_hidden,
        group_conv=group_conv, self_check=False if no_self_check else None, input_shape=input_shape, strict=strict)
    opts.check()
    if out_dir is not None or len(models) > 1:
        if out_dir is None or output is not None:
            raise BadArgument("several models: give --out-dir DIR (not -o)")
        if html or plan_out:
            raise BadArgument("--html and --save-plan take one model; run them per model")
        opts.plan = Plan.load(plan_in) if plan_in else None
        _prune_many(models, out_dir, opts, jobs, as_json, quiet, reads=[("--plan", plan_in)])
        return
    model = models[0]
    if output is None:
        raise BadArgument("give -o/--output (or --out-dir DIR)")
    # every destination checked before any work: a bad --html must not fail after the model is written
    io_safety.check_io(models=[model], reads=[("--plan", plan_in), ("--calib", calib)],
                       writes=[("-o", output), ("--save-plan", plan_out), ("--html", html)])
    opts.plan = Plan.load(plan_in) if plan_in else None
    with _progress(quiet or as_json) as say:
        _, rep = api.prune(model, opts, output=output, progress=say)
    if html:
        _write_html(api.analyze(model, hidden=not no_hidden, group_conv=group_conv), html, model, plan=rep.plan)
    if plan_out:
        rep.plan.save(plan_out)
    if not as_json:
        for note in rep.notes:
            _warn(note)
    if quiet:
        return
    if as_json:
        d = rep.as_dict()
        d["output"] = str(output)
        print(json.dumps(d, indent=1))
        return
    _print_prune_table(rep, model, output, latency, input_shape)


def _print_prune_table(rep, model: Path, output: Path, latency: bool, input_shape: list[str] | None) -> None:
    """The before/after table (with onnxruntime latency of both when asked) and the line saying what was checked."""
    from rich.table import Table

    from .report import human

    b, a = rep.before, rep.after
    mode = rep.plan.mode
    if probed := (rep.calibration or {}).get("allocation"):  # spa.probe chose the energy plan's cap
        mode = f"{mode}, cap {probed['cap']:g}x probed"
    t = Table(title=f"{_rich(model.name)} → {_rich(output.name)}  ({mode}, {_rich(rep.plan.criterion or 'plan')}, ratio {rep.plan.ratio})")
    t.add_column("")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    t.add_column("change", justify="right")
    t.add_row("params", human(b.params), human(a.params), _pct(b.params, a.params))
    t.add_row("MACs / sample" + _at(b), human(b.macs), human(a.macs), _pct(b.macs, a.macs))
    t.add_row("FLOPs / sample", human(b.flops), human(a.flops), _pct(b.flops, a.flops))
    t.add_row("file size", human(b.size_bytes, "B"), human(a.size_bytes, "B"), _pct(b.size_bytes, a.size_bytes))
    t.add_row("nodes", str(b.nodes), str(a.nodes), "")
    t.add_row("groups pruned / prunable / frozen", "", f"{rep.groups_pruned} / {rep.groups_prunable} / {rep.groups_total - rep.groups_prunable}", "")
    if rep.lossy_pruned:
        t.add_row("lossy groups pruned (norm statistics change)", "", str(rep.lossy_pruned), "")
    t.add_row("channels removed", "", str(rep.channels_removed), "")
    if latency:
        from .tools.bench import compare

        orig, small = compare([model, output], runs=50, warmup=5, memory=False, input_shape=input_shape)
        t.add_row("latency (onnxruntime CPU, median)", f"{orig.median_ms:.3f} ms",
                  f"{small.median_ms:.3f} ms", f"{orig.median_ms / small.median_ms:.2f}x faster")
    if rep.oracle is not None:
        t.add_row("zero-group oracle (rel. error)", "", f"{rep.oracle:.1e}", "")
    con = _console()
    con.print(t)
    checks = "onnx.checker, onnxruntime" + (", zero-group oracle" if "oracle" in rep.seconds else "")
    con.print(f"verified ({checks}) and written in {rep.seconds.get('total', 0):.2f}s")


def _prune_many(models: list[Path], out_dir: Path, options, jobs: int, as_json: bool, quiet: bool,
                reads: list | None = None) -> None:
    """One line per model as it finishes (in input order); exit code of the first failure, if any."""
    from .tools.batch import prune_many

    def show(o) -> None:
        if not as_json and (not quiet or not o.ok):
            _say(o.line(), err=not o.ok)

    results = prune_many(models, out_dir, options, jobs=jobs, on_done=show, reads=reads or [])
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
    trials: Annotated[int, typer.Option(min=1, help="random plans to try")] = 3,
    ratio: Annotated[float, typer.Option("--ratio", "-r")] = 0.5,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    no_hidden: Annotated[bool, typer.Option("--no-hidden", help="keep widths that are normalised together (LayerNorm/RMSNorm hidden size): prune heads and MLPs only")] = False,
    group_conv: Annotated[str, typer.Option("--group-conv", help="grouped convs: positions (the same in-group positions from every group; default) | groups (whole groups)")] = "positions",
) -> None:
    """Self-test: prune random channels, zero the same ones in the original; outputs must agree (1e-5)."""
    from . import api

    from .plan import check_ratio

    check_ratio(ratio)
    res = api.check(model, trials=trials, ratio=ratio, seed=seed, hidden=not no_hidden, group_conv=group_conv)
    if as_json:
        print(json.dumps({"ok": res.ok, "trials": res.trials, "worst_rel_error": res.worst,
                          "prunable_groups": res.groups_tested, "failures": res.failures}, indent=1))
    else:
        status = "OK" if res.ok else "FAILED"
        print(f"{status}: {res.trials} random plans over {res.groups_tested} prunable groups, "
              f"worst relative error {res.worst:.1e}")
        for f in res.failures:
            _say("  " + f)
    if not res.ok:
        raise typer.Exit(4)


@app.command()
@_guard
def bench(
    models: Annotated[list[Path], typer.Argument(help="ONNX models: the first is the baseline for the ratios")],
    provider: Annotated[str, typer.Option(help="cpu | cuda (onnxruntime-gpu)")] = "cpu",
    batch: Annotated[int, typer.Option(min=1, help="batch size of the timed runs")] = 1,
    threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads")] = 1,
    runs: Annotated[int, typer.Option(min=1, help="timed runs per model (interleaved across models)")] = 30,
    warmup: Annotated[int, typer.Option(min=0, help="untimed runs per model first")] = 5,
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="measure peak RSS in a fresh process")] = True,
    input_shape: Annotated[Optional[list[str]], typer.Option("--input-shape", help=INPUT_SHAPE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Params, MACs, file size, onnxruntime latency (median, p10-p90) and peak memory, side by side."""
    from .tools import bench as b

    with _progress(as_json) as say:
        say(f"timing {len(models)} model(s), {runs} interleaved runs each")
        res = b.compare([str(m) for m in models], provider=provider, batch=batch, threads=threads, warmup=warmup,
                        runs=runs, memory=memory, input_shape=input_shape)
    rows = b.table_rows(res)
    if as_json:
        print(json.dumps({"benches": [r.as_dict() for r in res], "rows": rows}, indent=1))
    else:
        from .verify import format_shapes

        _say(f"onnxruntime {res[0].provider}, inputs {format_shapes(res[0].input_shapes)}, threads {threads}, "
             f"{runs} interleaved runs")
        _say(b.format_table(rows))


@app.command()
@_guard
def sweep(
    model: Annotated[Path, typer.Argument(help="ONNX model file")],
    ratios: Annotated[str, typer.Option(help="comma-separated ratios, e.g. 0.1,0.3,0.5,0.7")] = "0.1,0.3,0.5,0.7",
    out_dir: Annotated[Path, typer.Option("--out-dir", help="where the pruned models go")] = Path("spa-sweep"),
    criterion: Annotated[str, typer.Option("--criterion", "-c")] = "l1",
    global_: Annotated[bool, typer.Option("--global")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="prune in this many processes")] = 1,
    threads: Annotated[int, typer.Option(help="onnxruntime threads for timing")] = 1,
    runs: Annotated[int, typer.Option(min=1, help="timed runs per model")] = 20,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="write MACs/params/latency vs ratio as PNG")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Prune at several ratios (in parallel), then measure params, MACs and latency of all side by side."""
    from dataclasses import asdict

    from . import io_safety, modelfile
    from .tools import sweep as sw
    from .report import human

    rs = sw.parse_ratios(ratios)
    io_safety.check_io(models=[model], writes=[("--plot", plot)])
    modelfile.load(model)  # a bad file fails here with one line, before any worker starts
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
        _say(f"{p.ratio:6.2f} {human(p.params):>9s} {human(p.macs):>9s} {p.macs / base.macs:7.3f} "
              f"{p.median_ms:10.3f} {base.median_ms / p.median_ms:8.2f}x  {p.path}")
    if plot is not None:
        _say(f"plot: {plot}")


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
    """Convert a PyTorch or Keras model to ONNX (checked against onnxruntime, written atomically).

    Warning: loading a pickle (.pkl, .joblib), a torch file or a module.py:factory source runs code from it. Convert only files you trust."""
    from converters.dispatch import Source, check_options, convert

    from . import io_safety

    check_options(framework, exporter, opset)
    shapes = None
    if input_shape is not None:
        try:
            shapes = [[int(d) for d in s.replace("x", ",").split(",")] for s in input_shape.split(";")]
        except ValueError:
            shapes = None
        if not shapes or any(not s or any(d < 1 for d in s) for s in shapes):
            raise BadArgument(f"bad --input-shape {input_shape!r}: expected positive integers like 1,3,224,224")
    src = Source.parse(source)
    io_safety.check_io(reads=[("the input", src.path)], writes=[("-o", output)])
    done = convert(src, output, framework=framework, shapes=shapes, exporter=exporter, opset=opset)
    if quiet:
        return
    for n in done.warnings:
        _say(f"spa: warning: {n}", err=True)
    _say(f"wrote {output} ({done.how}, opset {done.opset}; onnxruntime matches within {done.max_error:.1e})")


@app.command()
@_guard
def finetune(
    model: Annotated[Path, typer.Argument(help="ONNX model to fine-tune (typically the output of spa prune)")],
    data: Annotated[Path, typer.Option("--data", help=".npz: one array per graph input (keyed by its name) and, without --teacher, the targets")],
    output: Annotated[Path, typer.Option("-o", "--output", help="where to write the fine-tuned ONNX model")],
    teacher: Annotated[Path | None, typer.Option("--teacher", help="the original model: distil from it (no targets needed; every output is matched)")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="passes over the data (0: only re-estimate BatchNorm statistics)")] = 3,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (decays to 0 along a cosine)")] = 1e-3,
    batch: Annotated[int, typer.Option("--batch", min=1, help="samples per step")] = 32,
    loss: Annotated[str | None, typer.Option("--loss", help="ce (class indices or probabilities) | mse (default ce; not with --teacher)")] = None,
    input_key: Annotated[str | None, typer.Option("--input", help="npz key holding the (single) graph input, if not named after it")] = None,
    target_key: Annotated[str | None, typer.Option("--target", help="npz key of the targets (default: target, y, labels or label)")] = None,
    temperature: Annotated[float, typer.Option("--temperature", help="--teacher: temperature of the KL on class scores")] = 2.0,
    output_loss: Annotated[list[str] | None, typer.Option("--output-loss", help="--teacher: NAME=kl|kl+ctc|bce|mse|off for one output (repeatable; default chosen per output; kl+ctc: a CTC recogniser's (N, T, C) scores, blank 0, also the CTC loss of the teacher's greedy transcription; bce: per-element probabilities, e.g. a Sigmoid map)")] = None,
    augment: Annotated[str | None, typer.Option("--augment", help="--teacher: alter each training batch at random, the teacher seeing the same: 'all' or a comma list of scale,shift,blur,noise,contrast,invert,stroke,colour,mix,splice (image inputs; default none)")] = None,
    freeze_bn: Annotated[bool, typer.Option("--freeze-bn", help="keep BatchNorm running statistics (default: re-estimate them on the data)")] = False,
    bn_augmented: Annotated[bool, typer.Option("--bn-augmented", help="--augment: re-estimate the final BatchNorm statistics on augmented batches, as trained on (default: on the data as given)")] = False,
    plan: Annotated[Optional[list[Path]], typer.Option("--plan", help="--teacher: the plan the model was pruned with (spa prune --save-plan): also match the intermediate features at the pruned groups' boundaries. Repeat it for a model pruned again after fine-tuning: the plans in the order they were applied")] = None,
    feature_weight: Annotated[float, typer.Option("--feature-weight", help="--plan: weight of the features' mean loss against one output's")] = 1.0,
    warmup: Annotated[float, typer.Option("--warmup", help="share of the steps over which the learning rate rises linearly to --lr before its cosine decay (0: none)")] = 0.0,
    average: Annotated[float, typer.Option("--average", help="average the weights over this last share of the steps, the learning rate held there (stochastic weight averaging; 0: none)")] = 0.0,
    data_size: Annotated[Optional[str], typer.Option("--data-size", help="--data folder of images: resize to HxW")] = None,
    data_mean: Annotated[Optional[str], typer.Option("--data-mean", help="--data folder: per-channel mean, e.g. 0.5,0.5,0.5")] = None,
    data_std: Annotated[Optional[str], typer.Option("--data-std", help="--data folder: per-channel std")] = None,
    data_scale: Annotated[Optional[str], typer.Option("--data-scale", help="--data folder: pixel scale (default 1/255)")] = None,
    data_bgr: Annotated[bool, typer.Option("--data-bgr", help="--data folder: BGR channel order")] = False,
    data_layout: Annotated[Optional[str], typer.Option("--data-layout", help="--data folder: nchw | nhwc")] = None,
    data_gray: Annotated[bool, typer.Option("--data-gray", help="--data folder: grayscale")] = False,
    seed: Annotated[int, typer.Option("--seed", min=0, help="seed of the sample order")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print nothing on success")] = False,
) -> None:
    """Fine-tune through PyTorch (ONNX -> torch -> train -> ONNX), checked in onnxruntime, written atomically.
    With --teacher ORIGINAL.onnx the data needs no targets: the pruned model learns to match the original."""
    from . import io_safety
    from .distill import parse_output_loss
    from .finetune import finetune as run

    io_safety.check_io(models=[model], writes=[("-o", output)],
                       reads=[("--data", data), ("--teacher", teacher), *(("--plan", p) for p in plan or [])])

    def progress(epoch: int, total: int, value: float, seconds: float) -> None:
        eta = seconds / epoch * (total - epoch)
        print(f"epoch {epoch}/{total}: loss {value:.4g} ({seconds:.0f}s, ETA {eta:.0f}s)", file=sys.stderr, flush=True)

    rep = run(model, data, output, epochs=epochs, lr=lr, batch=batch, loss=loss, input_key=input_key,
              target_key=target_key, seed=seed, teacher=teacher, temperature=temperature,
              output_loss=parse_output_loss(output_loss), freeze_bn=freeze_bn, bn_augmented=bn_augmented,
              progress=None if quiet or as_json else progress, augment=augment, plan=plan or None,
              feature_weight=feature_weight, warmup=warmup, average=average, data_preprocess={k: v for k, v in {"size": data_size, "mean": data_mean, "std": data_std,
                                                  "scale": data_scale, "bgr": data_bgr, "layout": data_layout,
                                                  "gray": data_gray}.items() if v} or None)
    if as_json:
        print(json.dumps(rep.as_dict(), indent=1))
    elif not quiet:
        acc = ""
        if rep.accuracy_before is not None and rep.accuracy_after is not None:
            acc = f", accuracy {rep.accuracy_before:.3f} -> {rep.accuracy_after:.3f}"
        print(f"{rep.loss_name} loss {rep.loss_before:.4g} -> {rep.loss_after:.4g}{acc} on {rep.samples} samples "
              f"({rep.epochs} epochs)")
        for o in rep.outputs:
            if o["output"] == "(features)":
                _say(f"  features: {o['loss']} on {o['compared']} ({o['why']}), {o['before']:.4g} -> {o['after']:.4g}")
            elif o["loss"] == "off":
                _say(f"  output {o['output']}: not matched ({o['why']})")
            else:
                _say(f"  output {o['output']}: {o['loss']} on {o['compared']} ({o['why']}), "
                      f"{o['before']:.4g} -> {o['after']:.4g}")
        bn = {"none": "no BatchNormalization (folded into the convolutions?)",
              "frozen": f"{rep.bn_layers} BatchNorm layers kept their statistics",
              "re-estimated": f"{rep.bn_layers} BatchNorm layers re-estimated on the data",
              "re-estimated-augmented": f"{rep.bn_layers} BatchNorm layers re-estimated on the augmented data"}[rep.bn]
        _say(f"wrote {rep.path} (onnxruntime matches the trained torch module within {rep.export_error:.1e}; "
              f"{bn}; {rep.seconds:.1f}s)")


def _click_exceptions():
    """click's exception classes: typer ≥ 0.2x vendors click as `typer._click`, older typer uses click."""
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions
    return exceptions


def main() -> None:
    """Run the command; every failure, usage errors and Ctrl-C included, ends in one line on stderr."""
    from .errors import printable

    ce = _click_exceptions()
    _install_signal_handlers()
    try:
        code = app(standalone_mode=False)
    except ce.NoArgsIsHelpError as e:
        print(e.ctx.get_help() if e.ctx else "", file=sys.stderr)
        code = 2
    except ce.UsageError as e:  # one line, not a box: "spa prune: error: Invalid value for '--ratio' ..."
        cmd = f" {e.ctx.info_name}" if e.ctx is not None and e.ctx.parent is not None else ""
        print(f"spa{cmd}: error: {printable(e.format_message())}".replace("\n", " "), file=sys.stderr)
        code = 2
    except ce.ClickException as e:
        print(f"spa: error: {printable(e.format_message())}".replace("\n", " "), file=sys.stderr)
        code = e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        print("spa: error: interrupted", file=sys.stderr)
        code = 130
    except Terminated as e:
        print("spa: error: terminated by a signal", file=sys.stderr)
        code = 128 + (e.args[0] if e.args else 15)
    raise SystemExit(code if isinstance(code, int) else 0)

if __name__ == "__main__":
    main()
