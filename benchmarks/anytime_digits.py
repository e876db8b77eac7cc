"""Prune "any time" on real data that ships offline (scikit-learn's 8×8 digits, 1797 images):

  (a) train → prune (no fine-tuning)
  (b) train → prune → fine-tune through the ONNX → PyTorch round trip (spa/onnx_to_torch.py)
  (c) prune at initialisation → train the small model (same epochs as the baseline)

at ratios 0.3 / 0.5 / 0.7 (spa prune, L1, local), against the unpruned baseline; accuracy on a held-out
test split, evaluated with onnxruntime on the ONNX files. The source model is trained in PyTorch, and again
in Keras (exported with tf2onnx: NHWC input, folded BatchNorm); fine-tuning and training after pruning
always go through the ONNX → PyTorch round trip, whatever the source framework.

    .venv/bin/python benchmarks/anytime_digits.py [--source torch|keras|both] > benchmarks/anytime_digits.txt
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
from spa.onnx_to_torch import onnx_to_torch  # noqa: E402
from spa import modelfile  # noqa: E402
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

    m = onnx.load(str(path))
    x = xte if m.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 1 else xte.transpose(0, 2, 3, 1)
    out = session(m).run(None, {m.graph.input[0].name: x})[0]
    return float((out.argmax(1) == yte).mean())


def prune_to(src: Path, dst: Path, ratio: float) -> dict:
    pruned, rep = spa.prune(str(src), ratio=ratio, criterion="l1")
    modelfile.save_atomic(pruned, dst)
    return {"params": rep.after.params / rep.before.params, "macs": rep.after.macs / rep.before.macs}


def finetune_onnx(src: Path, dst: Path, xtr, ytr, epochs: int, lr: float) -> None:
    import onnx

    proto = onnx.load(str(src))
    nhwc = proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value != 1
    m = onnx_to_torch(proto)
    train(m, xtr.transpose(0, 2, 3, 1).copy() if nhwc else xtr, ytr, epochs, lr=lr)
    example = torch.zeros(1, 8, 8, 1) if nhwc else torch.zeros(1, 1, 8, 8)
    torch.onnx.export(m, (example,), str(dst), dynamo=False, opset_version=17, input_names=[proto.graph.input[0].name],
                      dynamic_axes={proto.graph.input[0].name: {0: "N"}})


def keras_models(xtr, ytr, d: Path) -> tuple[Path, Path]:
    """The same CNN in Keras (NHWC), trained for EPOCHS, and a fresh initialisation; both exported."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from converters.keras_export import keras_to_onnx

    def build():
        keras.utils.set_random_seed(SEED)
        L = keras.layers
        inp = keras.Input((8, 8, 1))
        h = inp
        for i, (c, pool) in enumerate(((32, False), (64, True), (64, True))):
            h = L.Conv2D(c, 3, padding="same")(h)
            h = L.BatchNormalization()(h)
            h = L.ReLU()(h)
            if pool:
                h = L.MaxPooling2D(2)(h)
        h = L.Flatten()(h)
        h = L.Dense(64, activation="relu")(h)
        return keras.Model(inp, L.Dense(10)(h))

    init = keras_to_onnx(build(), d / "k_init.onnx")
    m = build()
    m.compile(optimizer=keras.optimizers.Adam(3e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(xtr.transpose(0, 2, 3, 1), ytr, batch_size=64, epochs=EPOCHS, verbose=0, shuffle=True)
    return keras_to_onnx(m, d / "k_trained.onnx"), init


def table(name: str, base: Path, init: Path, d: Path, xtr, xte, ytr, yte) -> None:
    print(f"## source: {name}")
    print(f"baseline (unpruned): accuracy {accuracy(base, xte, yte):.4f}")
    print(f"{'ratio':>5s} {'params':>8s} {'MACs':>8s} {'(a) prune only':>15s} {'(b) prune+ft':>13s} {'(c) prune@init+train':>21s}")
    for r in (0.3, 0.5, 0.7):
        info = prune_to(base, d / f"{name}_a{r}.onnx", r)
        acc_a = accuracy(d / f"{name}_a{r}.onnx", xte, yte)
        finetune_onnx(d / f"{name}_a{r}.onnx", d / f"{name}_b{r}.onnx", xtr, ytr, FT_EPOCHS, lr=1e-3)
        acc_b = accuracy(d / f"{name}_b{r}.onnx", xte, yte)
        prune_to(init, d / f"{name}_c0_{r}.onnx", r)
        finetune_onnx(d / f"{name}_c0_{r}.onnx", d / f"{name}_c{r}.onnx", xtr, ytr, EPOCHS, lr=3e-3)
        acc_c = accuracy(d / f"{name}_c{r}.onnx", xte, yte)
        print(f"{r:5.1f} {info['params']:7.3f}x {info['macs']:7.3f}x {acc_a:15.4f} {acc_b:13.4f} {acc_c:21.4f}", flush=True)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--source", choices=["torch", "keras", "both"], default="both")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    xtr, xte, ytr, yte = data()
    t0 = time.perf_counter()
    print(f"# digits: {len(xtr)} train / {len(xte)} test images (8x8), CNN 3 conv + 2 linear, {EPOCHS} epochs Adam")
    print("# spa prune --criterion l1 (local); accuracy with onnxruntime on the test split")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        if args.source in ("torch", "both"):
            base = export(train(DigitsCNN(), xtr, ytr, EPOCHS), d / "trained.onnx")
            torch.manual_seed(SEED + 1)
            init = export(DigitsCNN().eval(), d / "init.onnx")
            table("torch", base, init, d, xtr, xte, ytr, yte)
        if args.source in ("keras", "both"):
            base, init = keras_models(xtr, ytr, d)
            table("keras", base, init, d, xtr, xte, ytr, yte)
    print(f"# fine-tuning (b): {FT_EPOCHS} epochs Adam lr 1e-3 on the pruned model brought back to torch; "
          f"(c): {EPOCHS} epochs lr 3e-3 from a pruned random init; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
