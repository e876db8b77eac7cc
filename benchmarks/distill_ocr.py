"""Label-free recovery of PP-OCRv4 rec pruned at 0.5 by data-free OBSPA: `spa finetune --teacher`.

The teacher is the original model (rapidocr-onnxruntime wheel, input fixed to (N, 3, 48, 320) as in
benchmarks/obspa_ocr.py, whose rendering, preprocessing, CTC decoding and character accuracy this script reuses).

Distillation data (no labels are used): --lines segments of GPL-3 and GPL-2 (/usr/share/common-licenses),
rendered with six DejaVu fonts (Sans, Serif, Sans Mono, Sans Bold, Sans Oblique, Serif Condensed) in turn.
(--train-fonts wide: the same lines in 12 faces, those six and six more, listed in WIDE_FONTS.)
Held-out evaluation: segments of OTHER texts (Apache-2.0, MPL-2.0) rendered with OTHER fonts (Debian's
fonts-liberation: Liberation Sans/Serif/Mono; fonts-freefont-ttf: FreeSans/FreeSerif/FreeMono).
Validation (the only sets that chose a setting: the temperature, --sweep, and the augmentations): other GPL-3
segments in the distillation fonts ("valid."), and segments of yet other texts (LGPL-2.1, Artistic, BSD) in fonts
that neither the distillation nor the held-out set uses (Noto Sans, Noto Serif, Noto Serif Italic, DejaVu Sans
Condensed, DejaVu Serif Italic, DejaVu Sans Mono Oblique: "v.unseen"), a stand-in for the held-out kind of shift.

Rows: original; pruned only; pruned + BatchNorm re-estimation only (epochs 0); pruned + distillation.  Each
fine-tune runs as the user would (`python -m spa finetune ... --teacher`, a separate process, on all cores) and its
wall time and the load average around it are printed (the machine is shared with other jobs).

    .venv/bin/python benchmarks/distill_ocr.py > benchmarks/distill_ocr.txt
    (--sweep: temperatures 1, 2, 4 on shorter runs; --lines N, --epochs E, --lr LR, --temperature T;
     --augment "none;all": one distillation row per ';'-separated --augment value, run one after the other;
     --train-fonts "dejavu;wide": the distillation lines in the 6 DejaVu fonts and/or in 12 faces, a row each;
     --no-bn-row skips the BatchNorm-only row; --seed S: the obspa prune's and the sample order's seed, default 0)
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from obspa_ocr import char_accuracy, charset, rec_model, render, segments

import spa
from spa.finetune import TEMPERATURE

FONT_DIR = Path("/usr/share/fonts/truetype")
TRAIN_FONTS = ["dejavu/DejaVuSans.ttf", "dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSansMono.ttf",
               "dejavu/DejaVuSans-Bold.ttf", "dejavu/DejaVuSans-Oblique.ttf", "dejavu/DejaVuSerifCondensed.ttf"]
HELD_FONTS = ["liberation/LiberationSans-Regular.ttf", "liberation/LiberationSerif-Regular.ttf",
              "liberation/LiberationMono-Regular.ttf", "freefont/FreeSans.ttf", "freefont/FreeSerif.ttf",
              "freefont/FreeMono.ttf"]
# --train-fonts wide: the same number of lines spread over 12 faces (6 more, none of them held-out or validation
# faces): more variety of stroke width, width and style within the same budget of lines
WIDE_FONTS = [*TRAIN_FONTS, "dejavu/DejaVuSans-ExtraLight.ttf", "dejavu/DejaVuSerifCondensed-Bold.ttf",
              "dejavu/DejaVuSansMono-Bold.ttf", "noto/NotoSans-Bold.ttf", "noto/NotoSerifDisplay-Regular.ttf",
              "noto/NotoSansDisplay-Italic.ttf"]
# every DejaVu text face (21: TRAIN_FONTS' six and their light, bold, oblique, condensed and mono siblings; not the
# maths face): --fonts dejavu-all of distill_rec_heldout.py and (less the detector's selection faces) distill_det_heldout.py
DEJAVU_ALL = sorted(f"dejavu/{p.name}" for p in (FONT_DIR / "dejavu").glob("DejaVu*.ttf") if "Math" not in p.name)
# distill_rec_heldout.py / distill_det_heldout.py --fonts families / dejavu-all-families: the regular face of ten
# families from Debian font packages (apt-get install fonts-go fonts-inconsolata fonts-roboto fonts-open-sans
# fonts-linuxlibertine fonts-cantarell fonts-lato fonts-crosextra-caladea fonts-crosextra-carlito): sans, serif, slab
# and monospaced designs, none derived from a held-out or validation face (the URW base-35 fonts and their TeX Gyre
# versions, which FreeFont derives from, and croscore, Liberation's designs, are left out); found under /usr/share/fonts
# by file name
OTHER_FAMILIES = ["fonts-go/Go-Regular.ttf", "fonts-go/Go-Mono.ttf", "inconsolata/Inconsolata.otf",
                  "roboto/unhinted/RobotoTTF/Roboto-Regular.ttf", "open-sans/OpenSans-Regular.ttf",
                  "linux-libertine/LinLibertine_R.otf", "cantarell/Cantarell-Regular.otf", "lato/Lato-Regular.ttf",
                  "crosextra/Caladea-Regular.ttf", "crosextra/Carlito-Regular.ttf"]
VALID_FONTS = ["noto/NotoSans-Regular.ttf", "noto/NotoSerif-Regular.ttf", "dejavu/DejaVuSansCondensed.ttf",
               "dejavu/DejaVuSerif-Italic.ttf", "dejavu/DejaVuSansMono-Oblique.ttf", "noto/NotoSerif-Italic.ttf"]
TRAIN_TEXTS, HELD_TEXTS, VALID_TEXTS = ["GPL-3", "GPL-2"], ["Apache-2.0", "MPL-2.0"], ["LGPL-2.1", "Artistic", "BSD"]
N_EVAL = 120


def lines(texts: list[str], fonts: list[str], n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    segs = sorted({s for t in texts for s in segments(t)})
    pick = np.random.default_rng(seed).permutation(len(segs))[:n]
    # obspa_ocr.render looks fonts up in the DejaVu folder; a relative path reaches the others
    x = np.stack([render(segs[i], f"../{fonts[k % len(fonts)]}") for k, i in enumerate(pick)])
    return x, [segs[i] for i in pick]


def finetune_cli(args: list[str]) -> tuple[float, str, str]:
    """Wall seconds, CPU seconds and load averages of one `spa finetune` process, and its output."""
    load0 = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "spa", "finetune", *args], check=False, capture_output=True, text=True, cwd=ROOT)
    secs = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(r.stderr)
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    return secs, (f"cpu {cpu:.0f}s, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average "
                  f"{load0:.2f} before, {os.getloadavg()[0]:.2f} after"), r.stdout + r.stderr


def main() -> None:
    n_lines = int(sys.argv[sys.argv.index("--lines") + 1]) if "--lines" in sys.argv else 512
    m = rec_model()
    chars = charset(m)
    font_sets = (sys.argv[sys.argv.index("--train-fonts") + 1] if "--train-fonts" in sys.argv else "dejavu").split(";")
    if set(font_sets) - {"dejavu", "wide"}:
        raise SystemExit("--train-fonts: dejavu and/or wide, ';'-separated")
    x_tr = {f: lines(TRAIN_TEXTS, WIDE_FONTS if f == "wide" else TRAIN_FONTS, n_lines, seed=1)[0] for f in font_sets}
    x_val, t_val = lines(["GPL-3"], TRAIN_FONTS, N_EVAL, seed=2)  # may overlap the distillation lines
    x_ho, t_ho = lines(HELD_TEXTS, HELD_FONTS, N_EVAL, seed=3)
    x_v2, t_v2 = lines(VALID_TEXTS, VALID_FONTS, N_EVAL, seed=4)
    name = m.graph.input[0].name
    d = Path(tempfile.mkdtemp(prefix="distill_ocr_"))
    onnx.save(m, str(d / "orig.onnx"))
    t0 = time.perf_counter()
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
    pruned, pr = spa.prune(m, ratio=0.5, criterion="obspa", seed=seed)
    prune_s = time.perf_counter() - t0
    onnx.save(pruned, str(d / "pruned.onnx"))
    for f, x in x_tr.items():
        np.savez(d / f"lines_{f}.npz", **{name: x})
    print(f"PP-OCRv4 rec, input (N, 3, 48, 320); pruned at 0.5 by data-free obspa in {prune_s:.1f}s: params "
          f"{pr.before.params} -> {pr.after.params}, MACs kept {pr.after.macs / pr.before.macs:.2f}")
    print(f"distillation: {n_lines} unlabelled lines of {'+'.join(TRAIN_TEXTS)} in {len(TRAIN_FONTS)} DejaVu fonts "
          f"(dejavu) or in 12 faces ({', '.join(Path(f).stem for f in WIDE_FONTS)}: wide); "
          f"held-out: {len(t_ho)} lines of {'+'.join(HELD_TEXTS)} ({sum(map(len, t_ho))} chars) in "
          f"{', '.join(Path(f).stem for f in HELD_FONTS)}; validation: {len(t_val)} GPL-3 lines in the DejaVu fonts "
          f"(valid.) and {len(t_v2)} lines of {'+'.join(VALID_TEXTS)} in {', '.join(Path(f).stem for f in VALID_FONTS)} "
          f"(v.unseen)")
    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()}")

    def acc(model) -> tuple[float, float, float]:
        return (char_accuracy(model, x_ho, list(t_ho), chars), char_accuracy(model, x_val, list(t_val), chars),
                char_accuracy(model, x_v2, list(t_v2), chars))

    base = acc(m)
    print(f"{'row':52s} {'held-out':>9s} {'% orig':>7s} {'valid.':>8s} {'% orig':>7s} {'v.unseen':>8s} {'% orig':>7s}  wall s")

    def row(label: str, model, secs: float | None = None, note: str = "") -> None:
        a = acc(model)
        print(f"{label:52s} {a[0]:9.4f} {a[0] / base[0]:7.1%} {a[1]:8.4f} {a[1] / base[1]:7.1%} {a[2]:8.4f} "
              f"{a[2] / base[2]:7.1%}  {'' if secs is None else f'{secs:6.1f}'} {note}")
        sys.stdout.flush()

    row("original (teacher)", m)
    row("pruned 0.5 (obspa data-free)", pruned)
    common = [str(d / "pruned.onnx"), "--teacher", str(d / "orig.onnx")]
    if "--no-bn-row" not in sys.argv:
        secs, load, _ = finetune_cli([*common, "--data", str(d / f"lines_{font_sets[0]}.npz"), "-o", str(d / "bn.onnx"),
                                      "--epochs", "0", "-q"])
        row("+ BatchNorm re-estimation only", onnx.load(str(d / "bn.onnx")), secs, load)
    configs = ([(t, 4) for t in (1.0, 2.0, 4.0)] if "--sweep" in sys.argv
               else [(float(sys.argv[sys.argv.index("--temperature") + 1]) if "--temperature" in sys.argv else
                      TEMPERATURE, int(sys.argv[sys.argv.index("--epochs") + 1])
                      if "--epochs" in sys.argv else 8)])
    lr = sys.argv[sys.argv.index("--lr") + 1] if "--lr" in sys.argv else "1e-3"
    augments = (sys.argv[sys.argv.index("--augment") + 1] if "--augment" in sys.argv else "none").split(";")
    for (temp, epochs), fonts, aug in [(c, f, a) for c in configs for f in font_sets for a in augments]:
        out = d / f"distilled_T{temp}_e{epochs}_{fonts}_{aug.replace(',', '+')}.onnx"
        secs, load, log = finetune_cli([*common, "--data", str(d / f"lines_{fonts}.npz"), "-o", str(out), "--epochs",
                                        str(epochs), "--lr", lr, "--batch", "16", "--temperature", str(temp),
                                        "--augment", aug, "--seed", str(seed)])
        label = (f"+ distillation T={temp:g}, {epochs} epochs, lr {lr}, {fonts}"
                 + ("" if aug == "none" else f", augment {aug}") + (f", seed {seed}" if seed else ""))
        row(label, onnx.load(str(out)), secs, load)
        print("    " + "\n    ".join(log.strip().splitlines()))


if __name__ == "__main__":
    main()
