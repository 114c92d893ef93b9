"""The one-pass `signals` model: one encoder pass of six MiniLM layers gives all four outputs.

The lower `frozen_layers` of all-MiniLM-L6-v2 stay as they are; ONE fine-tuned copy of the layers above is shared by
every head: intent and jailbreak read the mean-pooled output next to the [CLS] state, PII tags read the token states,
and the mean-pooled output, L2-normalised, is the sentence embedding of the cache and tool selection. Training is
multi-task (a batch is one task's rows; batches of the three tasks interleaved) with an embedding-preservation loss:
`embedding_weight * (1 - cos(embedding, all-MiniLM-L6-v2's embedding))` on every row, so the embedding stays the
original one closely enough for caches and tool indexes built with it. `frozen_layers = 6` is the frozen encoder
with heads only (the embedding then IS the original). As in the branch design, only the tuned layers train, on
frozen-layer features computed once, which is what makes the build fit on two CPU cores.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from tqdm.auto import tqdm
from transformers import BertModel

from build_engines.encoder import extended_mask, mean_pool
from build_engines.heads import run_layers, trunk_forward
from wire.bio import IGNORE

__all__ = [
    "Metric",
    "SharedResult",
    "SharedSignalsModel",
    "SharedTop",
    "Task",
    "TaskData",
    "predict_shared",
    "teacher_embeddings",
    "train_shared",
]

log = logging.getLogger(__name__)

Task = Literal["intent", "jailbreak", "pii"]


class SharedTop(nn.Module):
    """The fine-tuned upper layers (possibly none) and the three heads."""

    def __init__(self, encoder: BertModel, frozen_layers: int, intent_labels: int, pii_tags: int, dropout: float = 0.1):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.frozen_layers = frozen_layers
        self.layers = copy.deepcopy(encoder.encoder.layer[frozen_layers:])
        self.dropout = nn.Dropout(dropout)
        self.intent_head = nn.Linear(2 * hidden, intent_labels)
        self.jailbreak_head = nn.Linear(2 * hidden, 2)
        self.pii_head = nn.Linear(hidden, pii_tags)

    def states(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(token states [B, S, H], mean-pooled output [B, H]); the embedding is the latter, normalised."""
        states = run_layers(self.layers, hidden, extended_mask(attention_mask))
        pooled: torch.Tensor = mean_pool(states, attention_mask)
        return states, pooled

    def sequence_features(self, states: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.dropout(torch.cat([pooled, states[:, 0]], dim=-1))
        return features

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every output at once (the exported graph): intent, jailbreak and PII logits, the mean-pooled output."""
        states, pooled = self.states(hidden, attention_mask)
        return (
            self.task_logits("intent", states, pooled),
            self.task_logits("jailbreak", states, pooled),
            self.task_logits("pii", states, pooled),
            pooled,
        )

    def task_logits(self, task: Task, states: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        if task == "pii":
            logits: torch.Tensor = self.pii_head(self.dropout(states))
            return logits
        head = self.intent_head if task == "intent" else self.jailbreak_head
        out: torch.Tensor = head(self.sequence_features(states, pooled))
        return out


class SharedSignalsModel(nn.Module):
    """input_ids, attention_mask -> intent_probs, jailbreak_probs, pii_tag_ids, pii_tag_probs, embedding."""

    OUTPUTS = ("intent_probs", "jailbreak_probs", "pii_tag_ids", "pii_tag_probs", "embedding")

    def __init__(self, encoder: BertModel, top: SharedTop):
        super().__init__()
        self.embeddings = encoder.embeddings
        self.trunk = encoder.encoder.layer[: top.frozen_layers]
        self.top = top
        self.eval()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = trunk_forward(self.embeddings, self.trunk, input_ids, attention_mask)
        intent_logits, jailbreak_logits, pii_logits, pooled = self.top(hidden, attention_mask)  # graph scope /top/
        embedding = nn.functional.normalize(pooled, p=2, dim=1)
        intent_probs = torch.softmax(intent_logits, dim=-1)
        jailbreak_probs = torch.softmax(jailbreak_logits, dim=-1)
        pii_probs, pii_ids = torch.softmax(pii_logits, dim=-1).max(dim=-1)
        return intent_probs, jailbreak_probs, pii_ids, pii_probs, embedding


@dataclass
class TaskData:
    """One task's training or validation rows: frozen-layer features, labels, the teacher embedding per row."""

    features: list[torch.Tensor]
    labels: list[Any]
    teacher: torch.Tensor


@torch.no_grad()
def teacher_embeddings(
    encoder: BertModel, frozen_layers: int, features: Sequence[torch.Tensor], batch_size: int = 64
) -> torch.Tensor:
    """all-MiniLM-L6-v2's sentence embedding of each row, continued from its frozen-layer features."""
    layers = encoder.encoder.layer[frozen_layers:]
    out = torch.empty((len(features), encoder.config.hidden_size))
    order = sorted(range(len(features)), key=lambda i: features[i].shape[0])
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        hidden, mask = _pad([features[i] for i in index])
        pooled = mean_pool(run_layers(layers, hidden, extended_mask(mask)), mask)
        out[index] = nn.functional.normalize(pooled, p=2, dim=1)
    return out


def _pad(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(f.shape[0] for f in features)
    hidden = torch.zeros((len(features), width, features[0].shape[1]))
    mask = torch.zeros((len(features), width), dtype=torch.int64)
    for i, f in enumerate(features):
        hidden[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = 1
    return hidden, mask


def _targets(task: Task, labels: Sequence[Any], width: int) -> torch.Tensor:
    if task != "pii":
        return torch.tensor(list(labels), dtype=torch.int64)
    target = torch.full((len(labels), width), IGNORE, dtype=torch.int64)
    for i, row in enumerate(labels):
        target[i, : len(row)] = torch.tensor(list(row), dtype=torch.int64)
    return target


def _length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (sorted within pools of 50 batches) to waste little padding."""
    index = list(range(len(lengths)))
    rng.shuffle(index)
    pool = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(index), pool):
        chunk = sorted(index[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    return batches


@torch.no_grad()
def predict_shared(
    top: SharedTop, task: Task, data: TaskData, batch_size: int = 64
) -> tuple[list[NDArray[Any]], NDArray[Any]]:
    """(softmax probabilities per row, cosine of each row's embedding to the teacher's)."""
    top.eval()
    probs: list[NDArray[Any]] = [np.empty(0)] * len(data.features)
    cosine = np.zeros(len(data.features))
    order = sorted(range(len(data.features)), key=lambda i: data.features[i].shape[0])
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        hidden, mask = _pad([data.features[i] for i in index])
        states, pooled = top.states(hidden, mask)
        p = torch.softmax(top.task_logits(task, states, pooled), dim=-1).numpy()
        cos = nn.functional.cosine_similarity(pooled, data.teacher[index], dim=1).numpy()
        for j, i in enumerate(index):
            probs[i] = p[j] if task != "pii" else p[j, : data.features[i].shape[0]]
            cosine[i] = cos[j]
    return probs, cosine


@dataclass
class SharedResult:
    top: SharedTop
    best_epoch: int
    best_score: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    lora: dict[str, torch.Tensor] = field(default_factory=dict)
    """The kept epoch's LoRA factors before merging (`package.lora_factors`): what the shipped model carries."""
    lora_scaling: float = 0.0


Metric = Callable[[list[NDArray[Any]], Any], float]


def _with_lora(top: SharedTop, rank: int, alpha: int) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.1,
        target_modules=["query", "key", "value", "dense"],
        modules_to_save=["intent_head", "jailbreak_head", "pii_head"],
    )
    return get_peft_model(top, lora)


def train_shared(
    encoder: BertModel,
    settings: Any,
    seed: int,
    head_lr_multiplier: float,
    intent_labels: int,
    pii_tags: int,
    train: dict[Task, TaskData],
    val: dict[Task, TaskData],
    metrics: dict[Task, Metric],
) -> SharedResult:
    """Multi-task training of the shared top (`settings`: `config.SharedConfig`). After each epoch, every task's
    validation metric and the validation embedding's mean cosine to the teacher; the kept epoch has the best mean
    task metric among epochs whose mean cosine reaches `settings.min_embedding_cosine` (else the best cosine)."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    top = SharedTop(encoder, settings.frozen_layers, intent_labels, pii_tags)
    lora = settings.method == "lora" and len(top.layers) > 0
    model: nn.Module = _with_lora(top, settings.lora_rank, settings.lora_alpha) if lora else top
    lr = settings.lr * (5 if lora else 1)
    head_params = [p for n, p in model.named_parameters() if "_head" in n and p.requires_grad]
    body_params = [p for n, p in model.named_parameters() if "_head" not in n and p.requires_grad]
    groups = [{"params": head_params, "lr": lr * head_lr_multiplier}]
    if body_params:
        groups.append({"params": body_params, "lr": lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    rng = random.Random(seed)
    repeats: dict[Task, int] = {"intent": settings.intent_repeats, "jailbreak": 1, "pii": settings.pii_repeats}

    def epoch_plan() -> list[tuple[Task, list[int]]]:
        plan: list[tuple[Task, list[int]]] = []
        for task, data in train.items():
            lengths = [f.shape[0] for f in data.features]
            for _ in range(repeats[task]):
                plan += [(task, b) for b in _length_batches(lengths, settings.batch_size, rng)]
        rng.shuffle(plan)
        return plan

    steps = settings.epochs * len(epoch_plan())
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)
    num_labels: dict[Task, int] = {"intent": intent_labels, "jailbreak": 2, "pii": pii_tags}
    best_state: dict[str, torch.Tensor] = copy.deepcopy(model.state_dict())
    best_key: tuple[bool, float, float] = (False, -math.inf, -math.inf)
    best_epoch, best_score = 0, -1.0
    history: list[dict[str, float]] = []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        totals = {"task": 0.0, "embedding": 0.0}
        count = 0
        progress = tqdm(epoch_plan(), desc=f"shared epoch {epoch}/{settings.epochs}", leave=False)
        for task, batch in progress:
            data = train[task]
            hidden, mask = _pad([data.features[i] for i in batch])
            target = _targets(task, [data.labels[i] for i in batch], hidden.shape[1])
            states, pooled = top.states(hidden, mask)  # peft adds its adapters to `top` in place
            logits = top.task_logits(task, states, pooled)
            task_loss = loss_fn(logits.reshape(-1, num_labels[task]), target.reshape(-1))
            cos = nn.functional.cosine_similarity(pooled, data.teacher[batch], dim=1)
            embedding_loss = (1.0 - cos).mean()
            loss = task_loss + settings.embedding_weight * embedding_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            totals["task"] += task_loss.item()
            totals["embedding"] += embedding_loss.item()
            count += 1
            progress.set_postfix(task=f"{totals['task'] / count:.3f}", emb=f"{totals['embedding'] / count:.4f}")
        row: dict[str, float] = {
            "epoch": epoch,
            "train_task_loss": totals["task"] / count,
            "train_embedding_loss": totals["embedding"] / count,
        }
        cosines: list[NDArray[Any]] = []
        for task, data in val.items():
            probs, cosine = predict_shared(top, task, data)
            row[f"val_{task}"] = metrics[task](probs, data.labels)
            cosines.append(cosine)
        all_cos = np.concatenate(cosines)
        row["val_embedding_cosine_mean"] = float(all_cos.mean())
        row["val_embedding_cosine_p5"] = float(np.percentile(all_cos, 5))
        score = float(np.mean([row[f"val_{t}"] for t in val]))
        row["val_score"] = score
        history.append(row)
        log.info("shared epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items()})
        key = (
            row["val_embedding_cosine_mean"] >= settings.min_embedding_cosine,
            score,
            row["val_embedding_cosine_mean"],
        )
        if not key[0]:
            key = (False, row["val_embedding_cosine_mean"], score)
        if key > best_key:
            best_key, best_epoch, best_score = key, epoch, score
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    factors: dict[str, torch.Tensor] = {}
    scaling = 0.0
    if lora:
        from build_engines.package import lora_factors

        factors = lora_factors(model)
        scaling = float(settings.lora_alpha / settings.lora_rank)
        top = model.merge_and_unload()  # type: ignore[operator]
    top.eval()
    return SharedResult(top, best_epoch, best_score, time.perf_counter() - started, history, factors, scaling)
