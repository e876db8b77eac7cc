"""OBSPA vs magnitude and calibration baselines on a real pretrained model: PP-OCRv4 text recognition, shipped as
ONNX in the rapidocr-onnxruntime wheel, pruned WITHOUT fine-tuning.

Evaluation data: lines of a real text that ships with the system (/usr/share/common-licenses/GPL-3), cut at word
boundaries into segments of at most 16 characters, rendered black on white with the DejaVu fonts
(Sans / Serif / Mono / Sans Bold in turn) by PIL, preprocessed as rapidocr does (height 48, width proportional,
/255, −0.5, /0.5, right-padded; here to a fixed width of 320 so the model has static shapes), CTC greedy decoding
with the character list from the model's metadata_props ("character"; blank first, space last, as rapidocr).
Metric: character accuracy 1 − Σ edit distance / Σ reference length over the evaluation lines. Calibration
lines (act, wanda, obspa calib) are other segments of the same text, disjoint from the evaluation ones.

    .venv/bin/python benchmarks/obspa_ocr.py > benchmarks/obspa_ocr.txt
    (--spread-only: the header and the seed-spread section only; --rows l2,bn: the header and those table rows)
"""

from __future__ import annotations

import glob
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spa
from spa.calib import DATA_FREE_SAMPLES
from spa.verify import session

RATIOS = (0.1, 0.2, 0.3, 0.5)
WIDTH, HEIGHT, MAXLEN = 320, 48, 16
N_EVAL, N_CALIB = 64, 32
SEEDS = 8
FONTS = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf"]
ROWS = [  # label, criterion, data-free source, uses calibration data
    ("l1", "l1", None, False),
    ("l2", "l2", None, False),
    ("bn", "bn", None, False),
    ("act (calib)", "act", None, True),
    ("wanda (calib)", "wanda", None, True),
    ("taylor (calib)", "taylor", None, True),
    ("snip (calib)", "snip", None, True),
    ("obspa noise", "obspa", "noise", False),
    ("obspa structured", "obspa", "structured", False),
    ("obspa binary (default)", "obspa", "binary", False),
    ("obspa binary + re-fit", "obspa", "binary", False),
    ("obspa bn", "obspa", "bn", False),
    ("obspa calib, per-layer only", "obspa", None, True),
    ("obspa calib", "obspa", None, True),
]


def rec_model() -> onnx.ModelProto:
    import rapidocr_onnxruntime

    p = glob.glob(str(Path(rapidocr_onnxruntime.__file__).parent / "models" / "*rec*.onnx"))[0]
    m = onnx.load(p)
    dims = m.graph.input[0].type.tensor_type.shape.dim  # (N, 3, ?, ?) → (N, 3, 48, 320)
    dims[2].Clear()
    dims[2].dim_value = HEIGHT
    dims[3].Clear()
    dims[3].dim_value = WIDTH
    return m


def charset(m: onnx.ModelProto) -> list[str]:
    chars = {p.key: p.value for p in m.metadata_props}["character"].splitlines()
    return ["blank", *chars, " "]


def segments(licence: str = "GPL-3", maxlen: int | None = None) -> list[str]:
    """A licence from /usr/share/common-licenses cut at word boundaries into lines of at most `maxlen`
    (MAXLEN) characters. The other OCR benchmarks take their held-out texts from here too."""
    maxlen = maxlen or MAXLEN
    words = Path("/usr/share/common-licenses", licence).read_text().split()
    out, cur = [], ""
    for w in words:
        if len(cur) + 1 + len(w) > maxlen:
            if cur:
                out.append(cur)
            cur = w[:maxlen]
        else:
            cur = f"{cur} {w}" if cur else w
    return out


def render(text: str, font: str) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    f = ImageFont.truetype(font if "/" in font else f"/usr/share/fonts/truetype/dejavu/{font}", 32)
    x0, y0, x1, y1 = f.getbbox(text)
    img = Image.new("RGB", (x1 - x0 + 16, 48), "white")
    ImageDraw.Draw(img).text((8 - x0, (48 - (y1 - y0)) // 2 - y0), text, font=f, fill="black")
    w = min(WIDTH, int(np.ceil(HEIGHT * img.width / img.height)))
    a = np.asarray(img.resize((w, HEIGHT), Image.BILINEAR), dtype=np.float32).transpose(2, 0, 1) / 255
    out = np.zeros((3, HEIGHT, WIDTH), np.float32)
    out[:, :, :w] = (a - 0.5) / 0.5
    return out


def dataset() -> tuple[np.ndarray, list[str], np.ndarray]:
    segs = segments()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(segs))
    ev, ca = idx[:N_EVAL], idx[N_EVAL : N_EVAL + N_CALIB]
    x_ev = np.stack([render(segs[i], FONTS[k % len(FONTS)]) for k, i in enumerate(ev)])
    x_ca = np.stack([render(segs[i], FONTS[k % len(FONTS)]) for k, i in enumerate(ca)])
    return x_ev, [segs[i] for i in ev], x_ca


def edit(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(m: onnx.ModelProto, x: np.ndarray, truth: list[str], chars: list[str]) -> float:
    s = session(m, optimize=True, threads=2)
    name = m.graph.input[0].name
    probs = np.concatenate([s.run(None, {name: x[i : i + 16]})[0] for i in range(0, len(x), 16)])
    errs = 0
    for p, t in zip(probs.argmax(-1), truth):
        keep = np.ones(len(p), bool)
        keep[1:] = p[1:] != p[:-1]
        text = "".join(chars[k] for k in p[keep & (p != 0)])
        errs += edit(text, t)
    return 1 - errs / sum(len(t) for t in truth)


def main() -> None:
    m = rec_model()
    chars = charset(m)
    x_ev, truth, x_ca = dataset()
    base = char_accuracy(m, x_ev, truth, chars)
    rep = spa.analyze(m)
    print(f"PP-OCRv4 rec (rapidocr-onnxruntime), input fixed to (N, 3, {HEIGHT}, {WIDTH}); {len(chars)} classes")
    print(f"groups: {len(rep.analysis.groups)}, prunable {len(rep.analysis.prunable)}; params {rep.stats.params}, "
          f"MACs {rep.stats.macs}")
    print(f"evaluation {len(truth)} GPL-3 segments (≤{MAXLEN} chars, {sum(map(len, truth))} chars), calibration "
          f"{len(x_ca)} other segments; fonts {', '.join(FONTS)}")
    print(f"original character accuracy: {base:.4f}")
    calib = {m.graph.input[0].name: x_ca}
    only = sys.argv[sys.argv.index("--rows") + 1].split(",") if "--rows" in sys.argv else None
    if "--spread-only" not in sys.argv:
        table(m, chars, x_ev, truth, calib, only)
    if only is None:
        spread(m, chars, x_ev, truth, base)


def table(m, chars, x_ev, truth, calib, only: list[str] | None = None) -> None:
    print(f"{'criterion':30s}" + "".join(f"{'r=' + str(r):>9s}" for r in RATIOS) + f"{'prune s':>9s}  MACs kept")
    for label, crit, source, uses_calib in ROWS:
        if only is not None and label not in only:
            continue
        accs, secs, macs = [], [], []
        for r in RATIOS:
            t0 = time.perf_counter()
            pruned, pr = spa.prune(m, ratio=r, criterion=crit, calib=calib if uses_calib else None,
                                   calib_source=source, compensate="no update" not in label,
                                   refit=False if "per-layer" in label else True if "re-fit" in label else None)
            secs.append(time.perf_counter() - t0)
            macs.append(pr.after.macs / pr.before.macs)
            accs.append(char_accuracy(pruned, x_ev, truth, chars))
        print(f"{label:30s}" + "".join(f"{a:9.4f}" for a in accs) + f"{np.mean(secs):9.2f}  "
              + "/".join(f"{v:.2f}" for v in macs))
        sys.stdout.flush()


def spread(m, chars, x_ev, truth, base) -> None:
    # how much the data-free sources depend on the synthetic sample (the seed) at ratio 0.2, and on how many
    # synthetic samples there are
    print(f"seed spread at r=0.2 (seeds 0-{SEEDS - 1}): character accuracy, and its fraction of the original's")
    for source, n in (("noise", None), ("structured", None), ("binary", 32), ("binary", None)):
        accs = []
        for seed in range(SEEDS):
            pruned, _ = spa.prune(m, ratio=0.2, criterion="obspa", calib_source=source, seed=seed, calib_samples=n)
            accs.append(char_accuracy(pruned, x_ev, truth, chars))
        label = f"obspa {source}, {n or DATA_FREE_SAMPLES} samples"
        print(f"  {label:30s}" + "".join(f"{a:7.4f}" for a in accs)
              + f"   min {min(accs) / base:.1%} mean {np.mean(accs) / base:.1%} of the original")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
