"""Intent data: the authored train/test sets, weak sources (WordNet, chatterbot-corpus), public sets.

The authored test set (`intent_test/`) is written independently of the train set and is never trained on.
Validation is carved from the authored train set only, so model selection sees realistic prompts.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from build_engines.data.chatterbot import chatterbot_turns
from build_engines.data.common import DataSplits, SourceInfo, TextExample, dedupe, read_jsonl, split_by_group
from build_engines.data.labels import INTENT_LABELS
from build_engines.data.wordnet import wordnet_examples

__all__ = ["CATEGORY_ALIASES", "authored_intent", "external_intent", "load_intent"]

log = logging.getLogger(__name__)

# Public sets label categories with other spellings; MMLU-Pro's 14 categories are ours already.
CATEGORY_ALIASES: Mapping[str, str] = {
    "computer_science": "computer science",
    "cs": "computer science",
    "mathematics": "math",
    "medicine": "health",
    "medical": "health",
    "finance": "economics",
    "legal": "law",
    "misc": "other",
    "miscellaneous": "other",
}

TEXT_COLUMNS = ("text", "question", "prompt")
LABEL_COLUMNS = ("category", "label", "subject")


def _category(raw: object) -> str | None:
    name = str(raw).strip().lower().replace("-", " ")
    name = CATEGORY_ALIASES.get(name, CATEGORY_ALIASES.get(name.replace(" ", "_"), name))
    return name if name in INTENT_LABELS else None


def authored_intent(directory: Path, source: str) -> list[TextExample]:
    """Rows `{"text", "category"}` of every `*.jsonl` under `directory`; unknown categories are skipped."""
    rows: list[TextExample] = []
    skipped = 0
    for path in sorted(directory.glob("*.jsonl")):
        for i, row in enumerate(read_jsonl(path)):
            label = _category(row.get("category", ""))
            text = str(row.get("text", "")).strip()
            if label is None or not text:
                skipped += 1
                continue
            rows.append(TextExample(text, label, source, f"{source}:{path.stem}:{i}"))
    if skipped:
        log.warning("%s: skipped %d rows with an unknown category or no text", directory, skipped)
    return rows


def _rows_of_file(path: Path) -> Iterator[Mapping[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from read_jsonl(path)
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        yield from data if isinstance(data, list) else data.get("data", [])
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            yield from csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        import pandas as pd

        yield from pd.read_parquet(path).to_dict("records")
    else:
        raise ValueError(f"unsupported file type {path} (use .jsonl, .json, .csv, .tsv or .parquet)")


def _rows_of_hub(name: str) -> Iterator[Mapping[str, Any]]:
    try:
        import datasets
    except ImportError as e:
        raise RuntimeError(
            f"{name!r} is not a local file; loading it by name needs `pip install datasets` and hub access"
        ) from e
    dataset = datasets.load_dataset(name)
    for split in dataset.values():
        yield from split


def external_intent(name_or_path: str) -> list[TextExample]:
    """A public data set by hub name (e.g. TIGER-Lab/MMLU-Pro) or a local file in the same schema.

    Text comes from the first of `text`/`question`/`prompt`, the label from `category`/`label`/`subject`,
    mapped to our category names; rows whose category does not map are dropped.
    """
    path = Path(name_or_path).expanduser()
    rows: Iterable[Mapping[str, Any]] = _rows_of_file(path) if path.exists() else _rows_of_hub(name_or_path)
    out: list[TextExample] = []
    for i, row in enumerate(rows):
        text = next((str(row[c]).strip() for c in TEXT_COLUMNS if row.get(c)), "")
        label = next((_category(row[c]) for c in LABEL_COLUMNS if row.get(c) is not None), None)
        if text and label:
            out.append(TextExample(text, label, f"external:{path.name or name_or_path}", f"external:{i}"))
    if not out:
        raise ValueError(f"{name_or_path}: no rows with a text column {TEXT_COLUMNS} and a known category")
    return out


def _stratified_holdout(
    rows: list[TextExample], fraction: float, seed: int
) -> tuple[list[TextExample], list[TextExample]]:
    by_label: dict[str, list[TextExample]] = defaultdict(list)
    for row in rows:
        by_label[row.label].append(row)
    keep: list[TextExample] = []
    held: list[TextExample] = []
    for label in sorted(by_label):
        k, h = split_by_group(by_label[label], lambda r: r.group, fraction, seed)
        keep += k
        held += h
    return keep, held


def weak_intent(seed: int, cap_per_category: int = 150) -> list[TextExample]:
    """WordNet topic-domain questions plus chatterbot user turns whose topic maps to a category."""
    rows = wordnet_examples(seed) + [r for r in chatterbot_turns() if r.label]
    rows = dedupe(rows, lambda r: r.text)
    rng = random.Random(seed)
    rng.shuffle(rows)
    taken: Counter[str] = Counter()
    out = []
    for row in rows:
        if taken[row.label] < cap_per_category:
            taken[row.label] += 1
            out.append(row)
    return out


def load_intent(
    authored_dir: Path, *, seed: int, val_fraction: float, weak: bool, external: list[str] | None = None
) -> DataSplits:
    train = authored_intent(authored_dir / "intent_train", "authored")
    test = authored_intent(authored_dir / "intent_test", "authored-test")
    notes: list[str] = []
    if not test:
        train, test = _stratified_holdout(train, 0.2, seed + 1)
        notes.append("intent_test/ was empty: the test split is 20% of the authored train set, held out by seed")
    test = dedupe(test, lambda r: r.text)
    train = dedupe(train, lambda r: r.text, exclude=(r.text for r in test))
    train, val = _stratified_holdout(train, val_fraction, seed)
    sources = [
        SourceInfo("authored intent_train", "Apache-2.0 (this project)", f"{len(train) + len(val)} rows"),
        SourceInfo("authored intent_test", "Apache-2.0 (this project)", f"{len(test)} rows, never trained on"),
    ]
    if weak:
        extra = dedupe(weak_intent(seed), lambda r: r.text, exclude=(r.text for r in test + val + train))
        train += extra
        counts = Counter(r.source for r in extra)
        sources.append(
            SourceInfo(
                "WordNet 3.0 topic domains (Debian wordnet-base)",
                "WordNet licence (BSD-like)",
                f"{counts['wordnet']} rows",
            )
        )
        sources.append(SourceInfo("chatterbot-corpus 1.3.3 user turns", "BSD-3-Clause", f"{counts['chatterbot']} rows"))
    for name in external or []:
        rows = dedupe(external_intent(name), lambda r: r.text, exclude=(r.text for r in test + val + train))
        train += rows
        sources.append(SourceInfo(f"external {name}", "see the data set's card", f"{len(rows)} rows"))
    return DataSplits(train=train, val=val, test=test, sources=sources, notes=notes)
