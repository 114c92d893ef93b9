"""User turns of chatterbot-corpus (BSD-3-Clause) English conversations, read as YAML (not imported)."""

from __future__ import annotations

from pathlib import Path

import yaml

from build_engines.data.common import TextExample
from build_engines.paths import site_packages

__all__ = ["TOPIC_CATEGORY", "chatterbot_turns"]

# Topic file -> intent category; topics that mix categories (science, money, politics) are left out of intent.
TOPIC_CATEGORY: dict[str, str | None] = {
    "ai": None,
    "botprofile": "other",
    "coding": "computer science",
    "computers": "computer science",
    "conversations": "other",
    "emotion": "other",
    "food": "other",
    "gossip": "other",
    "greetings": "other",
    "health": "health",
    "history": "history",
    "humor": "other",
    "literature": "other",
    "money": None,
    "movies": "other",
    "politics": None,
    "psychology": "psychology",
    "science": None,
    "sports": "other",
    "tech_support": "computer science",
    "trivia": None,
}


def _corpus_dir() -> Path:
    return site_packages() / "chatterbot_corpus" / "data" / "english"


def chatterbot_turns() -> list[TextExample]:
    """First user turn of every conversation, labelled with its topic file's intent category ("" if none).

    The group is the topic file, so a split by group keeps each topic's near-duplicate phrasings together.
    """
    out: list[TextExample] = []
    directory = _corpus_dir()
    if not directory.exists():
        return out
    for path in sorted(directory.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for i, conversation in enumerate(doc.get("conversations") or []):
            if conversation and isinstance(conversation[0], str) and conversation[0].strip():
                label = TOPIC_CATEGORY.get(path.stem) or ""
                out.append(TextExample(conversation[0].strip(), label, "chatterbot", f"chatterbot:{path.stem}:{i}"))
    return out
