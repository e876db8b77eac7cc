"""Prune "any time" on real data that ships offline (scikit-learn's 8×8 digits, 1797 images):

  (a) train → prune (no fine-tuning)
  (b) train → prune → fine-tune through the ONNX → PyTorch round trip (converters/onnx_to_torch.py)
  (c) prune at initialisation → train the small model (same epochs as the baseline)

at ratios 0.3 / 0.5 / 0.7 (spa prune, L1, local), against the unpruned baseline; accuracy on a held-out
test split, evaluated with onnxruntime on the ONNX files. PyTorch source model only (Keras: not yet).

    .venv/bin/python benchmarks/anytime_digits.py > benchmarks/anytime_digits.txt
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spa  # noqa: E402
from converters.onnx_to_torch import onnx_to_torch  # noqa: E402
from spa import graph  # noqa: E402
from spa.verify import session  # noqa: E402

EPOCHS, FT_EPOCHS, SEED = 40, 10, 0


def data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.3, random_state=SEED, stratify=d.target)
    return xtr, xte, ytr.astype(np.int64), yte.astype(np.int64)


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.features(x))


def train(model: nn.Module, xtr, ytr, epochs: int, lr: float = 3e-3) -> nn.Module:
    g = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model


def export(model: nn.Module, path: Path) -> Path:
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    return path


def accuracy(path: Path, xte, yte) -> float:
    import onnx

    out = session(onnx.load(str(path))).run(None, {"input": xte})[0]
    return float((out.argmax(1) == yte).mean())


def prune_to(src: Path, dst: Path, ratio: float) -> dict:
    pruned, rep = spa.prune(str(src), ratio=ratio, criterion="l1")
    graph.save_atomic(pruned, dst)
    return {"params": rep.after.params / rep.before.params, "macs": rep.after.macs / rep.before.macs}


def finetune_onnx(src: Path, dst: Path, xtr, ytr, epochs: int, lr: float) -> None:
    import onnx

    m = onnx_to_torch(onnx.load(str(src)))
    train(m, xtr, ytr, epochs, lr=lr)
    export(m, dst)


def main() -> None:
    torch.manual_seed(SEED)
    xtr, xte, ytr, yte = data()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        base = export(train(DigitsCNN(), xtr, ytr, EPOCHS), d / "trained.onnx")
        torch.manual_seed(SEED + 1)
        init = export(DigitsCNN().eval(), d / "init.onnx")
        acc0 = accuracy(base, xte, yte)
        print(f"# digits: {len(xtr)} train / {len(xte)} test images (8x8), CNN 3 conv + 2 linear, {EPOCHS} epochs Adam")
        print("# spa prune --criterion l1 (local); accuracy with onnxruntime on the test split")
        print(f"baseline (unpruned): accuracy {acc0:.4f}")
        print(f"{'ratio':>5s} {'params':>8s} {'MACs':>8s} {'(a) prune only':>15s} {'(b) prune+ft':>13s} {'(c) prune@init+train':>21s}")
        for r in (0.3, 0.5, 0.7):
            info = prune_to(base, d / f"a{r}.onnx", r)
            acc_a = accuracy(d / f"a{r}.onnx", xte, yte)
            finetune_onnx(d / f"a{r}.onnx", d / f"b{r}.onnx", xtr, ytr, FT_EPOCHS, lr=1e-3)
            acc_b = accuracy(d / f"b{r}.onnx", xte, yte)
            prune_to(init, d / f"c0_{r}.onnx", r)
            finetune_onnx(d / f"c0_{r}.onnx", d / f"c{r}.onnx", xtr, ytr, EPOCHS, lr=3e-3)
            acc_c = accuracy(d / f"c{r}.onnx", xte, yte)
            print(f"{r:5.1f} {info['params']:7.3f}x {info['macs']:7.3f}x {acc_a:15.4f} {acc_b:13.4f} {acc_c:21.4f}")
    print(f"# fine-tuning (b): {FT_EPOCHS} epochs Adam lr 1e-3 on the pruned model brought back to torch; "
          f"(c): {EPOCHS} epochs lr 3e-3 from a pruned random init; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
