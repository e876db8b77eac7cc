"""Prune many models with the same options, in parallel processes.

    spa prune a.onnx b.onnx c.onnx --out-dir small/ --jobs 2

Each model is an independent `spa.api.prune(..., output=...)` in a worker process: it is verified and written
exactly as the single-model command does. A failure (bad file, verification, write) is reported on that
model's line and does not stop the others; the command's exit code is then that of the first failure.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadArgument

if TYPE_CHECKING:
    from ..api import PruneOptions


@dataclass
class Outcome:
    model: str
    output: str
    ok: bool
    exit_code: int = 0
    error: str = ""
    report: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        from ..report import human

        if not self.ok:
            return f"FAILED  {self.model}: {self.error} (exit {self.exit_code})"
        b, a = self.report["before"], self.report["after"]
        secs = self.report["seconds"].get("total", 0.0)
        return (f"ok      {self.model} -> {self.output}  params {human(b['params'])} -> {human(a['params'])}  "
                f"MACs {human(b['macs'])} -> {human(a['macs'])}  {secs:.2f}s")


def outputs_for(models: list[Path], out_dir: Path) -> list[Path]:
    """DIR/<file name> for each model; refuses two models with the same name and an output that is an input."""
    outs = [out_dir / m.name for m in models]
    seen: dict[str, Path] = {}
    for m, o in zip(models, outs):
        if o.name in seen:
            raise BadArgument(f"{seen[o.name]} and {m} would both be written to {o}; rename one")
        seen[o.name] = m
    return outs


def prune_one(model: str, output: str, options: PruneOptions) -> Outcome:
    """One model, never raising: the outcome says what happened (the worker's entry point)."""
    from .. import api
    from ..errors import SpaError

    try:
        _, rep = api.prune(model, options, output=output)
    except SpaError as e:
        return Outcome(model, output, False, e.exit_code, str(e))
    except MemoryError:
        return Outcome(model, output, False, 1, "out of memory")
    except Exception as e:  # noqa: BLE001 - reported on the model's line, the others go on
        msg = str(e).splitlines()[0] if str(e) else ""
        return Outcome(model, output, False, 1, f"internal error: {type(e).__name__}: {msg}")
    d = rep.as_dict()
    d["output"] = output
    return Outcome(model, output, True, report=d)


def _star(args: tuple[str, str, PruneOptions]) -> Outcome:
    return prune_one(*args)


def prune_many(models: list[Path], out_dir: Path, options: PruneOptions, jobs: int = 1, on_done=None,
               reads: list[tuple[str, Path | None]] = ()) -> list[Outcome]:
    """Prune every model into `out_dir` with the same options, `jobs` at a time; outcomes in input order.
    `on_done(outcome)` is called in input order as soon as each (and all before it) finished. Every output is
    checked against every input (the models, their data files, `reads`) before the first model is pruned."""
    from ..io_safety import check_io

    if jobs < 1:
        raise BadArgument(f"--jobs must be ≥ 1, got {jobs}")
    outs = outputs_for(models, out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from ..errors import WriteFailed

        raise WriteFailed(f"cannot create {out_dir}: {e.strerror or e}") from None
    calib = options.calib
    check_io(models=models, reads=[*reads, ("--calib", calib if isinstance(calib, (str, Path)) else None)],
             writes=[("--out-dir entry", o) for o in outs])
    work = [(str(m), str(o), options) for m, o in zip(models, outs)]
    results: list[Outcome] = []
    if jobs == 1 or len(work) == 1:
        for w in work:
            results.append(_star(w))
            if on_done:
                on_done(results[-1])
        return results
    import multiprocessing as mp

    # spawn: each worker starts clean (no onnxruntime thread pools inherited through fork)
    with ProcessPoolExecutor(max_workers=min(jobs, len(work)),
                             mp_context=mp.get_context("spawn")) as ex:
        for r in ex.map(_star, work):
            results.append(r)
            if on_done:
                on_done(r)
    return results
