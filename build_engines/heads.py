"""Task tops and the one-pass multi-head `signals` graph.

Design: the embeddings and the lower `trunk_layers` BERT layers are the ORIGINAL MiniLM and shared by every
signal. Above the trunk, the original top layers produce the sentence embedding (so it equals
sentence-transformers), and each task has its own fine-tuned copy of the top layers plus a head. With
trunk_layers=0 every task is a fully fine-tuned encoder (the 4-model ensemble, computed in one graph).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn
from transformers import BertModel

from build_engines.encoder import extended_mask, mean_pool

__all__ = ["SignalsModel", "TaskKind", "TaskTop", "run_layers", "trunk_forward"]

TaskKind = Literal["sequence", "token"]


def run_layers(layers: nn.ModuleList, hidden: torch.Tensor, ext_mask: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        hidden = layer(hidden, ext_mask)
    return hidden


def trunk_forward(
    embeddings: nn.Module, trunk: nn.ModuleList, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Hidden states after the shared, frozen lower layers."""
    hidden = embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
    return run_layers(trunk, hidden, extended_mask(attention_mask))


class TaskTop(nn.Module):
    """Fine-tuned copies of the encoder's top layers and a linear head (mean-pooled or per token)."""

    def __init__(self, encoder: BertModel, trunk_layers: int, num_labels: int, kind: TaskKind, dropout: float = 0.1):
        super().__init__()
        self.kind = kind
        self.layers = copy.deepcopy(encoder.encoder.layer[trunk_layers:])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = run_layers(self.layers, hidden, extended_mask(attention_mask))
        if self.kind == "sequence":
            hidden = mean_pool(hidden, attention_mask)
        return self.head(self.dropout(hidden))


class SignalsModel(nn.Module):
    """input_ids, attention_mask -> intent_probs, jailbreak_probs, pii_tag_ids, pii_tag_probs, embedding."""

    OUTPUTS = ("intent_probs", "jailbreak_probs", "pii_tag_ids", "pii_tag_probs", "embedding")

    def __init__(self, encoder: BertModel, trunk_layers: int, intent: TaskTop, jailbreak: TaskTop, pii: TaskTop):
        super().__init__()
        self.embeddings = encoder.embeddings
        self.trunk = encoder.encoder.layer[:trunk_layers]
        self.embedding_top = encoder.encoder.layer[trunk_layers:]
        self.intent = intent
        self.jailbreak = jailbreak
        self.pii = pii
        self.eval()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = trunk_forward(self.embeddings, self.trunk, input_ids, attention_mask)
        top = run_layers(self.embedding_top, hidden, extended_mask(attention_mask))
        embedding = nn.functional.normalize(mean_pool(top, attention_mask), p=2, dim=1)
        intent_probs = torch.softmax(self.intent(hidden, attention_mask), dim=-1)
        jailbreak_probs = torch.softmax(self.jailbreak(hidden, attention_mask), dim=-1)
        pii_probs, pii_ids = torch.softmax(self.pii(hidden, attention_mask), dim=-1).max(dim=-1)
        return intent_probs, jailbreak_probs, pii_ids, pii_probs, embedding
