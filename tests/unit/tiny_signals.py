"""A small random `signals` model (2 BERT layers, hidden 32, MiniLM's vocabulary) for export and plan-check tests.

Same module structure and ONNX outputs as the served model, built in well under a second: the export's numerics
(mask constant, dynamic axes, the plan check's comparisons) do not depend on the trained weights. `decisive` scales
the heads so that intent top-1 and PII tags are not near-ties (a random head's softmax is almost flat, and any
rounding would flip its argmax)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertModel

from build_engines.data.labels import INTENT_LABELS, bio_tags
from build_engines.export_onnx import export_signals
from build_engines.shared import SharedSignalsModel, SharedTop

VOCAB = 30522  # all-MiniLM-L6-v2's: real tokenizer ids fit


def tiny_model(seed: int = 0, decisive: float = 1.0) -> SharedSignalsModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        attn_implementation="eager",
    )
    encoder = BertModel(config, add_pooling_layer=False)
    encoder.eval()
    top = SharedTop(encoder, frozen_layers=1, intent_labels=len(INTENT_LABELS), pii_tags=len(bio_tags()))
    with torch.no_grad():
        for head in (top.intent_head, top.jailbreak_head, top.pii_head):
            head.weight.mul_(decisive)
    return SharedSignalsModel(encoder, top)


def tiny_graph(path: Path, seed: int = 0, decisive: float = 1.0) -> Path:
    return export_signals(tiny_model(seed, decisive), path)
