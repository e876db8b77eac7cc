"""Label-free distillation of PP-OCRv4 rec scored on benchmarks/generalise.py's ocr_rec HELD-OUT distributions, so
that benchmarks/accuracy.md's "distilled" column sits beside the data-free and calibrated columns on the same inputs.

Prune: spa's data-free default (`criterion="obspa"`, no calibration: the "strokes" prior, the OBS-cost allocation up
to 0.3, local above), through generalise.prune_with's "obspa-default", which is what produced generalise_ocr_rec.txt's
"obspa-strokes" rows since branch energydef (the params/MACs kept and the pruned-only scores printed here as comments
reproduce those rows; prune_with's "obspa-strokes" itself is local since branch minilmcal).
Distil: `python -m spa finetune PRUNED --teacher ORIGINAL --data lines.npz -o OUT` in a separate process, as a user
runs it, on the distillation data and settings of benchmarks/distill_ocr.py (its functions imported): 512 unlabelled
lines, segments of GPL-3 and GPL-2 rendered in its six DejaVu faces (TRAIN_FONTS, sample seed 1), temperature 2,
lr 2e-3, batch 16, no augmentation, 14 epochs (what distill_ocr.txt's 14-epoch rows ran: lr, temperature and
augmentation chosen on distill_ocr's validation sets, the epochs sized to its 10-minute budget on 2 cores); the
fine-tune's --seed is the prune's seed, as in distill_ocr.py. distill_ocr's "wide" font set (chosen there on its
validation sets) is NOT used: it holds Noto Sans Bold and Noto Sans Display Italic, faces of the Noto Sans family
whose Regular face renders the held-out "numbers" distribution here.
Evaluate: generalise.ocr_rec()'s held-out distributions and metric (serif, mono-blur, sans-noise, inverted, numbers:
64 lines each of Apache-2.0 segments or random numbers in Liberation Serif/Sans, FreeMono, FreeSerif, Noto Sans;
raw character accuracy as generalise prints it). Nothing here is chosen on these rows. The script checks, and
prints, that no held-out font file or family is among the distillation fonts and how many held-out lines appear
verbatim among the distillation lines (short segments of two licences can coincide).

Output: R lines in generalise.py's format with method "distill" (accuracy_table.py reads them for the "distilled"
column); as comments the pruned-only scores, each fine-tune's wall and CPU seconds, the load average before and
after it and spa's own log. `--summary FILE` prints FILE's rows as a table ("row" / "original" / "pruned" / "+" lines,
shown in accuracy.md's distillation section): % of the original per distribution before distillation
(generalise_ocr_rec.txt's data-free rows of the same seeds) and after.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill_rec_heldout.py [--ratios 0.5,0.3] [--seeds 0] \
        > benchmarks/distill_rec_heldout.txt      (more: --ratios R --seeds S --no-header >> the same file)
    .venv/bin/python benchmarks/distill_rec_heldout.py --summary benchmarks/distill_rec_heldout.txt \
        >> benchmarks/distill_rec_heldout.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill_ocr import TRAIN_FONTS, TRAIN_TEXTS, finetune_cli, lines
from generalise import OCR_HELDOUT, ocr_rec, prune_with

N_LINES, SAMPLE_SEED = 512, 1  # distill_ocr.py's distillation set
EPOCHS, LR, BATCH, TEMPERATURE = 14, "2e-3", 16, 2.0  # distill_ocr.txt's 14-epoch rows
METHOD = "distill"


def family(font_file: str) -> str:
    """'NotoSans-Regular.ttf' -> 'notosans', 'DejaVuSans-Bold.ttf' -> 'dejavusans': faces of one family compare equal."""
    return Path(font_file).stem.split("-")[0].lower()


def leak_check(texts: list[str], heldout: dict[str, list[str]]) -> list[str]:
    """Comment lines: held-out fonts (files and families) and held-out lines among the distillation's."""
    train_files = {Path(f).name for f in TRAIN_FONTS}
    held_files = {f for f, _, _ in OCR_HELDOUT.values()}
    same_files = train_files & held_files
    same_families = {family(f) for f in train_files} & {family(f) for f in held_files}
    if same_files or same_families:
        raise SystemExit(f"held-out fonts in the distillation data: {sorted(same_files | same_families)}")
    train = set(texts)
    out = [(f"# check: distillation fonts {', '.join(sorted(train_files))}; held-out fonts "
            f"{', '.join(sorted(held_files))}: no file and no family in common")]
    for d, held in heldout.items():
        common = sorted(set(held) & train)
        out.append(f"# check: {d}: {len(common)} of its {len(held)} lines also among the {len(texts)} distillation "
                   f"lines (texts {'+'.join(TRAIN_TEXTS)} vs held-out Apache-2.0 segments / random numbers)"
                   + (f": {common}" if common else ""))
    return out


def summary(path: Path) -> list[str]:
    """The table of a raw file (accuracy_table.py shows it in its distillation section): % of the original's accuracy
    per held-out distribution before (generalise_ocr_rec.txt's data-free rows, the same seeds) and after distillation,
    and the worst over the distributions."""
    from accuracy_table import DATA_FREE, read

    rec, base = read([path, Path(__file__).resolve().parent / "generalise_ocr_rec.txt"])
    dists = list(OCR_HELDOUT)
    out = [f"{'row':42s} " + " ".join(f"{d:>10s}" for d in dists) + f" {'worst':>7s}",
           f"{'original (teacher), raw accuracy':42s} " + " ".join(f"{base['ocr_rec', d]:10.4f}" for d in dists)]

    def line(label: str, rows: list, seed: int) -> str:
        share = {d: v / base["ocr_rec", d] for d, s, v, *_ in rows if s == seed}
        return f"{label:42s} " + " ".join(f"{share[d]:10.1%}" for d in dists) + f" {min(share.values()):7.1%}"

    for r in sorted({k[2] for k in rec if k[1] == METHOD}):
        for seed in sorted({s for _, s, *_ in rec["ocr_rec", METHOD, r]}):
            out += [line(f"pruned {r} seed {seed} (obspa data-free)", rec["ocr_rec", DATA_FREE["ocr_rec"], r], seed),
                    line(f"+ distillation {r} seed {seed}", rec["ocr_rec", METHOD, r], seed)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratios", default="0.5,0.3")
    ap.add_argument("--seeds", default="0", help="comma-separated: the prune's and the fine-tune's seed")
    ap.add_argument("--no-header", action="store_true", help="a later part appended to the same file")
    ap.add_argument("--summary", type=Path, help="only print the table of this raw file's R rows")
    a = ap.parse_args()
    if a.summary:
        print("\n".join(summary(a.summary)))
        return
    ratios, seeds = [float(r) for r in a.ratios.split(",")], [int(s) for s in a.seeds.split(",")]
    b = ocr_rec()
    name = b.model.graph.input[0].name
    x_tr, t_tr = lines(TRAIN_TEXTS, TRAIN_FONTS, N_LINES, seed=SAMPLE_SEED)
    tmp = Path(tempfile.mkdtemp(prefix="distill_rec_heldout_"))
    onnx.save(b.model, str(tmp / "orig.onnx"))
    np.savez(tmp / "lines.npz", **{name: x_tr})
    if not a.no_header:
        print(f"PP-OCRv4 rec pruned by data-free obspa (spa's default), distilled by `spa finetune --teacher` on "
              f"{N_LINES} unlabelled {'+'.join(TRAIN_TEXTS)} lines in {len(TRAIN_FONTS)} DejaVu faces "
              f"({EPOCHS} epochs, lr {LR}, T {TEMPERATURE:g}, batch {BATCH}), scored on generalise.py's ocr_rec "
              f"held-out distributions (% of the original's character accuracy)")
        print("\n".join(leak_check(t_tr, {d: list(data[1]) for d, data in b.dists.items()})))
        print(f"# cores {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"# {b.name}: {b.what}")
    print("# R\tmodel\tdist\tmethod\tratio\tseed\tmetric\tparams_kept\tmacs_kept\tprune_s", flush=True)
    for seed in seeds:
        for r in ratios:
            t0 = time.perf_counter()
            pruned, rep = prune_with(b.model, "obspa-default", r, seed, None)
            prune_s = time.perf_counter() - t0
            pk, mk = rep.after.params / rep.before.params, rep.after.macs / rep.before.macs
            onnx.save(pruned, str(tmp / "pruned.onnx"))
            before = {d: b.metric(pruned, data) for d, data in b.dists.items()}
            print(f"# pruned only (obspa data-free) at {r}, seed {seed}: " +
                  ", ".join(f"{d} {v:.4f}" for d, v in before.items()) + f"; params kept {pk:.4f}, MACs kept "
                  f"{mk:.4f}, prune {prune_s:.1f}s", flush=True)
            out = tmp / f"distilled_{r}_{seed}.onnx"
            secs, load, log = finetune_cli([str(tmp / "pruned.onnx"), "--teacher", str(tmp / "orig.onnx"), "--data",
                                            str(tmp / "lines.npz"), "-o", str(out), "--epochs", str(EPOCHS), "--lr",
                                            LR, "--batch", str(BATCH), "--temperature", str(TEMPERATURE),
                                            "--augment", "none", "--seed", str(seed)])
            distilled = onnx.load(str(out))
            after = {d: b.metric(distilled, data) for d, data in b.dists.items()}
            print(f"# distillation at {r}, seed {seed}: wall {secs:.1f}s, {load}")
            print("#     " + "\n#     ".join(log.strip().splitlines()))
            for d, v in after.items():
                print(f"R\t{b.name}\t{d}\t{METHOD}\t{r}\t{seed}\t{v:.4f}\t{pk:.4f}\t{mk:.4f}\t{prune_s:.2f}", flush=True)


if __name__ == "__main__":
    main()
