"""Cost of data-free obspa next to l1: the same prune (ratio 0.3, default allocation: local, and since branch
energydef the OBS-cost allocation for data-free obspa on float-input models; default verification and self-check) of
every model of the zoos and the wild files, each in a fresh interpreter, with its prune time (spa.prune alone,
imports excluded: wall seconds and CPU seconds of all the process's threads) and its peak RSS (os.wait4's
ru_maxrss of that process). Goal (issue 12): obspa at most 20x the l1 time and at most 2 GB above the l1 peak.
The time ratio is taken on CPU seconds: the 2 shared cores ran at a load of ~20 while this was measured, so wall
seconds mostly measure the neighbours. "H" gives the kinds of statistics the consumers kept (dense /
blocked: spa.calib.Consumer.kind) and the batch the samples were run in; "samples" how many synthetic samples the
statistics read (spa.calib.data_free_samples: 128, fewer for models whose one sample costs more input values or
MACs than one of PP-OCRv4 rec).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/obspa_cost.py [--sets torch-tiny,keras-tiny,...] \
        > benchmarks/obspa_cost.txt

Sets: torch-tiny, keras-tiny, transformers-tiny, wild, torch-full, keras-full, vgg16-240 (torchvision-layout
VGG-16, random init, exported at 1x3x240x240 with a fixed batch of 1, as torch.onnx.export writes by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATIO = 0.3
SETS = ("torch-tiny", "keras-tiny", "transformers-tiny", "wild", "torch-full", "keras-full", "vgg16-240")
GOAL_TIME, GOAL_MEM = 20.0, 2048.0  # x the l1 time; MB above the l1 peak


def export_set(name: str, out: Path, only: list[str] | None = None) -> list[Path | str]:
    """Write the set's models (those in `only` if given) to `out` (in a child process: TensorFlow stays out of
    the parent)."""
    paths = []
    if name in ("torch-tiny", "torch-full"):
        from models import zoo_torch

        for m in sorted(zoo_torch.ZOO):
            if only is None or m in only:
                paths.append(zoo_torch.export(m, out / f"torch_{m}.onnx", size=name.split("-")[1]))
    elif name in ("keras-tiny", "keras-full"):
        from models import zoo_keras

        for m in sorted(zoo_keras.KERAS_ZOO):
            if only is None or m in only:
                paths.append(zoo_keras.export(m, out / f"keras_{m}.onnx", size=name.split("-")[1]))
    elif name == "transformers-tiny":
        from models import zoo_transformers

        for m in sorted(zoo_transformers.ZOO):
            try:  # the legacy exporter, else the dynamo one (as benchmarks/transformers_summary.py)
                paths.append(zoo_transformers.export(m, out / f"tr_{m}.onnx", size="tiny"))
            except Exception:  # noqa: BLE001
                try:
                    paths.append(zoo_transformers.export(m, out / f"tr_{m}.onnx", size="tiny", dynamo=True))
                except Exception as e:  # noqa: BLE001 - listed, not hidden
                    paths.append(f"SKIP {name}/{m}: export failed ({str(e).splitlines()[0][:60]})")
    elif name == "wild":
        import onnx

        from models import wild

        for m in wild.WILD:
            if wild.available(m):
                p = out / f"wild_{m}.onnx"
                onnx.save(wild.load(m), p)
                paths.append(p)
    elif name == "vgg16-240":
        import torch

        from models import zoo_torch

        net = zoo_torch.build("vgg", "full").eval()
        p = out / "vgg_vgg16_240x240_batch1.onnx"
        with torch.no_grad():
            torch.onnx.export(net, (torch.zeros(1, 3, 240, 240),), str(p), dynamo=False, input_names=["input"],
                              output_names=["output"], opset_version=17)
        paths.append(p)
    return paths


def child(path: str, criterion: str) -> None:
    import spa

    t0, c0 = time.perf_counter(), time.process_time()
    _, rep = spa.prune(path, ratio=RATIO, criterion=criterion)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"seconds": dt, "cpu": cpu, "calibration": rep.calibration, "pruned": rep.groups_pruned,
                      "calibrate": rep.seconds.get("calibrate", 0.0)}))


def measure(path: Path, criterion: str) -> dict:
    """Prune in a fresh process; its peak RSS from os.wait4 (the child alone, unlike RUSAGE_CHILDREN's maximum
    over every child so far)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen([sys.executable, __file__, "--child", str(path), criterion], stdout=fo, stderr=fe,
                             cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    rss = usage.ru_maxrss / 1024  # KiB -> MiB (Linux)
    if p.returncode != 0:
        return {"error": (err.strip().splitlines() or ["?"])[-1][:90], "rss": rss}
    return json.loads(out.strip().splitlines()[-1]) | {"rss": rss}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--only", help="comma-separated model names (the part after the set's slash)")
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--export", nargs=2)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.export:
        only = args.only.split(",") if args.only else None
        for p in export_set(args.export[0], Path(args.export[1]), only):  # exporters may print too: tag the lines
            print(p if isinstance(p, str) else f"PATH {p}")
        return
    import onnxruntime

    print(f"# spa prune --ratio {RATIO} (default allocation): l1 vs data-free obspa (default source and samples), each prune in a "
          f"fresh process; python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
          f"{os.cpu_count()} cores (shared, busy), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    print(f"# cpu/wall = spa.prune alone (s); RSS = peak resident set of the process (MB); goal: obspa <= "
          f"{GOAL_TIME:g}x l1 CPU time and <= +{GOAL_MEM:g} MB RSS")
    print(f"{'model':34s} {'l1 cpu':>7s} {'obspa cpu':>9s} {'x l1':>6s} {'l1 wall':>8s} {'obspa wall':>10s} "
          f"{'l1 MB':>7s} {'obspa MB':>9s} {'+MB':>6s}  {'samples':>7s}  {'batch':>5s}  H (consumers)        goal")
    missed = []
    for s in args.sets.split(","):
        with tempfile.TemporaryDirectory(prefix="spa-cost-") as d:
            r = subprocess.run([sys.executable, __file__, "--export", s, d, *(["--only", args.only] if args.only else [])],
                               capture_output=True, text=True, cwd=ROOT, check=False)
            if r.returncode != 0:
                print(f"{s}: export failed: {(r.stderr.strip().splitlines() or ['?'])[-1][:100]}", flush=True)
                continue
            for line in r.stdout.splitlines():
                if line.startswith("SKIP "):
                    print(line[5:], flush=True)
                    missed.append(line[5:].split(":")[0])
                    continue
                if not line.startswith("PATH "):
                    continue
                path = Path(line[5:])
                name = f"{s}/{path.stem.split('_', 1)[1]}"
                if args.only and name.split("/", 1)[1] not in args.only.split(","):
                    continue
                a, b = measure(path, "l1"), measure(path, "obspa")
                if "error" in a or "error" in b:
                    print(f"{name:34s} l1: {a.get('error', 'ok')}; obspa: {b.get('error', 'ok')}", flush=True)
                    missed.append(name)
                    continue
                x, dm = b["cpu"] / a["cpu"], b["rss"] - a["rss"]
                st = b["calibration"] or {}
                kinds = ", ".join(f"{v} {k}" for k, v in st.get("consumers", {}).items()) or "-"
                ok = x <= GOAL_TIME and dm <= GOAL_MEM
                if not ok:
                    missed.append(name)
                print(f"{name:34s} {a['cpu']:7.2f} {b['cpu']:9.2f} {x:6.1f} {a['seconds']:8.2f} {b['seconds']:10.2f} "
                      f"{a['rss']:7.0f} {b['rss']:9.0f} {dm:+6.0f}  {st.get('samples', '-'):>7}  {st.get('batch', '-'):>5}  {kinds:20s} "
                      f"{'ok' if ok else 'MISSED'}", flush=True)
    print(f"# goal missed (or failed): {', '.join(missed) if missed else 'none'}")


if __name__ == "__main__":
    main()
