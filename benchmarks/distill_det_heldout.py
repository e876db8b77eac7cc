"""Label-free distillation of PP-OCRv4 det scored on benchmarks/generalise.py's ocr_det HELD-OUT distributions, so
that benchmarks/accuracy.md's "distilled" column for the detector sits beside its data-free and calibrated columns on
the same inputs (distill_det.txt has its own protocol: box F-score on its own evaluation pages).

Prune: spa's data-free default as a user runs it (generalise.prune_with's "obspa-default": the `strokes` prior, the
OBS-cost allocation with its probed cap up to 0.3, local above).
Distil: `python -m spa finetune PRUNED --teacher ORIGINAL --data pages.npz -o OUT` in a separate process, with
distill_det.txt's settings (4 epochs, lr 1e-3, batch 8; BatchNorm re-estimated by finetune) on distill_det's
distillation pages: 256 unlabelled 320x320 pages of GPL-3/GPL-2 words in its six DejaVu faces, black on white (seed
1); the fine-tune's --seed is the prune's seed. Nothing is chosen here: the settings are distill_det's.
Evaluate: generalise.ocr_det()'s held-out distributions and metric (pages: Apache-2.0 lines in Liberation Sans/Serif,
black on white; pages-noisy: in FreeSerif/FreeMono, grey backgrounds, dark coloured text, blur and noise; 24 pages
each; pixel F-score of the text map thresholded at 0.3 against the original's). Neither the held-out texts nor their
font families are among the distillation pages' (checked and printed); the distillation pages hold no noise, no
blur and no coloured background, so pages-noisy measures that shift.

Calibrate, then distil (`--start calib`, method "distill-fromcalib"; branch detcal): the prune distilled is spa's
`obspa --calib` default on the first N_CALIB distillation pages instead of the data-free one (the recipe chosen on
the recogniser's validation set, benchmarks/distill_rec_heldout_calibstart_choice.txt; not chosen on this model).
A local start (`--start data-free-local`, methods "...-fromlocal"): data-free obspa with `--allocate local`, every
group losing the ratio, instead of the default's OBS-cost allocation up to 0.3 (on the recogniser at 0.5 the
energy-allocated start distilled worse than the local one, distill_rec_heldout_features_choice.txt, candidate C).

Augmentation (`--augment SPEC`, passed to `spa finetune --augment`; R rows then carry method "distill-aug"), chosen
by `--choose 'none|A|B' --choice-file F --validate-only`: each setting is distilled at every ratio and seed and scored
on the detector's SELECTION pages (generalise.ocr_det(selection=True): sel-pages, GPL-3 in DejaVu Sans/Serif like
the distillation pages, and sel-pages-contrast / -jpeg / -texture, the OCR selection conditions in other texts and
faces, generalise.DET_WIDE), never on the held-out ones; the setting with the best worst share of the original's F-score
over seeds, ratios and selection pages is chosen, and only that one is then run held out (`--augment`).
Chosen (benchmarks/distill_det_heldout_choice.txt, at 0.3, seeds 0-2, runs side by side merged by `--summarise`):
`noise,contrast` at 4 epochs, against none, blur,noise,contrast, all, contrast alone, and 8 epochs with or without it.
At 0.3 with 512 pages, the features and every DejaVu face (the recipe there): `noise,contrast,stroke` (run 24, worst
0.8957 against 0.8857), against colour, mix, splice, mix+splice added and a local start (runs 17, 20-23), and a two-step
prune (`--steps 0.15:2`, benchmarks/stepped.py, methods "...-step0.15e2": 0.15 first, distilled 2 epochs, then pruned to
the one-shot prune's size and distilled; run 25, worst 0.8987: ahead on every seed, under its rule's 0.9007; held out
on seeds 3-4 its noisy pages fell to 0.414 / 0.660, distill_det_heldout.txt).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill_det_heldout.py --ratios 0.3 --seeds 0,1,2 \
        --choose 'none|blur,noise,contrast|all' --choice-file benchmarks/distill_det_heldout_choice.txt
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill_det_heldout.py --ratios 0.3,0.5 --seeds 0,1,2 \
        --augment noise,contrast --no-header >> benchmarks/distill_det_heldout.txt

Faces (`--fonts dejavu-all`, methods "...-dejavuall"): the pages' words in 19 DejaVu faces instead of TRAIN_FONTS'
six (FONT_SETS; chosen at 0.3 on the selection pages, run 15, and the recipe there since branch fonts).

Output loss (`--output-loss bce`, methods "...-bcemap"): the probability map matched by the Bernoulli KL
(`spa finetune --output-loss sigmoid_0.tmp_0=bce`, through the Sigmoid's logits) instead of finetune's default for
it, the squared error relative to the map's mean square.

Output: R lines in generalise.py's format, method "distill" (accuracy_table.py's "distilled" column), and as comments
the pruned-only scores, each fine-tune's wall and CPU seconds, the load average and spa's own log.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill_det_heldout.py --ratios 0.3,0.5 --seeds 0,1,2 \
        > benchmarks/distill_det_heldout.txt
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill_det import pages
from distill_ocr import DEJAVU_ALL, OTHER_FAMILIES, TRAIN_FONTS, TRAIN_TEXTS, finetune_cli
from generalise import DET_WIDE, ocr_det, pruned_only
from stepped import stepped_start

N_PAGES, PAGE_SEED = 256, 1  # distill_det.py's distillation pages
EPOCHS, LR, BATCH = 4, "1e-3", 8  # distill_det.txt's row
METHOD, AUG_METHOD = "distill", "distill-aug"
AUG_RECIPE = "noise,contrast"  # method distill-aug's --augment (run 1-3); other settings' methods add aug_suffix
N_CALIB = 32  # --start calib: obspa --calib on the first distillation pages
START_NAME = {"calib": "obspa --calib", "data-free-local": "data-free obspa --allocate local"}
OUTPUT = "sigmoid_0.tmp_0"  # the detector's one output, a Sigmoid probability map (--output-loss)
HELD_FONTS = ("LiberationSans", "LiberationSerif", "FreeSerif", "FreeMono")  # generalise.det_page's held-out faces
HELD_TEXT = "Apache-2.0"
# --fonts dejavu-all (methods "...-dejavuall"): the pages' words in every DejaVu text face but those of the selection
# pages that TRAIN_FONTS lacks (DET_WIDE's DejaVu Sans Condensed and Sans Mono Oblique: a choice on pages in faces the
# distillation saw would flatter it); 19 faces instead of six
SELECTION_FACES = {f for _, faces in DET_WIDE.values() for f in faces}
FONT_SETS = {"dejavu": TRAIN_FONTS,
             "dejavu-all": [f for f in DEJAVU_ALL if f in TRAIN_FONTS or Path(f).name not in SELECTION_FACES]}
# --fonts dejavu-all-families (methods "...-dejavuallfamilies"; stop 39): those 19 and the regular face of ten other
# families (distill_ocr.OTHER_FAMILIES: Go, Go Mono, Inconsolata, Roboto, Open Sans, Linux Libertine, Cantarell, Lato,
# Caladea, Carlito; none of a held-out or selection design)
FONT_SETS["dejavu-all-families"] = [*FONT_SETS["dejavu-all"], *OTHER_FAMILIES]
FONT_LABELS = {"dejavu-all": "every DejaVu face", "dejavu-all-families": "every DejaVu face and ten families"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratios", default="0.3,0.5")
    ap.add_argument("--seeds", default="0", help="comma-separated: the prune's and the fine-tune's seed")
    ap.add_argument("--no-header", action="store_true", help="a later part appended to the same file")
    ap.add_argument("--start", choices=("data-free", "calib", "data-free-local"), default="data-free",
                    help="the prune distilled: spa's data-free default, obspa --calib on the first 32 pages, or "
                         "data-free obspa with --allocate local (method names and V labels end in -fromlocal)")
    ap.add_argument("--augment", default="none", help="spa finetune --augment SPEC (not 'none': method distill-aug)")
    ap.add_argument("--choose", help="'|'-separated --augment settings: distil each, score on the selection pages")
    ap.add_argument("--choice-file", type=Path, help="--choose: where the selection rows and the choice go")
    ap.add_argument("--epochs", type=int, default=EPOCHS,
                    help=f"spa finetune --epochs (default {EPOCHS}; another: method names and V labels end in -epN)")
    ap.add_argument("--freeze-bn", action="store_true",
                    help="spa finetune --freeze-bn (method names and V labels end in -frozenbn)")
    ap.add_argument("--bn-augmented", action="store_true",
                    help="spa finetune --bn-augmented: the final BatchNorm statistics on augmented batches (method "
                         "names end in -bnaug, V labels in bn-augmented)")
    ap.add_argument("--pages", type=int, default=N_PAGES,
                    help=f"distillation pages (default {N_PAGES}, distill_det's; another: method names and V labels "
                         "end in -pagesN)")
    ap.add_argument("--feature-weight", type=float, default=0.0,
                    help="spa finetune --plan (the prune's) --feature-weight W: also match the intermediate features "
                         "(method names and V labels end in -featW)")
    ap.add_argument("--lr", default=LR,
                    help=f"spa finetune --lr (default {LR}, distill_det's; another: method names and V labels end in -lrLR)")
    ap.add_argument("--warmup", type=float, default=0.0,
                    help="spa finetune --warmup F (default none; another: method names and V labels end in -wuF)")
    ap.add_argument("--average", type=float, default=0.0,
                    help="spa finetune --average F (default none; another: method names and V labels end in -avgF)")
    ap.add_argument("--output-loss", choices=("bce",),
                    help=f"spa finetune --output-loss {OUTPUT}=KIND (default: finetune's choice, mse; another: "
                         "method names end in -KINDmap, V labels in 'KIND on the map')")
    ap.add_argument("--fonts", choices=tuple(FONT_SETS), default="dejavu",
                    help=f"the pages' faces: TRAIN_FONTS' six or (dejavu-all; method names and V labels end in "
                         f"-dejavuall / every DejaVu face) {len(FONT_SETS['dejavu-all'])} DejaVu faces, or "
                         f"(dejavu-all-families, -dejavuallfamilies) those and {len(OTHER_FAMILIES)} other families")
    ap.add_argument("--steps", help="R1:E1: prune at R1 first and distil E1 epochs, then prune that to the size of the "
                                    "ratio's one-shot prune and distil (benchmarks/stepped.py; method names end in "
                                    "-stepR1eE1, V labels in 'steps R1:E1')")
    ap.add_argument("--summarise", nargs="+", type=Path,
                    help="only print the worst and mean share per ratio and setting over these files' V rows")
    a = ap.parse_args()
    if a.summarise:
        print("\n".join(summarise(a.summarise)))
        return
    if a.choose and not a.choice_file:
        ap.error("--choose needs --choice-file")
    ratios, seeds = [float(r) for r in a.ratios.split(",")], [int(s) for s in a.seeds.split(",")]
    fonts = FONT_SETS[a.fonts]
    train_families = {Path(f).stem.split("-")[0] for f in fonts}
    if same := train_families & set(HELD_FONTS):
        raise SystemExit(f"held-out font families among the distillation fonts: {sorted(same)}")
    if HELD_TEXT in TRAIN_TEXTS:
        raise SystemExit(f"the held-out text {HELD_TEXT} is a distillation text")
    b = ocr_det()
    name = b.model.graph.input[0].name
    x_tr, _ = pages(TRAIN_TEXTS, fonts, a.pages, seed=PAGE_SEED)
    tmp = Path(tempfile.mkdtemp(prefix="distill_det_heldout_"))
    onnx.save(b.model, str(tmp / "orig.onnx"))
    np.savez(tmp / "pages.npz", **{name: x_tr})
    if not a.no_header:
        start = f"obspa --calib on the first {N_CALIB} distillation pages" if a.start == "calib" else \
            START_NAME.get(a.start, "data-free obspa (spa's default)")
        print(f"PP-OCRv4 det pruned by {start}, distilled by `spa finetune --teacher` on "
              f"{a.pages} unlabelled 320x320 pages of {'+'.join(TRAIN_TEXTS)} words in {len(fonts)} faces "
              f"({a.epochs} epochs, lr {a.lr}, batch {BATCH}: distill_det.txt's settings"
              f"{'' if a.epochs == EPOCHS else f' but its {EPOCHS} epochs'}"
              f"{'' if a.lr == LR else f' but its lr {LR}'}"
              f"{'' if not a.warmup else f', --warmup {a.warmup:g}'}"
              f"{'' if not a.average else f', --average {a.average:g}'}"
              f"{'' if a.augment == 'none' else f', --augment {a.augment}'}), scored on generalise.py's "
              f"ocr_det held-out distributions")
        print(f"# check: distillation font families {', '.join(sorted(train_families))}; held-out "
              f"{', '.join(HELD_FONTS)}: none in common; texts {'+'.join(TRAIN_TEXTS)} vs held-out {HELD_TEXT}")
        print(f"# cores {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    if a.choose:
        choose(a, ratios, seeds, name, x_tr, tmp)
        return
    method = (METHOD if a.augment == "none" else AUG_METHOD) + aug_suffix(a.augment) + \
        "".join(f"-{m}" for m, _ in variant(a))
    print(f"# {b.name}: {b.what}" + (f"; --augment {a.augment}" if a.augment != "none" else ""))
    print("# R\tmodel\tdist\tmethod\tratio\tseed\tmetric\tparams_kept\tmacs_kept\tprune_s", flush=True)
    for seed in seeds:
        for r in ratios:
            pk, mk, prune_s = start_prune(a, b, r, seed, {name: x_tr[:N_CALIB]}, tmp)
            distilled = distil(a, r, seed, a.augment, tmp)
            for d, x in b.dists.items():
                v = b.metric(distilled, x)
                print(f"R\t{b.name}\t{d}\t{method}\t{r}\t{seed}\t{v:.4f}\t{pk:.4f}\t{mk:.4f}\t{prune_s:.2f}",
                      flush=True)


def start_prune(a: argparse.Namespace, b, r: float, seed: int, calib: dict, tmp: Path) -> tuple[float, float, float]:
    """The prune distilled, saved as tmp/pruned.onnx with its plan: `--start`'s one-shot prune (generalise.pruned_only)
    or, with `--steps`, benchmarks/stepped.py's two steps (the first distilled as `distil` distils, `a.augment`, or the
    first --choose setting); its pruned-only scores on `b`'s distributions printed. Returns params, MACs kept, seconds."""
    if not a.steps:
        return pruned_only(b, a.start, r, seed, calib, tmp / "pruned.onnx")[1:]
    spec = a.choose.split("|")[0] if a.choose else a.augment

    def first(pruned: Path, plan: Path, out: Path, epochs: int):
        return finetune_args(a, pruned, plan, out, epochs, spec, seed, tmp)

    return stepped_start(b, r, seed, a.steps, tmp, first)


def distil(a: argparse.Namespace, r: float, seed: int, spec: str, tmp: Path, out=None) -> onnx.ModelProto:
    """`spa finetune --teacher` of tmp/pruned.onnx on tmp/pages.npz with `--augment spec`; its log as comments."""
    path = tmp / f"distilled_{r}_{seed}_{spec.replace(',', '+')}.onnx"
    secs, load, log = finetune_args(a, tmp / "pruned.onnx", tmp / "pruned.plan.json", path, a.epochs, spec, seed, tmp)
    feat = f", --feature-weight {a.feature_weight:g}" if a.feature_weight else ""
    what = (f"# distillation (--augment {spec}, {a.epochs} epochs{feat}) at {r}, seed {seed}: wall {secs:.1f}s, "
            f"{load}\n#     " + "\n#     ".join(log.strip().splitlines()))
    if out is None:
        print(what, flush=True)
    else:
        out(what)
    return onnx.load(str(path))


def finetune_args(a: argparse.Namespace, pruned: Path, plan: Path, path: Path, epochs: int, spec: str, seed: int,
                  tmp: Path) -> tuple[float, str, str]:
    """finetune_cli (seconds, load, log) of `spa finetune --teacher` of `pruned` on tmp/pages.npz with the run's
    settings, `epochs` and `--augment spec`, to `path`."""
    return finetune_cli([str(pruned), "--teacher", str(tmp / "orig.onnx"), "--data", str(tmp / "pages.npz"), "-o",
                         str(path), "--epochs", str(epochs), "--lr", a.lr, "--batch", str(BATCH), "--augment", spec,
                         "--seed", str(seed)]
                        + (["--freeze-bn"] if a.freeze_bn else [])
                        + (["--bn-augmented"] if a.bn_augmented else [])
                        + (["--plan", str(plan), "--feature-weight", f"{a.feature_weight:g}"] if a.feature_weight else [])
                        + (["--warmup", f"{a.warmup:g}"] if a.warmup else [])
                        + (["--average", f"{a.average:g}"] if a.average else [])
                        + (["--output-loss", f"{OUTPUT}={a.output_loss}"] if a.output_loss else []))


def choose(a: argparse.Namespace, ratios: list[float], seeds: list[int], name: str, x_tr: np.ndarray,
           tmp: Path) -> None:
    """Distil each --choose setting at every ratio and seed, score on the selection pages (V rows in
    a.choice_file, rewritten after each), and name the setting with the best worst share of the original."""
    sel = ocr_det(selection=True)
    specs = a.choose.split("|")
    lines = [(f"PP-OCRv4 det, {START_NAME.get(a.start, 'data-free obspa')} prune + `spa finetune "
              f"--teacher` (as distill_det_heldout.txt, --start {a.start}): --augment chosen among "
              f"{' / '.join(specs)} on the detector's selection pages, never on the held-out ones (pixel F-score "
              "against the original's text pixels; the original scores 1 by definition)"),
             f"# {sel.name} selection: {sel.what}",
             "# V\tmodel\tdist\taugment\tratio\tseed\tmetric"]

    def note(text: str) -> None:
        lines.extend(text.splitlines())
        a.choice_file.write_text("\n".join(lines) + "\n")

    worst = {spec: 1.0 for spec in specs}
    for seed in seeds:
        for r in ratios:
            with contextlib.redirect_stdout(io.StringIO()) as said:
                start_prune(a, sel, r, seed, {name: x_tr[:N_CALIB]}, tmp)
            note(said.getvalue().rstrip())
            for spec in specs:
                m = distil(a, r, seed, spec, tmp, out=note)
                for d, x in sel.dists.items():
                    v = sel.metric(m, x)
                    worst[spec] = min(worst[spec], v)
                    note(f"V\t{sel.name}\t{d}\t{label(spec, a)}\t{r}\t{seed}\t{v:.4f}")
    best = max(specs, key=lambda k: worst[k])  # ties: the first listed
    note(f"# choice over ratios {', '.join(map(str, ratios))} and seeds {', '.join(map(str, seeds))} (worst over "
         "them and the selection pages): " + ", ".join(f"{label(k, a)} {w:.4f}" for k, w in worst.items())
         + f" -> {label(best, a)}")
    print(f"chose --augment {best} (see {a.choice_file})")


def variant(a: argparse.Namespace) -> list[tuple[str, str]]:
    """How the run differs from distill_det's distillation of the data-free prune, as (R method suffix, V label
    suffix) pairs, in the order the raw files spell them."""
    return [p for on, p in ((a.start == "calib", ("fromcalib", "from calib")),
                            (a.start == "data-free-local", ("fromlocal", "from local")),
                            (a.epochs != EPOCHS, (f"ep{a.epochs}", f"ep{a.epochs}")),
                            (a.freeze_bn, ("frozenbn", "frozen-bn")),
                            (a.bn_augmented, ("bnaug", "bn-augmented")),
                            (a.pages != N_PAGES, (f"pages{a.pages}", f"{a.pages} pages")),
                            (a.feature_weight > 0, (f"feat{a.feature_weight:g}", f"feat {a.feature_weight:g}")),
                            (a.lr != LR, (f"lr{a.lr}", f"lr {a.lr}")),
                            (a.warmup > 0, (f"wu{a.warmup:g}", f"warm-up {a.warmup:g}")),
                            (a.average > 0, (f"avg{a.average:g}", f"averaged {a.average:g}")),
                            (a.fonts != "dejavu", (a.fonts.replace("-", ""), FONT_LABELS.get(a.fonts, a.fonts))),
                            (bool(a.output_loss), (f"{a.output_loss}map", f"{a.output_loss} on the map")),
                            (bool(a.steps), (f"step{(a.steps or '').replace(':', 'e')}", f"steps {a.steps}")))
            if on]


def aug_suffix(spec: str) -> str:
    """The R method's mark of an --augment other than none and the recipe's AUG_RECIPE: "-plusK" for the recipe's
    kinds and K (e.g. "-pluscolour"), else "-" and the kinds joined by '+'."""
    kinds, base = spec.split(","), AUG_RECIPE.split(",")
    if spec in ("none", AUG_RECIPE):
        return ""
    if all(k in kinds for k in base):
        return "-plus" + "".join(k for k in kinds if k not in base)
    return "-" + "+".join(kinds)


def label(spec: str, a: argparse.Namespace) -> str:
    """A setting's name in the V rows: the --augment spec and the run's `variant`."""
    return " ".join([spec, *(v for _, v in variant(a))])


def summarise(files: list[Path]) -> list[str]:
    """Worst and mean share per ratio and setting over the V rows of `files` (choices run in parts, side by side),
    best worst first, with the seeds each saw (compare settings run on the same seeds)."""
    rows: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for f in files:
        for line in f.read_text().splitlines():
            if line.startswith("V\t"):
                _, _, _, setting, ratio, seed, v = line.split("\t")
                rows.setdefault((ratio, setting), []).append((int(seed), float(v)))
    out = ["# ratio\tsetting\tseeds\tworst\tmean (over seeds and selection pages)"]
    for (r, k), vs in sorted(rows.items(), key=lambda kv: (kv[0][0], -min(v for _, v in kv[1]))):
        out.append(f"# {r}\t{k}\t{','.join(map(str, sorted({s for s, _ in vs})))}\t{min(v for _, v in vs):.4f}\t"
                   f"{np.mean([v for _, v in vs]):.4f}")
    return out


if __name__ == "__main__":
    main()
