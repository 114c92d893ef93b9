"""Training of the task tops over cached trunk features: full fine-tuning or LoRA (merged), seeded.

The trunk (embeddings + lower layers) is frozen, so its output is computed once per example and reused every
epoch; only the task's top layers and head train. Model selection (best epoch) uses the validation split.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from tqdm.auto import tqdm
from transformers import BertModel

from build_engines.config import BuildConfig, TaskConfig
from build_engines.encoder import pad_batch
from build_engines.heads import TaskKind, TaskTop, trunk_forward
from wire.bio import IGNORE

__all__ = ["TrainResult", "predict", "seed_everything", "train_top", "trunk_features"]

log = logging.getLogger(__name__)

Labels = Sequence[int] | Sequence[Sequence[int]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@torch.no_grad()
def trunk_features(
    encoder: BertModel,
    trunk_layers: int,
    rows: Sequence[Sequence[int]],
    batch_size: int = 64,
    desc: str = "trunk",
) -> list[torch.Tensor]:
    """Unpadded trunk output [len, hidden] per row (padding never changes real positions: exact)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out: list[torch.Tensor] = [torch.empty(0)] * len(rows)
    layers = encoder.encoder.layer[:trunk_layers]
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        index = order[start : start + batch_size]
        ids, mask = pad_batch([rows[i] for i in index])
        hidden = trunk_forward(encoder.embeddings, layers, ids, mask)
        for j, i in enumerate(index):
            out[i] = hidden[j, : len(rows[i])].clone()
    return out


def _collate(
    features: Sequence[torch.Tensor], labels: Sequence[Any] | None, kind: TaskKind
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    width = max(f.shape[0] for f in features)
    hidden = torch.zeros((len(features), width, features[0].shape[1]))
    mask = torch.zeros((len(features), width), dtype=torch.int64)
    for i, f in enumerate(features):
        hidden[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = 1
    if labels is None:
        return hidden, mask, None
    if kind == "sequence":
        return hidden, mask, torch.tensor(list(labels), dtype=torch.int64)
    target = torch.full((len(features), width), IGNORE, dtype=torch.int64)
    for i, row in enumerate(labels):
        target[i, : len(row)] = torch.tensor(list(row), dtype=torch.int64)
    return hidden, mask, target


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (sorted within pools of 50 batches) to waste little padding."""
    index = list(range(len(lengths)))
    rng.shuffle(index)
    pool = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(index), pool):
        chunk = sorted(index[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def predict(
    top: nn.Module, features: Sequence[torch.Tensor], kind: TaskKind, batch_size: int = 64
) -> list[NDArray[Any]]:
    """Softmax probabilities per row ([labels] for sequence tasks, [len, labels] for token tasks)."""
    top.eval()
    out: list[NDArray[Any]] = [np.empty(0)] * len(features)
    order = sorted(range(len(features)), key=lambda i: features[i].shape[0])
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        hidden, mask, _ = _collate([features[i] for i in index], None, kind)
        probs = torch.softmax(top(hidden, mask), dim=-1).numpy()
        for j, i in enumerate(index):
            out[i] = probs[j] if kind == "sequence" else probs[j, : features[i].shape[0]]
    return out


@dataclass
class TrainResult:
    top: TaskTop
    best_epoch: int
    best_val: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _with_lora(top: TaskTop, config: BuildConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.1,
        target_modules=["query", "key", "value", "dense"],
        modules_to_save=["head"],
    )
    return get_peft_model(top, lora)


def train_top(
    name: str,
    encoder: BertModel,
    config: BuildConfig,
    task: TaskConfig,
    kind: TaskKind,
    num_labels: int,
    train: tuple[Sequence[torch.Tensor], Labels],
    val: tuple[Sequence[torch.Tensor], Labels],
    val_metric: Callable[[list[NDArray[Any]], Any], float],
    class_weights: torch.Tensor | None = None,
) -> TrainResult:
    """Train one task top; keep the epoch with the best validation metric; LoRA is merged at the end."""
    seed_everything(config.seed)
    started = time.perf_counter()
    top = TaskTop(encoder, task.branch_layer, num_labels, kind)
    model: nn.Module = _with_lora(top, config) if task.method == "lora" else top
    lr = task.lr * (5 if task.method == "lora" else 1)
    head_params = [p for n, p in model.named_parameters() if "head" in n and p.requires_grad]
    body_params = [p for n, p in model.named_parameters() if "head" not in n and p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": body_params, "lr": lr}, {"params": head_params, "lr": lr * config.head_lr_multiplier}],
        weight_decay=0.01,
    )
    features, labels = train
    lengths = [f.shape[0] for f in features]
    rng = random.Random(config.seed)
    steps = task.epochs * math.ceil(len(features) / task.batch_size)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    loss_fn = nn.CrossEntropyLoss(weight=class_weights, ignore_index=IGNORE)
    best_state: dict[str, torch.Tensor] = copy.deepcopy(model.state_dict())
    best_val, best_epoch = -1.0, 0
    history: list[dict[str, float]] = []
    for epoch in range(1, task.epochs + 1):
        model.train()
        total, count = 0.0, 0
        progress = tqdm(
            _batches(lengths, task.batch_size, rng), desc=f"{name} epoch {epoch}/{task.epochs}", leave=False
        )
        for batch in progress:
            hidden, mask, target = _collate([features[i] for i in batch], [labels[i] for i in batch], kind)
            assert target is not None
            logits = model(hidden, mask)
            loss = loss_fn(logits.reshape(-1, num_labels), target.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(batch)
            count += len(batch)
            progress.set_postfix(loss=f"{total / count:.4f}")
        score = val_metric(predict(model, val[0], kind), val[1])
        history.append({"epoch": epoch, "train_loss": total / count, "val_metric": score})
        log.info("%s epoch %d: loss %.4f, validation %.4f", name, epoch, total / count, score)
        if score > best_val:
            best_val, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    if task.method == "lora":
        top = model.merge_and_unload()  # type: ignore[operator]
    top.eval()
    return TrainResult(top, best_epoch, best_val, time.perf_counter() - started, history)
