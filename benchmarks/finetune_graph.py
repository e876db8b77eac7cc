"""What `spa finetune` writes: the input graph with the trained weights (since this branch) against the TorchScript
re-export it wrote before (still its fallback), on PP-OCRv4 rec pruned by data-free obspa at 0.3 and distilled for one
epoch on 64 rendered lines (benchmarks/distill_rec_heldout.py's distillation lines).

Both files come from the same trained torch module (`spa.finetune.write_back` and `spa.finetune._export`); printed:
node and initializer counts, op types that differ, whether the pruned model's tensor names survive, the largest
difference between the two in onnxruntime, and their CPU latency (batch 1, one thread, alternated, median of 200 runs
each, in one process: a ratio, the machine is shared).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_graph.py > benchmarks/finetune_graph.txt
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import spa
from spa.finetune import _export, finetune, write_back
from spa.verify import session

N_LINES, REPS = 64, 200


def latency(models: dict[str, onnx.ModelProto], x: np.ndarray, name: str) -> dict[str, float]:
    """Median seconds of one batch-1 run per model, the models alternated run by run."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = {k: ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for s in sess.values():
        s.run(None, {name: x})  # warm-up
    for _ in range(REPS):
        for k, s in sess.items():
            t = time.perf_counter()
            s.run(None, {name: x})
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    import torch
    from distill_rec_heldout import distillation_lines
    from generalise import ocr_rec

    b = ocr_rec()
    name = b.model.graph.input[0].name
    x, _ = distillation_lines("mixed", 128, "random")
    d = Path(tempfile.mkdtemp(prefix="finetune_graph_"))
    onnx.save(b.model, str(d / "orig.onnx"))
    pruned, _ = spa.prune(b.model, ratio=0.3, criterion="obspa", seed=0)
    onnx.save(pruned, str(d / "pruned.onnx"))
    np.savez(d / "lines.npz", **{name: x[:N_LINES]})
    kept: dict = {}
    real = write_back

    def keep(module, proto):  # finetune's own module, after training: both files are written from it
        kept["module"], kept["proto"] = module, proto
        return real(module, proto)

    import spa.finetune as ft

    ft.write_back = keep
    finetune(d / "pruned.onnx", d / "lines.npz", d / "tuned.onnx", teacher=d / "orig.onnx", epochs=1, batch=16)
    ft.write_back = real
    inputs = {name: x[:N_LINES]}
    models = {"written back": real(kept["module"], kept["proto"]),
              "re-exported": _export(torch, kept["module"], kept["proto"], inputs, True, 0)}
    print(f"PP-OCRv4 rec pruned by data-free obspa at 0.3 (seed 0), distilled 1 epoch on {N_LINES} lines; cores "
          f"{os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average "
          f"{os.getloadavg()[0]:.2f}")
    names = {i.name for i in pruned.graph.initializer}
    ops = {k: Counter(n.op_type for n in m.graph.node) for k, m in models.items()}
    for k, m in models.items():
        same = len(names & {i.name for i in m.graph.initializer})
        print(f"{k:13s} nodes {len(m.graph.node):4d}, initializers {len(m.graph.initializer):4d} ({same} of the "
              f"pruned model's {len(names)} names), BatchNormalization {ops[k]['BatchNormalization']}, "
              f"{m.ByteSize() / 1e6:.2f} MB")
    print(f"pruned (input)  nodes {len(pruned.graph.node):4d}, identical node list to the written-back file: "
          f"{list(pruned.graph.node) == list(models['written back'].graph.node)}")
    diff = sorted((ops["re-exported"] - ops["written back"]).items(), key=lambda kv: -kv[1])
    print("op types the re-export adds: " + ", ".join(f"{k} +{v}" for k, v in diff))
    xs = x[N_LINES:N_LINES + 16]
    outs = {k: session(m).run(None, {name: xs})[0] for k, m in models.items()}
    print(f"max |written back - re-exported| on 16 other lines: "
          f"{float(np.max(np.abs(outs['written back'] - outs['re-exported']))):.2e}")
    lat = latency(models, x[:1], name)
    print("CPU latency, batch 1, one thread (median of {REPS}, alternated): ".replace("{REPS}", str(REPS))
          + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in lat.items())
          + f"; re-exported / written back {lat['re-exported'] / lat['written back']:.2f}x")


if __name__ == "__main__":
    main()
