"""OBSPA vs magnitude and calibration baselines on a BERT-style encoder built here (transformers BertModel from
a config, random init: no pretrained weights ship offline), pruned WITHOUT fine-tuning: output fidelity on real
sentences. A random-init encoder has no task metric, so the measure is how much of the original computation
survives: mean cosine similarity between the original's and the pruned model's last_hidden_state per token.

Sentences: /usr/share/common-licenses/GPL-3 split at full stops; words mapped to token ids by a stable hash
(md5) into the model's vocabulary (ids 0-9 reserved, 1 = [CLS] first), 32 tokens, attention mask for the
padding. Evaluation and calibration sentences are disjoint. Heads and MLP widths are pruned; the hidden width
is a graph output here and stays. The model is the zoo's "full" bert size scaled down (hidden 256, 4 layers,
4 heads, intermediate 1024) so that it runs in seconds.

    .venv/bin/python benchmarks/obspa_bert.py > benchmarks/obspa_bert.txt
"""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spa  # noqa: E402
from spa.verify import session  # noqa: E402

RATIOS = (0.1, 0.2, 0.3, 0.5)
SEQ, N_EVAL, N_CALIB, VOCAB = 32, 64, 64, 4096
ROWS = [  # label, criterion, data-free source, uses calibration data
    ("l1", "l1", None, False),
    ("l2", "l2", None, False),
    ("wanda (calib)", "wanda", None, True),
    ("obspa noise (data-free)", "obspa", "noise", False),
    # the sentences themselves ("calib": --calib's default when these rows were run; since branch minilmcal obspa on
    # token-id models defaults to token-bag-common with --calib, spa/calib.py TOKEN_CALIB_SOURCE)
    ("obspa calib, per-layer only", "obspa", "calib", True),
    ("obspa calib", "obspa", "calib", True),
]


def build(path: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel

    from converters.torch_export import torch_to_onnx

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=1024, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, initializer_range=0.05)

    class Enc(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = BertModel(cfg, add_pooling_layer=False).eval()

        def forward(self, ids, mask):
            return self.m(input_ids=ids, attention_mask=mask).last_hidden_state

    enc = Enc().eval()
    with torch.no_grad():  # distinct biases: zero-initialised ones would be deduplicated by the exporter into
        for name, p in enc.named_parameters():  # one shared initializer, tying every layer into one group
            if name.endswith("bias"):
                p.normal_(0.0, 0.02)
    ids = torch.ones(2, SEQ, dtype=torch.long)
    torch_to_onnx(enc, (ids, torch.ones_like(ids)), path, exporter="legacy",
                  input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"])


def sentences() -> list[str]:
    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    out = [re.sub(r"\s+", " ", s).strip() for s in text.split(".")]
    return [s for s in out if len(s.split()) >= 6]


def encode(sents: list[str]) -> dict[str, np.ndarray]:
    ids = np.zeros((len(sents), SEQ), np.int64)
    mask = np.zeros((len(sents), SEQ), np.int64)
    for i, s in enumerate(sents):
        toks = [1] + [10 + int(hashlib.md5(w.lower().encode()).hexdigest(), 16) % (VOCAB - 10)
                      for w in re.findall(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]", s)][: SEQ - 1]
        ids[i, : len(toks)] = toks
        mask[i, : len(toks)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def fidelity(model, feeds: dict[str, np.ndarray], ref: np.ndarray) -> float:
    y = session(model).run(None, feeds)[0]
    m = feeds["attention_mask"].astype(bool)
    a, b = ref[m], y[m]
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(np.mean(cos))


def main() -> None:
    d = Path(tempfile.mkdtemp())
    path = d / "bert.onnx"
    build(path)
    sents = sentences()
    ev, ca = encode(sents[:N_EVAL]), encode(sents[N_EVAL : N_EVAL + N_CALIB])
    import onnx

    m = onnx.load(str(path))
    ref = session(m).run(None, ev)[0]
    rep = spa.analyze(m)
    print(f"BERT-style encoder (transformers BertModel, random init): hidden 256, 4 layers, 4 heads, "
          f"intermediate 1024, vocab {VOCAB}; params {rep.stats.params}")
    print(f"groups {len(rep.analysis.groups)}, prunable {len(rep.analysis.prunable)} (heads and MLP widths; the "
          f"hidden width is a graph output)")
    print(f"evaluation {N_EVAL} GPL-3 sentences, calibration {N_CALIB} other ones, {SEQ} tokens; metric: mean "
          f"per-token cosine similarity of last_hidden_state to the original's (1 = unchanged)")
    print(f"{'criterion':30s}" + "".join(f"{'r=' + str(r):>9s}" for r in RATIOS) + f"{'prune s':>9s}  params kept")
    for label, crit, source, uses_calib in ROWS:
        vals, secs, kept = [], [], []
        for r in RATIOS:
            t0 = time.perf_counter()
            pruned, pr = spa.prune(m, ratio=r, criterion=crit, calib=ca if uses_calib else None,
                                   calib_source=source, refit=False if "per-layer" in label else None)
            secs.append(time.perf_counter() - t0)
            kept.append(pr.after.params / pr.before.params)
            vals.append(fidelity(pruned, ev, ref))
        print(f"{label:30s}" + "".join(f"{v:9.4f}" for v in vals) + f"{np.mean(secs):9.2f}  "
              + "/".join(f"{k:.2f}" for k in kept))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
