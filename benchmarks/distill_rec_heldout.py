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

Augmentation (`--augment SPEC`, passed to `spa finetune --augment`; R rows then carry method "distill-aug"), chosen
on a VALIDATION set, never on the held-out rows: `--choose "none|invert,contrast" --choice-file FILE` distils once
per setting (same prune, seed, epochs, lr, T and batch), scores each on `validation()` (texts BSD / LGPL-2.1 /
Artistic and digit strings of `val_numbers`, a generator of other formats and seed than generalise.numbers, in
Noto Serif (regular, italic) and FreeSans (regular, oblique): none of them a held-out or distillation text or font family; each
dark on light and inverted; since stop 39 also the text lines in Latin Modern Mono Light, blurred, val-mono-blur),
writes the V rows and the choice (the best worst-over-distributions) to FILE, and only then scores the chosen setting
on the held-out distributions (nothing if it is "none": the "distill" rows are that):

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/distill_rec_heldout.py --ratios 0.5 --seeds 0 --no-header \
        --choose "none|invert,contrast" --choice-file benchmarks/distill_rec_heldout_choice.txt \
        >> benchmarks/distill_rec_heldout.txt

Data that covers the deployment (`--data mixed`, methods "...-mixed"): 128 of the 512 lines are digit strings of
`train_numbers` (order numbers, weights, ISBNs, page ranges, counts, rooms: formats neither the held-out nor the
validation numbers use) in the same DejaVu faces, the rest the licence lines. Calibrate, then distil (`--start calib`,
methods "...-fromcalib"): the prune distilled is `obspa --calib` on the first 32 distillation lines instead of the
data-free default, what a user who has the lines can do. `--validate-only` (with --choose) stops after the V rows.
`--feature-weight W` also matches the intermediate features (`spa finetune --plan`, methods "...-featW"); `--epochs N`
distils N epochs instead of 14 ("...-epN"; 16 also fit the 10-minute budget on 2 cores,
distill_rec_heldout_features_choice.txt); `--warmup F` passes `spa finetune --warmup F` (a linear rise of the
learning rate over that share of the steps; "...-wuF"); `--average F` passes `spa finetune --average F` (the
weights averaged over that last share of the steps; "...-avgF"); `--numbers random` draws the digit strings from
`random_numbers` (no format) instead of train_numbers' formats ("...-rnd"); `--fonts dejavu-all` spreads the lines
over all 21 DejaVu text faces instead of six ("...-dejavuall"; led on validation, lost held out: not the recipe);
`--start data-free-energy` distils data-free obspa with `--allocate energy` instead of the local default
("...-fromenergy"; lost on validation). `--steps R1:E1` prunes in two steps (benchmarks/stepped.py: data-free obspa at
R1, distilled E1 epochs, pruned again to no more MACs and params than the one-shot prune, then distilled as usual, the
plans composed for the features; "...-stepR1eE1"; 0.3:3 with 10 final epochs lost on validation,
distill_rec_heldout_features_choice.txt). `--symbol-lines N` replaces N licence lines by lines of random printable
ASCII (symbol_lines; "...-symN"; 128 chosen on validation and, held out, the data-free recipe at 0.5 since stop 38).
`--bn-augmented` and `--output-loss kl+ctc` pass those `spa finetune` options ("...-bnaug", "...-klctc"; both lost on
validation). `--fonts families` spreads the lines over the six DejaVu faces and ten faces of other families
(distill_ocr.OTHER_FAMILIES, Debian font packages: see there; "...-families"; chosen on validation in stop 39).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill_ocr import DEJAVU_ALL, OTHER_FAMILIES, TRAIN_FONTS, TRAIN_TEXTS, finetune_cli, lines
from generalise import LM, OCR_HELDOUT, PRUNED_HOW, licence_segments, ocr_rec, pruned_only, rec_line
from stepped import stepped_start

N_LINES, SAMPLE_SEED = 512, 1  # distill_ocr.py's distillation set
N_CALIB = 32  # --start calib: obspa --calib on the first lines of the distillation set
EPOCHS, LR, BATCH, TEMPERATURE = 14, "2e-3", 16, 2.0  # distill_ocr.txt's 14-epoch rows
METHOD, AUG_METHOD = "distill", "distill-aug"
# validation (choice of --augment only): texts, fonts and a numbers generator that neither the distillation data nor
# the held-out distributions use
VALID_TEXTS = ("BSD", "LGPL-2.1", "Artistic")
VALID_FONTS = ("NotoSerif-Regular.ttf", "FreeSans.ttf", "NotoSerif-Italic.ttf", "FreeSansOblique.ttf")
N_VALID, VALID_SEED = 48, 11
# and (since stop 39) the validation text lines in a thin typewriter face, blurred as generalise's mono-blur renders
# its lines (Gaussian radius 1.2): Latin Modern Mono Light 10 (fonts-lmodern, from Computer Modern Typewriter, no URW or
# FreeFont design), a stand-in for the held-out set that stays the weakest (mono-blur) with another face and text
VALID_MONO_BLUR = (LM + "lmmonolt10-regular.otf", 1.2)
# --data mixed: of the N_LINES distillation lines, N_NUMBER_LINES are digit strings (train_numbers, seed
# NUMBER_SEED) in the same DejaVu faces, the rest the licence lines as before; method names gain "-mixed"
N_NUMBER_LINES, NUMBER_SEED = 128, 21
# --symbol-lines N (methods "...-symN"): N of the licence lines replaced by lines of random printable ASCII (symbol_lines,
# seed SYMBOL_SEED), so that every letter, digit and punctuation glyph appears in the faces tens of times
SYMBOL_SEED = 23
# --fonts dejavu-all (methods "...-dejavuall"): the same lines spread over every DejaVu text face (21: the six of
# TRAIN_FONTS and their light, bold, oblique, condensed and mono siblings) instead of six; one family still, so no
# validation or held-out family is previewed
# --fonts families (methods "...-families"): the same lines spread over the six DejaVu faces and OTHER_FAMILIES' ten
# faces of other families (distill_ocr.py)
FONT_SETS = {"dejavu": TRAIN_FONTS, "dejavu-all": DEJAVU_ALL, "families": [*TRAIN_FONTS, *OTHER_FAMILIES]}
# the R methods' suffixes after "-mixed" / "-fromcalib" / "-fromenergy", in the order `variant` writes them, each with
# its label in `summary` ("{}": the value that follows the name, "-lr2e-4" -> "2e-4"); "-plusK" (augmentation beyond
# invert,contrast) comes last
SUFFIXES = {"lr": ", lr {}", "feat": ", features {}", "ep": ", {} epochs", "wu": ", warm-up {}",
            "num": ", {} digit strings", "rnd": ", random digit strings", "sym": ", {} symbol lines", "avg": ", averaged {}",
            "dejavuall": ", every DejaVu face", "families": ", ten more font families", "temp": ", temperature {}",
            "step": ", in steps {}", "bnaug": ", BatchNorm on augmented data{}", "klctc": ", KL and CTC on the text{}"}
OUTPUT = "softmax_11.tmp_0"  # the recogniser's one output, per-step class probabilities (--output-loss)


def family(font_file: str) -> str:
    """'NotoSans-Regular.ttf' -> 'notosans', 'DejaVuSans-Bold.ttf' -> 'dejavusans': faces of one family compare equal."""
    return Path(font_file).stem.split("-")[0].lower()


def leak_check(texts: list[str], heldout: dict[str, list[str]], fonts: list[str] = TRAIN_FONTS) -> list[str]:
    """Comment lines: held-out fonts (files and families) and held-out lines among the distillation's (in `fonts`)."""
    train_files = {Path(f).name for f in fonts}
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


def val_numbers(rng: np.random.Generator, n: int) -> list[str]:
    """Digit strings in other formats than generalise.numbers (dates, prices, times, phone numbers): percentages,
    invoice numbers, day/month/year dates, versions and quantities, so that validation does not preview them."""
    out = []
    for _ in range(n):
        k = rng.integers(5)
        if k == 0:
            out.append(f"{rng.integers(0, 100)}.{rng.integers(10)}% of {rng.integers(10, 999)}")
        elif k == 1:
            out.append(f"INV-{rng.integers(0, 999999):06d}")
        elif k == 2:
            out.append(f"{rng.integers(1, 29)}/{rng.integers(1, 13)}/{rng.integers(1950, 2000)}")
        elif k == 3:
            out.append(f"v{rng.integers(0, 10)}.{rng.integers(0, 30)}.{rng.integers(0, 100)}")
        else:
            out.append(f"{rng.integers(1, 9999)} x {rng.integers(1, 99)} = {rng.integers(100, 99999)}")
    return out


def train_numbers(rng: np.random.Generator, n: int) -> list[str]:
    """Digit strings for `--data mixed`, in formats that neither generalise.numbers (held-out: ISO dates, dollar
    prices, times with No., phone numbers) nor val_numbers (validation) use: order numbers, weights, ISBNs, page
    ranges, thousands-separated counts, room numbers."""
    out = []
    for _ in range(n):
        k = rng.integers(6)
        if k == 0:
            out.append(f"Order #{rng.integers(0, 999999):06d}")
        elif k == 1:
            out.append(f"{rng.integers(0, 500)}.{rng.integers(0, 100):02d} kg")
        elif k == 2:
            out.append(f"ISBN 978-{rng.integers(0, 10)}-{rng.integers(1000, 9999)}-{rng.integers(1000, 9999)}-"
                       f"{rng.integers(0, 10)}")
        elif k == 3:
            a = int(rng.integers(1, 900))
            out.append(f"pp. {a}-{a + int(rng.integers(1, 60))}")
        elif k == 4:
            out.append(f"{rng.integers(1, 999)},{rng.integers(0, 1000):03d},{rng.integers(0, 1000):03d}")
        else:
            out.append(f"Room {rng.integers(1, 40)}{'ABCDEF'[rng.integers(6)]}, Floor {rng.integers(1, 30)}")
    return out


def random_numbers(rng: np.random.Generator, n: int) -> list[str]:
    """Digit strings in no format (`--numbers random`): 2-6 runs of 1-6 digits, each pair of runs joined by a space
    or by one character of Python's string.punctuation, all drawn uniformly: no separator or layout is preferred,
    so no format of the validation or held-out numbers is previewed either."""
    import string

    seps = [" ", *string.punctuation]
    out = []
    for _ in range(n):
        runs = ["".join(str(d) for d in rng.integers(0, 10, rng.integers(1, 7))) for _ in range(rng.integers(2, 7))]
        out.append(runs[0] + "".join(seps[rng.integers(len(seps))] + r for r in runs[1:]))
    return out


def symbol_lines(rng: np.random.Generator, n: int) -> list[str]:
    """Lines of random printable ASCII (`--symbol-lines`): 2-6 words of 1-8 characters drawn uniformly from Python's
    string.ascii_letters, digits and punctuation, joined by spaces: every glyph of the faces about equally often (the
    licence lines hold '%', '$', '#' or capitals next to digits rarely), no word or format of any set previewed."""
    import string

    chars = string.ascii_letters + string.digits + string.punctuation
    return [" ".join("".join(chars[i] for i in rng.integers(0, len(chars), rng.integers(1, 9)))
                     for _ in range(rng.integers(2, 7))) for _ in range(n)]


def distillation_lines(data: str, n_numbers: int = N_NUMBER_LINES, numbers: str = "formats",
                       fonts: list[str] = TRAIN_FONTS, n_symbols: int = 0) -> tuple[np.ndarray, list[str]]:
    """The unlabelled distillation lines in the faces `fonts`: distill_ocr's licence lines ("licence"), or ("mixed")
    fewer of them, `n_numbers` digit strings (of train_numbers, or of random_numbers with `numbers` "random") and
    `n_symbols` symbol_lines."""
    if data == "licence":
        return lines(TRAIN_TEXTS, fonts, N_LINES, seed=SAMPLE_SEED)
    from obspa_ocr import render

    x, t = lines(TRAIN_TEXTS, fonts, N_LINES - n_numbers - n_symbols, seed=SAMPLE_SEED)
    nums = (random_numbers if numbers == "random" else train_numbers)(np.random.default_rng(NUMBER_SEED), n_numbers)
    nums += symbol_lines(np.random.default_rng(SYMBOL_SEED), n_symbols)
    xn = np.stack([render(s, f"../{fonts[k % len(fonts)]}") for k, s in enumerate(nums)])
    order = np.random.default_rng(NUMBER_SEED).permutation(N_LINES)  # numbers spread through the epochs' batches
    texts = t + nums
    return np.concatenate([x, xn])[order], [texts[i] for i in order]


def validation(train: list[str], heldout: dict[str, list[str]],
               fonts: list[str] = TRAIN_FONTS) -> tuple[dict, list[str]]:
    """The validation distributions (name -> (lines, texts)) and comment lines that check them: no font family of
    the distillation (`fonts`) or held-out sets, and how many texts coincide with theirs."""
    held_files = {f for f, _, _ in OCR_HELDOUT.values()}
    used = {family(f) for f in held_files} | {family(f) for f in fonts}
    if same := used & {family(f) for f in (*VALID_FONTS, VALID_MONO_BLUR[0])}:
        raise SystemExit(f"validation fonts of a distillation or held-out family: {sorted(same)}")
    rng = np.random.default_rng(VALID_SEED)
    segs = sorted({s for t in VALID_TEXTS for s in licence_segments(f"/usr/share/common-licenses/{t}")})
    kinds = {"text": [segs[i] for i in rng.permutation(len(segs))[:N_VALID]], "numbers": val_numbers(rng, N_VALID)}
    dists = {}
    for kind, texts in kinds.items():
        for inv in (False, True):
            x = np.stack([rec_line(t, VALID_FONTS[k % len(VALID_FONTS)], invert=inv) for k, t in enumerate(texts)])
            dists[f"val-{kind}" + ("-inverted" if inv else "")] = (x, texts)
    mono, radius = VALID_MONO_BLUR
    dists["val-mono-blur"] = (np.stack([rec_line(t, mono, blur=radius) for t in kinds["text"]]), kinds["text"])
    seen = set(train) | {t for ts in heldout.values() for t in ts}
    notes = [(f"# validation: {', '.join(dists)} ({N_VALID} lines each; text = {'/'.join(VALID_TEXTS)} segments, "
             f"numbers = val_numbers seed {VALID_SEED}; fonts {', '.join(VALID_FONTS)}; val-mono-blur: the text in "
             f"{Path(mono).name}, blur {radius:g}: no family of the "
             f"distillation or held-out fonts); {len(set(kinds['text']) & seen)} text and "
             f"{len(set(kinds['numbers']) & seen)} number lines also among the distillation or held-out lines")]
    return dists, notes


def summary(path: Path) -> list[str]:
    """The table of a raw file (accuracy_table.py shows it in its distillation section): % of the original's accuracy
    per held-out distribution of each prune that was distilled (the file's "pruned only" comments) and, under it,
    of each distillation of that prune (the R rows that follow it, until the next prune; one prune printed once),
    with the worst over the distributions: plain, "augmented" (distill-aug), "data mixed" (`--data mixed`) rows."""
    from accuracy_table import read

    _, base = read([Path(__file__).resolve().parent / "generalise_ocr_rec.txt"])
    dists = list(OCR_HELDOUT)
    out = [f"{'row':48s} " + " ".join(f"{d:>10s}" for d in dists) + f" {'worst':>7s}",
           f"{'original (teacher), raw accuracy':48s} " + " ".join(f"{base['ocr_rec', d]:10.4f}" for d in dists)]
    labels = {METHOD: "", AUG_METHOD: ", augmented", METHOD + "-mixed": ", data mixed",
              AUG_METHOD + "-mixed": ", data mixed, augmented"}
    # the start is named by the block's "pruned only" comment
    labels |= {m + start: label for m, label in list(labels.items()) for start in ("-fromcalib", "-fromenergy")}
    hows = "|".join(sorted(map(re.escape, PRUNED_HOW.values()), key=len, reverse=True))  # longest first
    blocks: dict[tuple, dict[str, dict[str, float]]] = {}  # (how, ratio, seed, scores) -> method -> dist -> value
    key = None
    for ln in path.read_text().splitlines():
        if m := re.match(rf"# pruned only \(obspa ({hows})\) at ([\d.]+), seed (\d+): ([^;]+);", ln):
            scores = tuple((d, float(v)) for d, v in (kv.rsplit(" ", 1) for kv in m[4].split(", ")))
            key = (m[1], float(m[2]), int(m[3]), scores)
            blocks.setdefault(key, {})
        elif ln.startswith("R\t") and key is not None:
            _, _, d, meth, r, seed, v, *_ = ln.split("\t")
            rest, _, plus = meth.partition("-plus")
            found = {}
            for name in reversed(SUFFIXES):  # "-lr2e-4-feat1-rnd": from the last suffix back
                rest, sep, value = rest.partition(f"-{name}")
                if sep:
                    found[name] = value
            if rest in labels and (float(r), int(seed)) == key[1:3]:
                labels.setdefault(meth, labels[rest] + "".join(SUFFIXES[n].format(found[n]) for n in SUFFIXES if n in found)
                                  + (f", augmented + {plus}" if plus else ""))
                blocks[key].setdefault(meth, {})[d] = float(v)

    def line(label: str, values: dict[str, float]) -> str:
        share = {d: values[d] / base["ocr_rec", d] for d in dists}
        return f"{label:48s} " + " ".join(f"{share[d]:10.1%}" for d in dists) + f" {min(share.values()):7.1%}"

    for (how, r, seed, scores), runs in blocks.items():
        if runs:
            out.append(line(f"pruned {r} seed {seed} (obspa {how})", dict(scores)))
            out += [line(f"+ distillation{labels[meth]} {r} seed {seed}", v) for meth, v in runs.items()]
    return out


def variant(a: argparse.Namespace) -> list[tuple[str, str, str]]:
    """How the run differs from the first recipe (licence lines, data-free start, LR, EPOCHS, no features), as
    (R method suffix, log-line option, V label suffix) triples in the order the raw files spell them; "" where
    one of the three does not name the setting (the V labels always name the start and the lr)."""
    fw, wu, av, temp = f"{a.feature_weight:g}", f"{a.warmup:g}", f"{a.average:g}", f"{a.temperature:g}"
    return [t for on, t in ((a.data == "mixed", ("mixed", "", "")),
                            (a.start == "calib", ("fromcalib", "", "")),
                            (a.start == "data-free-energy", ("fromenergy", "", "")),
                            (a.lr != LR, (f"lr{a.lr}", "", "")),
                            (a.feature_weight > 0, (f"feat{fw}", f"--feature-weight {fw}", f"feat{fw}")),
                            (a.epochs != EPOCHS, (f"ep{a.epochs}", f"--epochs {a.epochs}", f"ep{a.epochs}")),
                            (a.warmup > 0, (f"wu{wu}", f"--warmup {wu}", f"wu{wu}")),
                            (a.number_lines != N_NUMBER_LINES, (f"num{a.number_lines}", "", f"num{a.number_lines}")),
                            (a.numbers == "random", ("rnd", "", "rnd")),
                            (a.symbol_lines > 0, (f"sym{a.symbol_lines}", "", f"sym{a.symbol_lines}")),
                            (a.average > 0, (f"avg{av}", f"--average {av}", f"avg{av}")),
                            (a.fonts != "dejavu", (a.fonts.replace("-", ""), f"--fonts {a.fonts}",
                                                   a.fonts.replace("-", ""))),
                            (a.temperature != TEMPERATURE, (f"temp{temp}", f"--temperature {temp}", f"temp{temp}")),
                            (bool(a.steps), (f"step{a.steps.replace(':', 'e')}" if a.steps else "",
                                             f"--steps {a.steps}", f"step{a.steps}")),
                            (a.bn_augmented, ("bnaug", "--bn-augmented", "bnaug")),
                            (a.output_loss == "kl+ctc", ("klctc", "--output-loss kl+ctc", "klctc")))
            if on]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratios", default="0.5,0.3")
    ap.add_argument("--seeds", default="0", help="comma-separated: the prune's and the fine-tune's seed")
    ap.add_argument("--no-header", action="store_true", help="a later part appended to the same file")
    ap.add_argument("--summary", type=Path, help="only print the table of this raw file's R rows")
    ap.add_argument("--augment", default="none", help="spa finetune --augment SPEC (not 'none': method distill-aug)")
    ap.add_argument("--choose", help="'|'-separated --augment settings: distil each, choose on the validation set")
    ap.add_argument("--choice-file", type=Path, help="--choose: where the validation rows and the choice go")
    ap.add_argument("--data", choices=("licence", "mixed"), default="licence",
                    help="the distillation lines (distillation_lines); mixed: method names end in -mixed")
    ap.add_argument("--start", choices=("data-free", "calib", "data-free-energy"), default="data-free",
                    help="the prune distilled: spa's data-free default, or (calib: method names end in -fromcalib) "
                         f"obspa --calib on the first {N_CALIB} distillation lines, as a user with those lines can, "
                         "or (data-free-energy: -fromenergy) data-free obspa with --allocate energy")
    ap.add_argument("--validate-only", action="store_true", help="--choose: stop after the validation rows")
    ap.add_argument("--lr", default=LR, help=f"spa finetune --lr (default {LR}; another: method names end in -lrLR)")
    ap.add_argument("--epochs", type=int, default=EPOCHS,
                    help=f"spa finetune --epochs (default {EPOCHS}; another: method names end in -epN)")
    ap.add_argument("--number-lines", type=int, default=N_NUMBER_LINES,
                    help=f"--data mixed: digit strings among the {N_LINES} lines (default {N_NUMBER_LINES}; another: "
                         "method names end in -numN)")
    ap.add_argument("--symbol-lines", type=int, default=0,
                    help=f"--data mixed: lines of random printable ASCII among the {N_LINES}, in place of licence lines "
                         "(default none; another: method names end in -symN)")
    ap.add_argument("--warmup", type=float, default=0.0,
                    help="spa finetune --warmup F (default none; another: method names end in -wuF)")
    ap.add_argument("--numbers", choices=("formats", "random"), default="formats",
                    help="--data mixed: the digit strings' kind, train_numbers' formats or random_numbers (method names "
                         "end in -rnd)")
    ap.add_argument("--average", type=float, default=0.0,
                    help="spa finetune --average F (default none; another: method names end in -avgF)")
    ap.add_argument("--fonts", choices=tuple(FONT_SETS), default="dejavu",
                    help=f"the distillation lines' faces: TRAIN_FONTS' six or (dejavu-all, method names end in "
                         f"-dejavuall) all {len(DEJAVU_ALL)} DejaVu text faces, or (families, -families) the six and "
                         f"{len(OTHER_FAMILIES)} faces of other families")
    ap.add_argument("--bn-augmented", action="store_true",
                    help="spa finetune --bn-augmented: the final BatchNorm statistics on augmented batches (-bnaug)")
    ap.add_argument("--output-loss", choices=("kl+ctc",),
                    help=f"spa finetune --output-loss {OUTPUT}=KIND (default: finetune's choice, kl; kl+ctc: -klctc)")
    ap.add_argument("--temperature", type=float, default=TEMPERATURE,
                    help=f"spa finetune --temperature (default {TEMPERATURE:g}; another: method names end in -tempT)")
    ap.add_argument("--steps", help="R1:E1: prune at R1 first and distil E1 epochs, then prune that to the ratio's "
                                    "size and distil (benchmarks/stepped.py; method names end in -stepR1eE1)")
    ap.add_argument("--feature-weight", type=float, default=0.0,
                    help="spa finetune --plan (the prune's) --feature-weight W: also match the intermediate features "
                         "(method names end in -featW)")
    a = ap.parse_args()
    if a.summary:
        print("\n".join(summary(a.summary)))
        return
    if a.choose and not a.choice_file:
        ap.error("--choose needs --choice-file")
    ratios, seeds = [float(r) for r in a.ratios.split(",")], [int(s) for s in a.seeds.split(",")]
    b = ocr_rec()
    name = b.model.graph.input[0].name
    if (a.number_lines != N_NUMBER_LINES or a.numbers != "formats" or a.symbol_lines) and a.data != "mixed":
        ap.error("--number-lines, --numbers and --symbol-lines need --data mixed")
    fonts = FONT_SETS[a.fonts]
    x_tr, t_tr = distillation_lines(a.data, a.number_lines, a.numbers, fonts, a.symbol_lines)
    v = variant(a)
    mixed = "".join(f"-{m}" for m, _, _ in v)  # the R rows' method suffix
    options = "".join(f", {o}" for _, o, _ in v if o)  # the log line's
    tag = "".join(f":{t}" for _, _, t in v if t)  # the V rows' setting name
    tmp = Path(tempfile.mkdtemp(prefix="distill_rec_heldout_"))
    onnx.save(b.model, str(tmp / "orig.onnx"))
    np.savez(tmp / "lines.npz", **{name: x_tr})
    if not a.no_header:
        print(f"PP-OCRv4 rec pruned by data-free obspa (spa's default), distilled by `spa finetune --teacher` on "
              f"{N_LINES} unlabelled {'+'.join(TRAIN_TEXTS)} lines in {len(fonts)} faces "
              f"({EPOCHS} epochs, lr {LR}, T {TEMPERATURE:g}, batch {BATCH}), scored on generalise.py's ocr_rec "
              f"held-out distributions (% of the original's character accuracy)")
        print(f"# cores {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    if a.data == "mixed":
        print(f"# --data mixed: {N_LINES - a.number_lines - a.symbol_lines} of the licence lines, {a.number_lines} digit "
              f"strings ({'random_numbers' if a.numbers == 'random' else 'train_numbers'}, seed {NUMBER_SEED}) and "
              f"{a.symbol_lines} symbol lines (seed {SYMBOL_SEED}) in the same faces; methods {METHOD}{mixed} / {AUG_METHOD}{mixed}")
    if not a.no_header or a.data == "mixed":
        print("\n".join(leak_check(t_tr, {d: list(data[1]) for d, data in b.dists.items()}, fonts)))
    print(f"# {b.name}: {b.what}")
    print("# R\tmodel\tdist\tmethod\tratio\tseed\tmetric\tparams_kept\tmacs_kept\tprune_s", flush=True)
    specs = a.choose.split("|") if a.choose else [a.augment]
    if a.choose:
        val, notes = validation(t_tr, {d: list(data[1]) for d, data in b.dists.items()}, fonts)
        base = {d: b.metric(b.model, v) for d, v in val.items()}
        choice = [(f"PP-OCRv4 rec, {'obspa --calib' if a.start == 'calib' else 'data-free obspa'} prune + `spa finetune --teacher` "
                   f"(as distill_rec_heldout.txt, --data {a.data}, --start {a.start}): "
                   f"--augment chosen among {' / '.join(specs)} on a validation set, never on the held-out "
                   "distributions (share of the original's character accuracy, worst over the validation distributions)"),
                  *notes, "# original (teacher): " + ", ".join(f"{d} {v:.4f}" for d, v in base.items()),
                          "# V\tmodel\tdist\taugment\tratio\tseed\tmetric\tshare_of_original\tdistil_wall_s"]
    def distil(pruned: Path, plan: Path, out: Path, epochs: int, spec: str, seed: int):
        return finetune_cli([str(pruned), "--teacher", str(tmp / "orig.onnx"), "--data", str(tmp / "lines.npz"),
                             "-o", str(out), "--epochs", str(epochs), "--lr", a.lr, "--batch", str(BATCH),
                             "--temperature", f"{a.temperature:g}", "--augment", spec, "--seed", str(seed)]
                            + (["--plan", str(plan), "--feature-weight", f"{a.feature_weight:g}"]
                               if a.feature_weight else [])
                            + (["--warmup", f"{a.warmup:g}"] if a.warmup else [])
                            + (["--average", f"{a.average:g}"] if a.average else [])
                            + (["--bn-augmented"] if a.bn_augmented else [])
                            + (["--output-loss", f"{OUTPUT}={a.output_loss}"] if a.output_loss else []))

    for seed in seeds:
        for r in ratios:
            if a.steps:
                pk, mk, prune_s = stepped_start(b, r, seed, a.steps, tmp,
                                                lambda p, q, o, e, s=seed: distil(p, q, o, e, specs[0], s))
            else:
                _, pk, mk, prune_s = pruned_only(b, a.start, r, seed, {name: x_tr[:N_CALIB]}, tmp / "pruned.onnx")
            models, worst = {}, {}
            for spec in specs:
                out = tmp / f"distilled_{r}_{seed}_{spec.replace(',', '+')}.onnx"
                secs, load, log = distil(tmp / "pruned.onnx", tmp / "pruned.plan.json", out, a.epochs, spec, seed)
                models[spec] = onnx.load(str(out))
                what = (f"# distillation (--data {a.data}, --augment {spec}{options}) at {r}, seed {seed}: wall {secs:.1f}s, "
                        f"{load}")
                print(what + "\n#     " + "\n#     ".join(log.strip().splitlines()), flush=True)
                if a.choose:
                    share = {d: b.metric(models[spec], v) / base[d] for d, v in val.items()}
                    worst[spec] = min(share.values())
                    choice += [what] + [f"V\t{b.name}\t{d}\t{a.data}:{a.start}:lr{a.lr}{tag}:{spec}\t{r}\t{seed}\t{v * base[d]:.4f}\t{v:.4f}\t{secs:.0f}"
                                        for d, v in share.items()]
            spec = specs[0]
            if a.choose:
                spec = max(specs, key=lambda k: worst[k])  # ties: the first listed
                choice.append(f"# choice at {r}, seed {seed} (worst share over the validation distributions): "
                              + ", ".join(f"{k} {w:.4f}" for k, w in worst.items()) + f" -> {spec}")
                a.choice_file.write_text("\n".join(choice) + "\n")
                if a.validate_only:
                    continue
                if spec == "none" and not mixed:
                    print(f"# validation chose --augment none at {r}, seed {seed}: the '{METHOD}' rows are that")
                    continue
            after = {d: b.metric(models[spec], data) for d, data in b.dists.items()}
            # kinds beyond the chosen invert,contrast (which every "distill-aug" row has) name themselves: "-plusK+K"
            extra = [k for k in spec.split(",") if k not in ("invert", "contrast", "none")]
            method = (METHOD if spec == "none" else AUG_METHOD) + mixed + (f"-plus{'+'.join(extra)}" if extra else "")
            if spec != "none":
                print(f"# {method} rows below: --augment {spec}")
            for d, v in after.items():
                print(f"R\t{b.name}\t{d}\t{method}\t{r}\t{seed}\t{v:.4f}\t{pk:.4f}\t{mk:.4f}\t{prune_s:.2f}", flush=True)

if __name__ == "__main__":
    main()
