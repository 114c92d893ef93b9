"""Example types, JSONL reading, seeded group-wise splitting and leakage guards shared by the data sets."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "DataSplits",
    "SourceInfo",
    "TextExample",
    "cluster_near_duplicates",
    "dedupe",
    "normalise",
    "read_jsonl",
    "split_by_group",
]

T = TypeVar("T")


@dataclass(frozen=True)
class TextExample:
    """One labelled text. `group` keeps near-duplicates (a template family) on one side of a split."""

    text: str
    label: str
    source: str
    group: str


@dataclass(frozen=True)
class SourceInfo:
    name: str
    licence: str
    detail: str = ""


@dataclass
class DataSplits:
    """train/val/test lists of one task, plus provenance for the report."""

    train: list[Any]
    val: list[Any]
    test: list[Any]
    sources: list[SourceInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self, key: Callable[[Any], str]) -> dict[str, dict[str, int]]:
        return {
            name: dict(sorted(Counter(key(x) for x in rows).items()))
            for name, rows in (("train", self.train), ("val", self.val), ("test", self.test))
        }


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                yield json.loads(line)


_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """Key for exact-duplicate detection: case, punctuation and spacing ignored."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def dedupe(rows: Iterable[T], text: Callable[[T], str], exclude: Iterable[str] = ()) -> list[T]:
    """First occurrence of each normalised text, dropping any that appear in `exclude` (e.g. a test split)."""
    seen = {normalise(t) for t in exclude}
    out: list[T] = []
    for row in rows:
        key = normalise(text(row))
        if key and key not in seen:
            seen.add(key)
            out.append(row)
    return out


def split_by_group(rows: Sequence[T], group: Callable[[T], str], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Deterministically move whole groups (about `fraction` of the rows) to the second list."""
    groups = sorted({group(r) for r in rows})
    random.Random(seed).shuffle(groups)
    sizes = Counter(group(r) for r in rows)
    target = fraction * len(rows)
    held: set[str] = set()
    taken = 0
    for g in groups:
        if taken >= target:
            break
        held.add(g)
        taken += sizes[g]
    return [r for r in rows if group(r) not in held], [r for r in rows if group(r) in held]


def cluster_near_duplicates(texts: Sequence[str], threshold: float = 0.5) -> list[int]:
    """Cluster id per text: connected components of TF-IDF cosine similarity >= threshold.

    Jailbreak templates circulate in many lightly edited copies; a split by row would leak them across splits.
    """
    from scipy.sparse.csgraph import connected_components
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not texts:
        return []
    matrix = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform(texts)
    similar = (matrix @ matrix.T) >= threshold
    _, labels = connected_components(similar, directed=False)
    return [int(x) for x in labels]
