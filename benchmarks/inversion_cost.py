"""What inputs synthesised by inversion (DeepInversion-style: optimise a batch so that the BatchNorm nodes' batch
statistics match their running ones, spa's "bn-synth" source) would cost on PP-OCRv4 rec, next to the whole
data-free obspa prune: which BatchNorm nodes survive the export, and the time of one torch forward + backward pass
through spa.onnx_to_torch for 16 inputs of 1x3x48x320 (one core). A few dozen such steps are needed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/inversion_cost.py > benchmarks/inversion_cost.txt
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from obspa_ocr import rec_model


def main() -> None:
    import torch

    from spa.api import prepare
    from spa.onnx_to_torch import onnx_to_torch
    from spa.priors import strokes_inputs

    torch.set_num_threads(1)
    view, _ = prepare(rec_model())
    convs = [n.output[0] for n in view.model.graph.node if n.op_type == "Conv"]
    bns = [n for n in view.model.graph.node if n.op_type == "BatchNormalization"]
    after = [convs.index(n.input[0]) if n.input[0] in convs else -1 for n in bns]
    print(f"PP-OCRv4 rec: {len(convs)} Conv, {len(bns)} BatchNormalization; the BatchNorms follow Conv no. "
          f"{after} (of 0-{len(convs) - 1})")
    m = onnx.ModelProto()
    m.CopyFrom(view.model)
    del m.graph.output[:]
    m.graph.output.extend([onnx.ValueInfoProto(name=n.input[0]) for n in bns])
    net = onnx_to_torch(m)
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.tensor(strokes_inputs(view, 16, 0)[view.model.graph.input[0].name], requires_grad=True)
    for step in range(3):
        t0 = time.perf_counter()
        outs = net(x)
        sum(o.pow(2).mean() for o in outs).backward()
        print(f"step {step}: forward + backward of 16 inputs {time.perf_counter() - t0:.2f} s", flush=True)


if __name__ == "__main__":
    main()
