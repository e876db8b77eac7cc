"""A held-out check of the data-free sources on photographs: the "binary" default was chosen on two benchmarks
whose inputs are documents and handwriting (benchmarks/obspa_ocr.txt, obspa_digits.txt). Does it cost anything
on a pretrained model that looks at photos?

Model: NudeNet v3's YOLOv8n detector (PyTorch/Ultralytics → ONNX, pretrained, shipped in the nudenet wheel;
input RGB / 255 at 320×320). Data: 64 random crops (a quarter to all of the shorter side, resized to 320×320) of
12 photographs that ship inside the scikit-image wheel (skimage.data: astronaut, chelsea, coffee, rocket, ...).
No labels offline, so fidelity to the original's outputs: the mean per-image correlation of the detection
head's class logits (log p/(1-p) of the score rows over all 2100 anchors), the F1 of the (anchor, class) pairs
scoring > 0.25 (the detections before NMS), and the mean absolute change of the box rows, in pixels, over the
anchors where the original scores > 0.25. Pruned WITHOUT fine-tuning.

    .venv/bin/python benchmarks/obspa_photos.py > benchmarks/obspa_photos.txt   (pip install scikit-image)
    .venv/bin/python benchmarks/obspa_photos.py --samples 19,32,48,128   (the "binary" seed spread at r=0.2 with
        that many synthetic samples each: benchmarks/obspa_cost_budget.txt)
    .venv/bin/python benchmarks/obspa_photos.py --sources strokes,binary   (only the seed spread at r=0.2, of
        those data-free sources)
    .venv/bin/python benchmarks/obspa_photos.py --calibrated   (obspa --calib on 32 other crops: "calib" against
        "calib-prior")
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spa
from models import wild
from spa.verify import session

RATIOS = (0.1, 0.2, 0.3)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins",
          "moon", "brick", "grass", "gravel", "hubble_deep_field", "retina")
N, SIZE = 64, 320
ROWS = [("l1", "l1", None), ("obspa noise", "obspa", "noise"), ("obspa structured", "obspa", "structured"),
        ("obspa binary (default)", "obspa", "binary")]


def crops(n: int = N, seed: int = 0) -> np.ndarray:
    """`n` random crops of the photographs (seed 0: the evaluated ones; --calibrated draws its own with seed 1)."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    imgs = []
    for name in PHOTOS:
        a = np.asarray(getattr(data, name)())
        imgs.append(np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3])
    out = np.zeros((n, 3, SIZE, SIZE), np.float32)
    for i in range(n):
        a = imgs[i % len(imgs)]
        h, w = a.shape[:2]
        s = int(rng.uniform(0.25, 1.0) * min(h, w))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        im = Image.fromarray(a[y:y + s, x:x + s].astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR)
        out[i] = np.asarray(im, np.float32).transpose(2, 0, 1) / 255
    return out


def outputs(m, x: np.ndarray) -> np.ndarray:
    s = session(m, optimize=True, threads=2)
    name = m.graph.input[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 8]})[0] for i in range(0, len(x), 8)])


def fidelity(o: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """Per-image Pearson correlation of the class logits (log p/(1-p), clipped at 1e-6), the F1 of the
    (anchor, class) pairs that score > 0.25, and the mean |box change| in pixels on the original's hits."""
    def logit(v):
        v = np.clip(v, 1e-6, 1 - 1e-6)
        return np.log(v / (1 - v))

    a, b = logit(o[:, 4:]).reshape(len(o), -1), logit(p[:, 4:]).reshape(len(p), -1)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    corr = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    ho, hp = o[:, 4:] > 0.25, p[:, 4:] > 0.25
    f1 = 2 * np.sum(ho & hp) / max(1, ho.sum() + hp.sum())
    hit = ho.any(axis=1)  # (N, anchors)
    box = np.abs(o[:, :4] - p[:, :4]).transpose(0, 2, 1)[hit]
    return float(corr.mean()), float(f1), float(box.mean()) if len(box) else float("nan")


def model() -> onnx.ModelProto:
    m = wild.load("nudenet")  # (1, 3, 320, 320); batch made symbolic to evaluate in batches
    for v in (*m.graph.input, *m.graph.output):
        d = v.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_param = "N"
    return m


def spread(m, x: np.ndarray, o: np.ndarray, source: str, samples: int | None = None) -> list[float]:
    """Class-logit correlation at r=0.2 for seeds 0-3 (`samples`: synthetic samples, default spa's)."""
    return [fidelity(o, outputs(spa.prune(m, ratio=0.2, criterion="obspa", calib_source=source, seed=s,
                                          calib_samples=samples)[0], x))[0] for s in range(4)]


def allocations(m, x: np.ndarray, o: np.ndarray) -> None:
    """The data-free default's allocations side by side at 0.1-0.3, seeds 0-3 (branch selfcheck: a model and domain
    the probed cap was not chosen on): local; the OBS-cost plan at cap 1.1 (the default before, spa.probe off) and
    at 1.5 (`--allocate energy`); spa's default (the probed cap). Class-logit correlation, worst / mean."""
    from spa import probe

    def at(r: float, s: int, how: str) -> tuple[float, str]:
        before = probe.MAX_BYTES
        probe.MAX_BYTES = 0 if how == "cap 1.1" else before  # above every model: the probe is skipped, cap 1.1
        try:
            kw = {"local": {"allocation": "local"}, "cap 1.5": {"allocation": "energy"}}.get(how, {})
            pruned, rep = spa.prune(m, ratio=r, criterion="obspa", seed=s, **kw)
        finally:
            probe.MAX_BYTES = before
        got = (rep.calibration or {}).get("allocation")
        return fidelity(o, outputs(pruned, x))[0], f"{got['cap']:g}" if got else "-"

    print("data-free obspa by allocation, seeds 0-3: class-logit correlation per seed, worst / mean (probed: the cap "
          "each seed's probe chose)")
    for r in (0.1, 0.2, 0.3):
        for how in ("local", "cap 1.1", "cap 1.5", "default (probed)"):
            got = [at(r, s, how) for s in range(4)]
            cs = [c for c, _ in got]
            caps = ",".join(k for _, k in got) if how.startswith("default") else ""
            print(f"  r={r} {how:17s}" + "".join(f"{c:8.4f}" for c in cs) + f"   worst {min(cs):.4f}  mean "
                  f"{np.mean(cs):.4f}" + (f"  (caps {caps})" if caps else ""), flush=True)


def calibrated(m, x: np.ndarray, o: np.ndarray, seeds: range = range(2)) -> None:
    """obspa --calib on 32 other crops of the same photographs (seed 1), the calibration images alone ("calib")
    against them and 64 images of the strokes prior ("calib-prior", the --calib default on images since branch
    calprior, chosen on the OCR selection sets): a photo model and inputs that choice never saw. Seeds 0-1 (the
    rows the statistics and the re-fit sample), class-logit correlation, F1 of the hits, prune seconds."""
    name = m.graph.input[0].name
    cal = {name: crops(32, seed=1)}
    print("obspa --calib 32 (other crops of the same photographs): class-logit correlation / F1 of the hits > 0.25 "
          "per seed, worst / mean correlation, mean prune s")
    for r in (0.1, 0.2, 0.3, 0.5):
        for source in ("calib", "calib-prior"):
            got, secs = [], []
            for s in seeds:
                t0 = time.perf_counter()
                pruned, rep = spa.prune(m, ratio=r, criterion="obspa", calib=cal, calib_source=source, seed=s)
                secs.append(time.perf_counter() - t0)
                got.append(fidelity(o, outputs(pruned, x))[:2])
            cs = [c for c, _ in got]
            print(f"  r={r} {source:12s}" + "".join(f"  {c:.4f} / {f:.3f}" for c, f in got)
                  + f"   worst {min(cs):.4f}  mean {np.mean(cs):.4f}  {np.mean(secs):6.1f} s", flush=True)


def main() -> None:
    if sys.argv[1:] == ["--calibrated"]:
        m = model()
        x = crops()
        calibrated(m, x, outputs(m, x))
        return
    if sys.argv[1:] == ["--allocations"]:
        m = model()
        x = crops()
        allocations(m, x, outputs(m, x))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--samples":
        m = model()
        x = crops()
        o = outputs(m, x)
        print("obspa binary at r=0.2, seeds 0-3: class-logit correlation, by synthetic samples")
        for n in map(int, sys.argv[2].split(",")):
            cs = spread(m, x, o, "binary", n)
            print(f"  {n:3d} samples" + "".join(f"{c:8.4f}" for c in cs) + f"   mean {np.mean(cs):.4f}  worst "
                  f"{min(cs):.4f}", flush=True)
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--sources":
        m = model()
        x = crops()
        o = outputs(m, x)
        print("seed spread at r=0.2 (seeds 0-3): class-logit correlation")
        for source in sys.argv[2].split(","):
            cs = spread(m, x, o, source)
            print(f"  obspa {source:11s}" + "".join(f"{c:8.4f}" for c in cs) + f"   mean {np.mean(cs):.4f}  worst "
                  f"{min(cs):.4f}", flush=True)
        return
    m = model()
    x = crops()
    o = outputs(m, x)
    rep = spa.analyze(m)
    print(f"NudeNet v3 YOLOv8n 320x320 (nudenet wheel); groups {len(rep.analysis.groups)}, prunable "
          f"{len(rep.analysis.prunable)}; params {rep.stats.params}, MACs {rep.stats.macs}")
    print(f"{N} crops of {len(PHOTOS)} skimage.data photographs; original: {int((o[:, 4:].max(1) > 0.25).sum())} "
          "anchors score > 0.25")
    print("per ratio: class-logit correlation / F1 of the hits > 0.25 / mean |box change| px on the original's hits")
    print(f"{'criterion':24s}" + "".join(f"{'r=' + str(r):>24s}" for r in RATIOS) + f"{'prune s':>9s}")
    for label, crit, source in ROWS:
        cells, secs = [], []
        for r in RATIOS:
            t0 = time.perf_counter()
            pruned, _ = spa.prune(m, ratio=r, criterion=crit, calib_source=source)
            secs.append(time.perf_counter() - t0)
            c, f, b = fidelity(o, outputs(pruned, x))
            cells.append(f"{c:.4f} / {f:.3f} / {b:5.2f}")
        print(f"{label:24s}" + "".join(f"{c:>24s}" for c in cells) + f"{np.mean(secs):9.2f}")
        sys.stdout.flush()
    print("seed spread at r=0.2 (seeds 0-3): class-logit correlation")
    for source in ("structured", "binary"):
        cs = spread(m, x, o, source)
        print(f"  obspa {source:11s}" + "".join(f"{c:8.4f}" for c in cs) + f"   mean {np.mean(cs):.4f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
