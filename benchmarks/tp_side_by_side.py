"""spa vs Torch-Pruning 1.6.1 on the same models, side by side: prune time, params / MACs, onnxruntime CPU
latency of the results, and whether both chose the same channels.

    .venv/bin/python benchmarks/tp_side_by_side.py [--models resnet50 ...] [--runs 30] > benchmarks/tp_side_by_side.txt

Per model (models/zoo_torch, size "full", random init, seed 0):
  (a) Torch-Pruning: MagnitudePruner(MagnitudeImportance(p=1), pruning_ratio 0.5, last Linear ignored, local),
      time = pruner construction (dependency graph) + step(), in memory on the built model; the pruned torch
      model is then exported to ONNX (legacy exporter, opset 17).
  (b) spa: the unpruned model exported the same way, then `spa prune in.onnx -o out.onnx --ratio 0.5
      --criterion l1 --json` as a fresh process, whole-process wall time (interpreter start, imports, load,
      analysis, plan, rewrite, onnx.checker + onnxruntime verification, write). A second, untimed run with
      --save-plan gives the kept channel indices.
Params / MACs: spa.report.model_stats on the three ONNX files (MACs per sample). Latency: spa.tools.bench.compare on
original / TP / spa ONNX, interleaved, CPUExecutionProvider, ORT_ENABLE_ALL, threads 2, batch 1, intra-op
spinning off (spa.tools.bench's default: three live sessions' spinning workers would fight over the cores).
Channel choice: every Conv in order of appearance (torch execution order = ONNX node order of the legacy
exporter) — output width of the TP ONNX vs the spa ONNX, and the kept output-channel index sets (TP from the
groups of the interactive step, spa from the saved plan, matched through the Conv's position).
Run it with bytecode caching on (the default; a PYTHONDONTWRITEBYTECODE=1 environment recompiles spa's 33
modules on every start, +0.08 s). Prune times are medians of --repeat (default 3) runs, each on a freshly built model / a fresh spa process;
the machine is shared and noisy (a single Torch-Pruning resnet50 run has been seen at 0.3 s and at 5 s), so
read the medians and the spread, not one number.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def conv_order(model, x) -> list:
    """nn.Conv2d modules in forward execution order (first call)."""
    import torch

    seen, hooks = [], []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda mod, i, o: seen.append(mod) if mod not in seen else None))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def tp_prune(name: str):
    """Build, prune with Torch-Pruning; return (model, (wall s, CPU s of all threads), convs in order, kept
    out-channel sets or None)."""
    import torch
    import torch_pruning as tp

    from models import zoo_torch

    model = zoo_torch.build(name, "full")
    x = zoo_torch.example_input(name, "full")
    convs = conv_order(model, x)
    width = {m: m.out_channels for m in convs}
    depthwise = {m for m in convs if m.groups > 1 and m.groups == m.in_channels == m.out_channels}
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1:]
    removed: dict = defaultdict(set)
    t0, c0 = time.perf_counter(), time.process_time()
    pruner = tp.pruner.MagnitudePruner(
        model,
        x,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=head,
        global_pruning=False,
    )
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            mod = dep.target.module
            if mod in width and (
                pruner.DG.is_out_channel_pruning_fn(dep.handler)
                or (mod in depthwise and pruner.DG.is_in_channel_pruning_fn(dep.handler))
            ):
                removed[mod].update(int(i) for i in idxs)
        group.prune()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    keep = []
    for m in convs:
        k = set(range(width[m])) - removed[m]
        keep.append(k if len(k) == m.out_channels else None)  # None: could not be read back consistently
    return model, (seconds, cpu), convs, keep


def onnx_convs(path: Path) -> list[tuple[str, int]]:
    """(weight initializer name, output channels) of every Conv, in node order."""
    import onnx

    m = onnx.load(str(path))
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    return [(n.input[1], inits[n.input[1]][0] if n.input[1] in inits else -1) for n in m.graph.node if n.op_type == "Conv"]


def spa_keep(plan_path: Path, convs: list[tuple[str, int]]) -> list[set[int] | None]:
    """Kept output-channel indices of each original ONNX Conv from a saved spa plan (all when in no group)."""
    plan = json.loads(plan_path.read_text())
    by_tensor = {}
    for g in plan["groups"]:
        for mem in g["members"]:
            tensor, _, axis = mem.rpartition("[")
            if axis == "0]":
                by_tensor[tensor] = g
    out = []
    for w, n in convs:
        g = by_tensor.get(w)
        if g is None:
            out.append(set(range(n)))
        elif g["size"] == n:
            out.append(set(g["keep"]))
        else:
            out.append(None)  # the group's channel space is not this Conv's rows (not expected for plain convs)
    return out


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def spa_cli(args: list[str], src: str | None = None, pythonpath: str | None = None) -> tuple[tuple[float, float], str]:
    """`spa ARGS` as a user runs it (the venv's console script); with `src`, the spa of another source tree
    (e.g. a checkout of an older commit) run as `python -m spa` from there, for a before/after in one run
    (`pythonpath`: put first on its PYTHONPATH, e.g. the older typer that tree ran with). Returns ((wall s,
    CPU s of the process), stdout)."""
    cmd = [str(Path(sys.executable).parent / "spa")] if src is None else [sys.executable, "-m", "spa"]
    env = dict(os.environ, PYTHONPATH=pythonpath) if pythonpath else None
    t0, c0 = time.perf_counter(), _child_cpu()
    r = subprocess.run([*cmd, *args], check=False, capture_output=True, text=True, cwd=src, env=env)
    dt, cpu = time.perf_counter() - t0, _child_cpu() - c0
    if r.returncode != 0:
        raise SystemExit(f"spa {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return (dt, cpu), r.stdout


def spa_warm(src: Path, out: Path, repeat: int) -> list[float]:
    """Seconds of `spa.prune(src, output=out, ratio=0.5, criterion="l1")` in one process, after a first call
    that is not counted (what an API user who prunes several models, or Torch-Pruning's in-memory number, sees)."""
    code = ("import sys, time, spa\n"
            "ts = []\n"
            f"for i in range({repeat} + 1):\n"
            "    t = time.perf_counter()\n"
            f"    spa.prune({str(src)!r}, output={str(out)!r}, ratio=0.5, criterion='l1')\n"
            "    ts.append(time.perf_counter() - t)\n"
            "print(' '.join(map(str, ts[1:])))\n")
    r = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return [float(x) for x in r.stdout.split()]


def tp_export_check(model, name: str, path: Path) -> float:
    """Max |torch − onnxruntime| of the TP-pruned model on the example input (export sanity)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from models import zoo_torch

    x = zoo_torch.example_input(name, "full")
    with torch.no_grad():
        ref = model(x).numpy()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    got = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    return float(np.abs(ref - got).max())


baseline_label = ""
baseline_pythonpath: str | None = None


def _runs(ts: list[float]) -> str:
    return "[" + ", ".join(f"{t:.3f}" for t in ts) + "]"


def one(name: str, d: Path, runs: int, repeat: int, baseline: str | None = None) -> None:
    from models import zoo_torch
    from spa.tools import bench
    from spa.report import human

    orig, tp_onnx, spa_onnx, plan = d / f"{name}.onnx", d / f"{name}_tp.onnx", d / f"{name}_spa.onnx", d / "plan.json"
    # (a) Torch-Pruning in memory, (b) spa prune as a process on the unpruned export, and the baseline tree's spa
    # if any: interleaved, one of each per repeat, so that the machine's load falls on all of them alike
    zoo_torch.export(name, orig, size="full", opset=17)
    tp_runs, spa_runs, base_runs = [], [], []
    for _ in range(repeat):  # a fresh TP build each time; the result is deterministic, the last one is kept
        model, t, convs_t, keep_tp = tp_prune(name)
        tp_runs.append(t)
        if _ < repeat - 1:
            del model
        t, js = spa_cli(["prune", str(orig), "-o", str(spa_onnx), "--ratio", "0.5", "--criterion", "l1", "--json"])
        spa_runs.append(t)
        if baseline:
            base_runs.append(spa_cli(["prune", str(orig), "-o", str(d / "base.onnx"), "--ratio", "0.5", "--json"],
                                     src=baseline, pythonpath=baseline_pythonpath)[0])
    warm = spa_warm(orig, d / "warm.onnx", repeat)
    zoo_torch.export(name, tp_onnx, size="full", opset=17, model=model)
    export_err = tp_export_check(model, name, tp_onnx)
    del model
    tp_times, spa_times = [w for w, _ in tp_runs], [w for w, _ in spa_runs]
    t_tp, t_spa = statistics.median(tp_times), statistics.median(spa_times)
    cpu_tp, cpu_spa = statistics.median([c for _, c in tp_runs]), statistics.median([c for _, c in spa_runs])
    rep = json.loads(js)
    spa_cli(["prune", str(orig), "-o", str(d / "plan_run.onnx"), "--ratio", "0.5", "--criterion", "l1", "-q",
             "--save-plan", str(plan)])

    bo, bt, bs = bench.compare([orig, tp_onnx, spa_onnx], provider="cpu", batch=1, threads=2, runs=runs)
    rows = bench.table_rows([bo, bt, bs])
    for r, label in zip(rows, ("original", "torch-pruning", "spa")):
        r["model"] = label

    c_orig, c_tp, c_spa = onnx_convs(orig), onnx_convs(tp_onnx), onnx_convs(spa_onnx)
    keep_spa = spa_keep(plan, c_orig)

    print(f"\n## {name} (full size, opset 17, legacy exporter), ratio 0.5, L1, local, last Linear kept")
    print(f"prune time (median of {repeat}, interleaved; all runs in brackets; CPU = user + system of all threads)")
    print(f"             torch-pruning (construct + step, in memory): {t_tp:7.3f} s  {_runs(tp_times)}"
          f"  CPU {cpu_tp:.3f} s  {_runs([c for _, c in tp_runs])}")
    print(f"             spa prune (whole process, --json):          {t_spa:7.3f} s  {_runs(spa_times)}"
          f"  CPU {cpu_spa:.3f} s  {_runs([c for _, c in spa_runs])}")
    if baseline:
        bw, bc = [w for w, _ in base_runs], [c for _, c in base_runs]
        print(f"             spa prune, baseline tree (python -m spa):   {statistics.median(bw):7.3f} s"
              f"  {_runs(bw)}  CPU {statistics.median(bc):.3f} s  {_runs(bc)}  ({baseline_label})")
    print(f"             spa.prune in a warm process (API, file in, file out, verified): {statistics.median(warm):7.3f} s"
          f"  {_runs(warm)}  (like TP's number: imports done, first call excluded)")
    print(f"             spa stages in-process (last run): {rep['seconds']}")
    print(f"             ratio spa / tp: wall {t_spa / t_tp:.2f}, CPU {cpu_spa / cpu_tp:.2f}")
    print(f"spa groups   {rep['groups']}, channels removed {rep['channels_removed']}")
    print(f"TP export    max |torch - onnxruntime| of the TP-pruned model: {export_err:.1e}")
    print(f"\nCPU latency (onnxruntime {bo.provider}, ORT_ENABLE_ALL, threads {bo.threads}, batch {bo.batch}, "
          f"{runs} interleaved runs each, spinning {'on' if bo.spin else 'off'}; speed-up = original median / this median):")
    print(bench.format_table(rows))
    print(f"\nparams  original {bo.params:,}  tp {bt.params:,}  spa {bs.params:,}  (spa - tp: {bs.params - bt.params:+,})")
    print(f"MACs    original {bo.macs:,}  tp {bt.macs:,}  spa {bs.macs:,}  (spa - tp: {bs.macs - bt.macs:+,};"
          f" {human(bs.macs)} vs {human(bt.macs)})")

    # same channels?
    print("\nchannel choice, Conv by Conv in order of appearance:")
    if not (len(c_orig) == len(c_tp) == len(c_spa) == len(convs_t)):
        print(f"  Conv counts differ (original {len(c_orig)}, tp {len(c_tp)}, spa {len(c_spa)}, torch {len(convs_t)});"
              " no per-Conv comparison")
        return
    n = len(c_orig)
    same_w = sum(a[1] == b[1] for a, b in zip(c_tp, c_spa))
    print(f"  widths:  {same_w} / {n} Convs have the same output width in the TP and spa ONNX")
    diffs = [(i, o[1], a[1], b[1]) for i, (o, a, b) in enumerate(zip(c_orig, c_tp, c_spa)) if a[1] != b[1]]
    for i, w0, wt, ws in diffs[:8]:
        print(f"           Conv #{i}: {w0} -> tp {wt}, spa {ws}")
    if len(diffs) > 8:
        print(f"           ... {len(diffs) - 8} more")
    # torch width must agree with the exported TP ONNX and the read-back keep sets
    readable = [
        i for i in range(n)
        if keep_tp[i] is not None and keep_spa[i] is not None and len(keep_tp[i]) == c_tp[i][1]
        and len(keep_spa[i]) == c_spa[i][1]
    ]
    pruned = [i for i in readable if len(keep_tp[i]) < c_orig[i][1] or len(keep_spa[i]) < c_orig[i][1]]
    same_idx = sum(keep_tp[i] == keep_spa[i] for i in pruned)
    jac = [len(keep_tp[i] & keep_spa[i]) / len(keep_tp[i] | keep_spa[i]) for i in pruned]
    print(f"  indices: compared on {len(readable)} / {n} Convs ({len(pruned)} pruned by either); identical kept sets on "
          f"{same_idx} / {len(pruned)}; mean Jaccard overlap of kept sets {sum(jac) / max(len(jac), 1):.3f}"
          f" (two random halves: ~0.33)")
    print("           (spa scores the exported Convs, into which the legacy exporter folded BatchNorm, W*gamma/sqrt(var);"
          " TP scores the unfolded Conv rows and |gamma| separately)")
    has_dw = any(m.groups > 1 and m.groups == m.in_channels for m in convs_t)
    _same_idx(name, d, keep_tp, "spa on an export with BatchNormalization kept (unfolded, as TP sees it)", has_dw)


def _same_idx(name: str, d: Path, keep_tp: list, label: str, has_dw: bool) -> None:
    """spa's plan (no write needed) on the keep_batchnorm export vs TP's kept sets, Conv by Conv."""
    from models import zoo_torch

    bn, plan = d / f"{name}_bn.onnx", d / "plan_bn.json"
    zoo_torch.export(name, bn, size="full", opset=17, keep_batchnorm=True)
    spa_cli(["prune", str(bn), "-o", str(d / "bn_out.onnx"), "--ratio", "0.5", "--criterion", "l1", "-q",
             "--save-plan", str(plan)])
    c_bn = onnx_convs(bn)
    if len(c_bn) != len(keep_tp):
        print(f"  {label}: Conv counts differ ({len(c_bn)} vs {len(keep_tp)})")
        return
    keep_spa = spa_keep(plan, c_bn)
    idx = [i for i in range(len(c_bn)) if keep_tp[i] is not None and keep_spa[i] is not None]
    pruned = [i for i in idx if len(keep_tp[i]) < c_bn[i][1] or len(keep_spa[i]) < c_bn[i][1]]
    same = sum(keep_tp[i] == keep_spa[i] for i in pruned)
    jac = [len(keep_tp[i] & keep_spa[i]) / len(keep_tp[i] | keep_spa[i]) for i in pruned]
    print(f"  {label}:\n           identical kept sets on {same} / {len(pruned)} pruned Convs; mean Jaccard "
          f"{sum(jac) / max(len(jac), 1):.3f}")
    if has_dw and same < len(pruned):
        print("           (TP's MagnitudeImportance skips depthwise-conv weights: their handlers are"
              " prune_depthwise_conv_*, not in its list; spa's l1 lets them vote)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2", "densenet"])
    ap.add_argument("--runs", type=int, default=30, help="timed onnxruntime runs per model")
    ap.add_argument("--repeat", type=int, default=3, help="prune timings per tool (median reported)")
    ap.add_argument("--baseline", default=None,
                    help="another spa source tree (e.g. `git archive <commit> | tar -x -C DIR`) timed interleaved")
    ap.add_argument("--baseline-label", default="", help="what the baseline tree is (e.g. its commit)")
    ap.add_argument("--baseline-pythonpath", default=None,
                    help="first on the baseline's PYTHONPATH (e.g. `pip install --target DIR typer==0.29.2`)")
    args = ap.parse_args()
    global baseline_label, baseline_pythonpath
    baseline_label = args.baseline_label or str(args.baseline)
    baseline_pythonpath = args.baseline_pythonpath
    from importlib.metadata import version

    import onnxruntime
    import torch

    print(f"# spa vs Torch-Pruning {version('torch-pruning')}: cpu cores {os.cpu_count()}, torch {torch.__version__}"
          f" (threads {torch.get_num_threads()}), onnxruntime {onnxruntime.__version__},"
          f" load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    t0 = time.perf_counter()
    for name in args.models:
        with tempfile.TemporaryDirectory(prefix="tp-sbs-") as d:
            one(name, Path(d), args.runs, args.repeat, args.baseline)
        sys.stdout.flush()
    print(f"\n# total wall time {time.perf_counter() - t0:.0f} s, load average now"
          f" {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
