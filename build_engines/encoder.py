"""The base encoder (all-MiniLM-L6-v2): loading, tokenizing, and sentence-transformers' mean pooling."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, normalizers
from transformers import BertModel
from transformers.utils import logging as hf_logging

from build_engines.paths import encoder_path

__all__ = [
    "MASKED_SCORE",
    "MAX_SEQ_LENGTH",
    "Encoded",
    "encode",
    "extended_mask",
    "load_encoder",
    "load_tokenizer",
    "mean_pool",
    "pad_batch",
    "sentence_embedding",
]

MAX_SEQ_LENGTH = 512


def load_tokenizer(max_length: int = MAX_SEQ_LENGTH, path: Path | None = None, compat: bool = True) -> Tokenizer:
    """The fast tokenizer with truncation at `max_length` and no padding (batches pad to their longest).

    `compat` (the served tokenizer): Unicode NFKC before BERT's own normalizer, so compatibility forms read as the
    letters they show. all-MiniLM-L6-v2's vocabulary has no fullwidth letters, mathematical alphanumerics or
    ligatures: without it `ｉｇｎｏｒｅ ａｌｌ` is a row of [UNK] to every classifier (a known filter-evasion
    trick) and a benign fullwidth question reads as noise. Offsets still index the original
    text. `compat=False` is the base encoder's tokenizer as published (the reference embedding)."""
    tokenizer = Tokenizer.from_file(str((path or encoder_path()) / "tokenizer.json"))
    if compat and tokenizer.normalizer is not None and "NFKC" not in repr(tokenizer.normalizer):
        tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), tokenizer.normalizer])
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def load_encoder(path: Path | None = None) -> BertModel:
    """all-MiniLM-L6-v2 with eager attention (exports to plain ONNX ops); its unused pooler is not loaded."""
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # silences the skipped-pooler load report
    model: BertModel = BertModel.from_pretrained(
        str(path or encoder_path()), attn_implementation="eager", add_pooling_layer=False
    )
    model.eval()  # type: ignore[no-untyped-call]
    return model


class Encoded:
    """Token ids and character offsets of one text."""

    __slots__ = ("ids", "offsets")

    def __init__(self, ids: list[int], offsets: list[tuple[int, int]]) -> None:
        self.ids = ids
        self.offsets = offsets


def encode(tokenizer: Tokenizer, texts: Sequence[str]) -> list[Encoded]:
    return [Encoded(list(e.ids), [(int(a), int(b)) for a, b in e.offsets]) for e in tokenizer.encode_batch(list(texts))]


def pad_batch(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) int64, padded with 0 to the longest row."""
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        mask[i, : len(r)] = 1
    return ids, mask


MASKED_SCORE = -1.0e4
"""What a padding position adds to an attention score. Finite in FP16 (whose largest magnitude is 65504): the
float32 minimum (-3.4e38, what Hugging Face's BERT uses) becomes -inf when TensorRT runs the graph in FP16, and
`0 * -inf` is NaN for every real token (NVIDIA/TensorRT#1500, #2118). In float32 the two give the same outputs:
exp(score - 1e4 - max) underflows to exactly 0 like exp(-3.4e38) does, as long as real scores stay far below 1e4
(tests/unit/test_export_fp16_mask.py compares both, bit for bit)."""


def extended_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Additive attention mask [B, 1, 1, S] as BERT's eager attention expects it (0 for tokens, -1e4 for padding)."""
    return (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * MASKED_SCORE


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' Pooling(mean): masked sum over tokens divided by the clamped token count."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


@torch.no_grad()
def sentence_embedding(model: BertModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Reference all-MiniLM-L6-v2 embedding: HF forward, mean pooling, L2 norm (as sentence-transformers)."""
    hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return torch.nn.functional.normalize(mean_pool(hidden, attention_mask), p=2, dim=1)
