"""Does another run of the `signals` graph answer as onnxruntime's float32 run does?

The TensorRT builder (`tensorrt_build`) and `deploy/gpu_check.py` both compare a candidate (a TensorRT plan, the
graph in FP16 on a GPU) with the reference (onnxruntime, CPU, float32) on real tokenized prompts, and refuse the
candidate when it returns NaN/inf or disagrees:

- intent: the same top-1 label on at least 99% of the rows;
- jailbreak: the probabilities within 0.02 on every row (the router compares them with a threshold);
- embedding: cosine similarity at least 0.999 on every row (the semantic cache compares it with stored vectors);
- PII: the same tag on at least 99% of the real (unpadded) tokens.

Numpy only (no torch, no onnxruntime, no TensorRT): `deploy/gpu_check.py` loads this file by its path on a machine
that has nothing of this repository installed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BATCH_SIZES",
    "LENGTHS",
    "OUTPUTS",
    "Agreement",
    "Batch",
    "Thresholds",
    "compare_runs",
    "rows_of_length",
    "validation_batches",
]

OUTPUTS = ("intent_probs", "jailbreak_probs", "pii_tag_ids", "pii_tag_probs", "embedding")
BATCH_SIZES = (1, 16, 64)
LENGTHS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 64, 89, 128, 144, 200, 256, 300, 384, 450, 500, 511, 512)
"""Token counts the check covers at batch 1 (and mixes into the larger batches): every power-of-two edge the
kernels may switch at, and both ends of the served range (1 and the router's truncation length, 512)."""

Outputs = Mapping[str, NDArray[Any]]
Runner = Callable[[NDArray[np.int64], NDArray[np.int64]], Outputs]


@dataclass(frozen=True)
class Thresholds:
    intent_top1: float = 0.99
    jailbreak_diff: float = 0.02
    embedding_cosine: float = 0.999
    pii_tags: float = 0.99


@dataclass(frozen=True)
class Batch:
    input_ids: NDArray[np.int64]
    attention_mask: NDArray[np.int64]

    @property
    def shape(self) -> tuple[int, int]:
        rows, width = self.input_ids.shape
        return int(rows), int(width)


@dataclass
class Agreement:
    """Figures accumulated over batches; `failures` names every threshold missed."""

    rows: int = 0
    tokens: int = 0
    intent_same: int = 0
    pii_same: int = 0
    jailbreak_max_diff: float = 0.0
    embedding_min_cosine: float = 1.0
    nonfinite: dict[str, int] = field(default_factory=dict)

    def add(self, reference: Outputs, candidate: Outputs, attention_mask: NDArray[np.int64]) -> None:
        real = attention_mask.astype(bool)
        for name in OUTPUTS:
            for side, outputs in (("candidate", candidate), ("reference", reference)):
                if name not in outputs:
                    raise KeyError(f"the {side} run has no output {name!r}")
                values = np.asarray(outputs[name])
                at_real = values[real] if values.ndim == 2 and name.startswith("pii") else values
                bad = int(np.size(at_real) - np.count_nonzero(np.isfinite(at_real)))
                if bad:
                    key = name if side == "candidate" else f"{name} (reference)"
                    self.nonfinite[key] = self.nonfinite.get(key, 0) + bad
        rows = int(real.shape[0])
        ref_intent, cand_intent = np.asarray(reference["intent_probs"]), np.asarray(candidate["intent_probs"])
        self.intent_same += int(np.sum(ref_intent.argmax(-1) == cand_intent.argmax(-1)))
        diff = np.abs(np.asarray(reference["jailbreak_probs"], np.float64) - np.asarray(candidate["jailbreak_probs"]))
        self.jailbreak_max_diff = _nan_max(self.jailbreak_max_diff, _worst(diff))
        cosine = _cosine(np.asarray(reference["embedding"]), np.asarray(candidate["embedding"]))
        self.embedding_min_cosine = -_nan_max(-self.embedding_min_cosine, -_least(cosine))
        ref_tags, cand_tags = np.asarray(reference["pii_tag_ids"]), np.asarray(candidate["pii_tag_ids"])
        self.pii_same += int(np.sum(ref_tags[real] == cand_tags[real]))
        self.tokens += int(real.sum())
        self.rows += rows

    def figures(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "tokens": self.tokens,
            "intent_top1_agreement": self.intent_same / self.rows if self.rows else None,
            "jailbreak_max_abs_diff": self.jailbreak_max_diff,
            "embedding_min_cosine": self.embedding_min_cosine,
            "pii_tag_agreement": self.pii_same / self.tokens if self.tokens else None,
            "nonfinite_values": dict(self.nonfinite),
        }

    def failures(self, thresholds: Thresholds = Thresholds()) -> list[str]:
        if not self.rows:
            return ["nothing was compared"]
        found = [f"{count} NaN/inf values in {name}" for name, count in sorted(self.nonfinite.items())]
        if self.intent_same / self.rows < thresholds.intent_top1:
            found.append(f"intent top-1 agreement {self.intent_same / self.rows:.4f} < {thresholds.intent_top1}")
        if not self.jailbreak_max_diff <= thresholds.jailbreak_diff:  # NaN fails too
            found.append(
                f"jailbreak probability differs by {self.jailbreak_max_diff:.4f} > {thresholds.jailbreak_diff}"
            )
        if not self.embedding_min_cosine >= thresholds.embedding_cosine:
            found.append(f"embedding cosine {self.embedding_min_cosine:.5f} < {thresholds.embedding_cosine}")
        if self.pii_same / self.tokens < thresholds.pii_tags:
            found.append(f"PII tag agreement {self.pii_same / self.tokens:.4f} < {thresholds.pii_tags}")
        return found


def _nan_max(a: float, b: float) -> float:
    """max() that keeps a NaN (Python's max(0.0, nan) is 0.0): a NaN seen once stays in the figures."""
    return float("nan") if np.isnan(a) or np.isnan(b) else max(a, b)


def _worst(values: NDArray[Any]) -> float:
    """Largest value; NaN when any is NaN (so that a NaN can never pass a `<=` threshold)."""
    return float(np.max(values)) if values.size else 0.0


def _least(values: NDArray[Any]) -> float:
    return float(np.min(values)) if values.size else 1.0


def _cosine(a: NDArray[Any], b: NDArray[Any]) -> NDArray[np.float64]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: NDArray[np.float64] = (a64 * b64).sum(-1) / (
            np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)
        )
    return result


def rows_of_length(prompts: Sequence[Sequence[int]], lengths: Iterable[int], cls: int, sep: int) -> list[list[int]]:
    """One row per length, made of real prompt tokens as the router's tokenizer would send them.

    `prompts` are tokenized prompts ([CLS] ... [SEP]). A row of n tokens is [CLS], the next n - 2 tokens of the
    prompts' texts run together (each row starts at another prompt), [SEP]; a row of 1 is [CLS] alone (the
    shortest input the plan accepts)."""
    body = [token for row in prompts for token in row if token not in (cls, sep)]
    if not body:
        raise ValueError("no prompt tokens")
    starts = np.cumsum([0] + [sum(1 for t in row if t not in (cls, sep)) for row in prompts[:-1]]).tolist()
    rows = []
    for i, n in enumerate(lengths):
        if n < 1:
            raise ValueError(f"length {n} < 1")
        if n == 1:
            rows.append([cls])
            continue
        start = int(starts[i % len(starts)])
        inner = [body[(start + k) % len(body)] for k in range(n - 2)]
        rows.append([cls, *inner, sep])
    return rows


def _pad(rows: Sequence[Sequence[int]]) -> Batch:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return Batch(ids, mask)


def validation_batches(
    prompts: Sequence[Sequence[int]],
    cls: int,
    sep: int,
    max_sequence: int = 512,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seed: int = 0,
) -> list[Batch]:
    """The inputs a plan is checked on: real prompts at every length of `LENGTHS` up to `max_sequence`.

    - batch 1: each length alone, and each prompt at its own length;
    - every larger batch size: the prompts at their own lengths (the common serving shape: short chat turns,
      padded to the longest), then rows mixing every length, 1 and `max_sequence` in each batch.
    """
    lengths = [n for n in LENGTHS if n <= max_sequence]
    if max_sequence not in lengths:
        lengths.append(max_sequence)
    natural = [list(p[:max_sequence]) for p in prompts]
    batches = [_pad([row]) for row in rows_of_length(prompts, lengths, cls, sep)]
    batches += [_pad([row]) for row in natural]
    rng = random.Random(seed)
    for size in batch_sizes:
        if size == 1:
            continue
        order = natural[:]
        rng.shuffle(order)
        full = -(-len(order) // size) * size  # whole batches: the prompts again to fill the last one
        order = [order[i % len(order)] for i in range(full)]
        for start in range(0, full, size):
            batches.append(_pad(order[start : start + size]))
        mixed = [1, max_sequence] + [rng.choice(lengths) for _ in range(size - 2)]
        rng.shuffle(mixed)
        batches.append(_pad(rows_of_length(prompts, mixed, cls, sep)))
    return batches


def run_all(runner: Runner, batches: Iterable[Batch]) -> list[Outputs]:
    return [runner(b.input_ids, b.attention_mask) for b in batches]


def compare_runs(
    batches: Sequence[Batch],
    reference: Sequence[Outputs],
    candidate: Sequence[Outputs],
    thresholds: Thresholds = Thresholds(),
) -> dict[str, Any]:
    """Figures overall and by batch size, the failures (empty: the candidate passes), the shapes compared."""
    if not len(batches) == len(reference) == len(candidate):
        raise ValueError(f"{len(batches)} batches, {len(reference)} reference and {len(candidate)} candidate runs")
    overall = Agreement()
    by_size: dict[int, Agreement] = {}
    for batch, ref, cand in zip(batches, reference, candidate, strict=True):
        overall.add(ref, cand, batch.attention_mask)
        by_size.setdefault(batch.shape[0], Agreement()).add(ref, cand, batch.attention_mask)
    widths = [b.shape[1] for b in batches]
    return {
        "thresholds": asdict(thresholds),
        "batches": len(batches),
        "batch_sizes": sorted(by_size),
        "sequence_lengths": [min(widths), max(widths)] if widths else [],
        "figures": overall.figures(),
        "by_batch_size": {str(size): agreement.figures() for size, agreement in sorted(by_size.items())},
        "failures": overall.failures(thresholds),
        "passed": not overall.failures(thresholds),
    }
