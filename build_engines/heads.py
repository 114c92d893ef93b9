"""Task tops and the one-pass multi-head `signals` graph.

Design: the ORIGINAL MiniLM (embeddings + 6 layers, frozen) is the trunk: its output gives the sentence
embedding, so that stays equal to sentence-transformers. Each task branches off the trunk at its own depth
(`branch_layer`) with a fine-tuned copy of the layers above plus a head. One pass computes everything:
6 trunk layers + the task tops. With every branch at 0 the graph is four separate encoders (the ensemble).
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
        output: torch.Tensor = layer(hidden, ext_mask)
        hidden = output
    return hidden


def trunk_forward(
    embeddings: nn.Module, trunk: nn.ModuleList, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Hidden states after the shared, frozen lower layers."""
    hidden = embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
    return run_layers(trunk, hidden, extended_mask(attention_mask))


class TaskTop(nn.Module):
    """Fine-tuned copies of the encoder's top layers and a linear head (mean-pooled or per token)."""

    def __init__(self, encoder: BertModel, branch_layer: int, num_labels: int, kind: TaskKind, dropout: float = 0.1):
        super().__init__()
        self.kind = kind
        self.branch_layer = branch_layer
        self.layers = copy.deepcopy(encoder.encoder.layer[branch_layer:])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = run_layers(self.layers, hidden, extended_mask(attention_mask))
        if self.kind == "sequence":
            hidden = mean_pool(hidden, attention_mask)
        logits: torch.Tensor = self.head(self.dropout(hidden))
        return logits


class SignalsModel(nn.Module):
    """input_ids, attention_mask -> intent_probs, jailbreak_probs, pii_tag_ids, pii_tag_probs, embedding."""

    OUTPUTS = ("intent_probs", "jailbreak_probs", "pii_tag_ids", "pii_tag_probs", "embedding")

    def __init__(self, encoder: BertModel, intent: TaskTop, jailbreak: TaskTop, pii: TaskTop):
        super().__init__()
        self.embeddings = encoder.embeddings
        self.trunk = encoder.encoder.layer
        self.intent = intent
        self.jailbreak = jailbreak
        self.pii = pii
        self.eval()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = extended_mask(attention_mask)
        states = [self.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))]
        for layer in self.trunk:
            states.append(layer(states[-1], mask))
        embedding = nn.functional.normalize(mean_pool(states[-1], attention_mask), p=2, dim=1)
        intent_probs = torch.softmax(self.intent(states[self.intent.branch_layer], attention_mask), dim=-1)
        jailbreak_probs = torch.softmax(self.jailbreak(states[self.jailbreak.branch_layer], attention_mask), dim=-1)
        pii_logits = self.pii(states[self.pii.branch_layer], attention_mask)
        pii_probs, pii_ids = torch.softmax(pii_logits, dim=-1).max(dim=-1)
        return intent_probs, jailbreak_probs, pii_ids, pii_probs, embedding
