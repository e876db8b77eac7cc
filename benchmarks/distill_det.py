"""Label-free recovery of a real detector: PP-OCRv4 det (rapidocr-onnxruntime wheel, models/wild.py "ppocr_det")
pruned at 0.3 by data-free OBSPA, then `spa finetune --teacher` on unlabelled rendered pages.

Pages: 320x320 white, 4-7 text lines of 1-4 words (black, 16-30 px) at random positions, rendered by PIL;
preprocessed as rapidocr's detector does (/255, ImageNet mean/std, CHW).  Input fixed to (N, 3, 320, 320).
Distillation pages use GPL-3/GPL-2 words and the DejaVu fonts; the evaluation pages OTHER texts (Apache-2.0,
MPL-2.0) in OTHER fonts (Liberation, FreeFont).

Detections (kept simple, the same for every model): the probability map thresholded at 0.3 (DB's default),
8-connected components (scipy.ndimage.label) with at least 10 pixels, each an axis-aligned box grown on every
side by DB's "unclip" distance for a rectangle (area * 1.5 / perimeter; DB predicts shrunk text kernels).  F-score: boxes matched one-to-one greedily by IoU (highest first), a match
needs IoU >= 0.5; precision, recall and F pooled over all evaluation pages.  The main metric is the F-score
against the ORIGINAL model's own detections ("vs original"); "vs truth" is against the rendered lines' boxes
(the original's own F there shows the post-processing is sensible, not part of the goal).

    .venv/bin/python benchmarks/distill_det.py > benchmarks/distill_det.txt
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from distill_ocr import HELD_FONTS, HELD_TEXTS, TRAIN_FONTS, TRAIN_TEXTS, finetune_cli

import spa
from models import wild
from spa.verify import session

SIZE, THRESH, MIN_AREA, IOU = 320, 0.3, 10, 0.5
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def det_model() -> onnx.ModelProto:
    m = wild.load("ppocr_det", static=False)
    dims = m.graph.input[0].type.tensor_type.shape.dim  # (?, 3, ?, ?) -> (N, 3, 320, 320)
    dims[0].Clear()
    dims[0].dim_param = "N"
    for d in dims[2:]:
        d.Clear()
        d.dim_value = SIZE
    for vi in m.graph.output:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value <= 0:
                d.Clear()
    return m


def page(rng: np.random.Generator, words: list[str], fonts: list[str]) -> tuple[np.ndarray, list[tuple]]:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(img)
    boxes: list[tuple] = []
    for _ in range(int(rng.integers(4, 8))):
        f = ImageFont.truetype(f"/usr/share/fonts/truetype/{fonts[int(rng.integers(len(fonts)))]}",
                               int(rng.integers(16, 31)))
        k = int(rng.integers(len(words)))
        text = " ".join(words[k : k + int(rng.integers(1, 5))])
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=f)
        w, h = x1 - x0, y1 - y0
        if w >= SIZE - 8:
            continue
        for _try in range(20):
            px, py = int(rng.integers(4, SIZE - w - 4)), int(rng.integers(4, SIZE - h - 4))
            box = (px, py, px + w, py + h)
            if all(box[2] + 4 < b[0] or b[2] + 4 < box[0] or box[3] + 4 < b[1] or b[3] + 4 < box[1] for b in boxes):
                draw.text((px - x0, py - y0), text, font=f, fill="black")
                boxes.append(box)
                break
    a = (np.asarray(img, np.float32) / 255 - MEAN) / STD
    return a.transpose(2, 0, 1).astype(np.float32), boxes


def pages(texts: list[str], fonts: list[str], n: int, seed: int) -> tuple[np.ndarray, list[list[tuple]]]:
    words = [w for t in texts for w in Path("/usr/share/common-licenses", t).read_text().split()]
    rng = np.random.default_rng(seed)
    xs, truth = zip(*[page(rng, words, fonts) for _ in range(n)])
    return np.stack(xs), list(truth)


def detect(prob: np.ndarray) -> list[tuple]:
    from scipy import ndimage

    lab, _ = ndimage.label(prob > THRESH, structure=np.ones((3, 3)))
    out = []
    for k, sl in enumerate(ndimage.find_objects(lab), 1):
        if sl is not None and (lab[sl] == k).sum() >= MIN_AREA:
            x0, y0, x1, y1 = sl[1].start, sl[0].start, sl[1].stop, sl[0].stop
            grow = (x1 - x0) * (y1 - y0) * 1.5 / (2 * (x1 - x0 + y1 - y0))
            out.append((x0 - grow, y0 - grow, x1 + grow, y1 + grow))
    return out


def iou(a: tuple, b: tuple) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def fscore(pred: list[list[tuple]], ref: list[list[tuple]]) -> tuple[float, float, float]:
    tp = n_pred = n_ref = 0
    for p, r in zip(pred, ref):
        pairs = sorted(((iou(a, b), i, j) for i, a in enumerate(p) for j, b in enumerate(r)), reverse=True)
        used_p, used_r = set(), set()
        for v, i, j in pairs:
            if v < IOU:
                break
            if i not in used_p and j not in used_r:
                used_p.add(i)
                used_r.add(j)
        tp += len(used_p)
        n_pred += len(p)
        n_ref += len(r)
    prec, rec = tp / max(n_pred, 1), tp / max(n_ref, 1)
    return prec, rec, 2 * prec * rec / max(prec + rec, 1e-12)


def detections(model: onnx.ModelProto, x: np.ndarray) -> list[list[tuple]]:
    s = session(model, optimize=True)
    name = model.graph.input[0].name
    probs = np.concatenate([s.run(None, {name: x[i : i + 8]})[0] for i in range(0, len(x), 8)])
    return [detect(p[0]) for p in probs]


def main() -> None:
    n_pages = int(sys.argv[sys.argv.index("--pages") + 1]) if "--pages" in sys.argv else 256
    epochs = sys.argv[sys.argv.index("--epochs") + 1] if "--epochs" in sys.argv else "6"
    lr = sys.argv[sys.argv.index("--lr") + 1] if "--lr" in sys.argv else "1e-3"
    m = det_model()
    x_tr, _ = pages(TRAIN_TEXTS, TRAIN_FONTS, n_pages, seed=1)
    x_ev, truth = pages(HELD_TEXTS, HELD_FONTS, 64, seed=2)
    d = Path(tempfile.mkdtemp(prefix="distill_det_"))
    onnx.save(m, str(d / "orig.onnx"))
    t0 = time.perf_counter()
    pruned, pr = spa.prune(m, ratio=0.3, criterion="obspa")
    prune_s = time.perf_counter() - t0
    onnx.save(pruned, str(d / "pruned.onnx"))
    np.savez(d / "pages.npz", **{m.graph.input[0].name: x_tr})
    print(f"PP-OCRv4 det, input (N, 3, {SIZE}, {SIZE}); pruned at 0.3 by data-free obspa in {prune_s:.1f}s: params "
          f"{pr.before.params} -> {pr.after.params}, MACs kept {pr.after.macs / pr.before.macs:.2f}; "
          f"{sum(n.op_type == 'BatchNormalization' for n in m.graph.node)} BatchNormalization nodes (the rest folded)")
    print(f"distillation: {n_pages} unlabelled pages ({'+'.join(TRAIN_TEXTS)} words, DejaVu fonts); evaluation: "
          f"{len(truth)} pages, {sum(map(len, truth))} rendered lines ({'+'.join(HELD_TEXTS)}, "
          f"{', '.join(Path(f).stem for f in HELD_FONTS)})")
    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()}")
    ref = detections(m, x_ev)
    print(f"{'row':40s} {'F vs original':>13s} {'P':>6s} {'R':>6s} {'F vs truth':>11s}  wall s")

    def row(label: str, model: onnx.ModelProto, secs: float | None = None, note: str = "") -> None:
        det = detections(model, x_ev)
        p, r, f = fscore(det, ref)
        ft = fscore(det, truth)[2]
        print(f"{label:40s} {f:13.4f} {p:6.3f} {r:6.3f} {ft:11.4f}  {'' if secs is None else f'{secs:6.1f}'} {note}")
        sys.stdout.flush()

    row("original", m)
    row("pruned 0.3 (obspa data-free)", pruned)
    common = [str(d / "pruned.onnx"), "--teacher", str(d / "orig.onnx"), "--data", str(d / "pages.npz")]
    secs, load, _ = finetune_cli([*common, "-o", str(d / "bn.onnx"), "--epochs", "0", "-q"])
    row("+ BatchNorm re-estimation only", onnx.load(str(d / "bn.onnx")), secs, load)
    secs, load, log = finetune_cli([*common, "-o", str(d / "dist.onnx"), "--epochs", epochs, "--lr", lr,
                                    "--batch", "8"])
    row(f"+ distillation, {epochs} epochs, lr {lr}", onnx.load(str(d / "dist.onnx")), secs, load)
    print("    " + "\n    ".join(log.strip().splitlines()))


if __name__ == "__main__":
    main()
