"""Weak intent examples from WordNet topic domains (Debian `wordnet-base`), parsed without nltk.

Each synset whose topic-domain pointer (`;c`) names a domain we can map becomes a short question about it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

from build_engines.data.common import TextExample

__all__ = ["DOMAIN_CATEGORY", "WORDNET_DIR", "wordnet_examples"]

WORDNET_DIR = Path("/usr/share/wordnet")
# Glosses open with the domain in brackets ("(biology) ..."), a label leak no user prompt has.
_DOMAIN_PREFIX = re.compile(r"^\([^)]*\)\s*")

DOMAIN_CATEGORY: dict[str, str] = {
    "law": "law",
    "criminal_law": "law",
    "computer_science": "computer science",
    "computer": "computer science",
    "physics": "physics",
    "astronomy": "physics",
    "cosmology": "physics",
    "particle_physics": "physics",
    "nuclear_physics": "physics",
    "optics": "physics",
    "mathematics": "math",
    "statistics": "math",
    "geometry": "math",
    "algebra": "math",
    "arithmetic": "math",
    "trigonometry": "math",
    "biology": "biology",
    "genetics": "biology",
    "botany": "biology",
    "zoology": "biology",
    "anatomy": "biology",
    "physiology": "biology",
    "biochemistry": "biology",
    "ecology": "biology",
    "microbiology": "biology",
    "embryology": "biology",
    "cytology": "biology",
    "chemistry": "chemistry",
    "organic_chemistry": "chemistry",
    "medicine": "health",
    "pathology": "health",
    "surgery": "health",
    "dentistry": "health",
    "obstetrics": "health",
    "pharmacology": "health",
    "psychology": "psychology",
    "psychoanalysis": "psychology",
    "psychiatry": "psychology",
    "philosophy": "philosophy",
    "logic": "philosophy",
    "theology": "philosophy",
    "ethics": "philosophy",
    "economics": "economics",
    "tax": "economics",
    "finance": "economics",
    "commercial_enterprise": "business",
    "corporation": "business",
    "accounting": "business",
    "stock_exchange": "business",
    "marketing": "business",
    "electronics": "engineering",
    "architecture": "engineering",
    "telecommunication": "engineering",
    "aircraft": "engineering",
    "engineering": "engineering",
    "antiquity": "history",
    "Middle_Ages": "history",
    "archeology": "history",
    "music": "other",
    "baseball": "other",
    "sport": "other",
    "American_football": "other",
    "golf": "other",
    "football": "other",
    "chess": "other",
    "basketball": "other",
    "tennis": "other",
    "soccer": "other",
    "cooking": "other",
    "photography": "other",
    "card_game": "other",
    "ballet": "other",
    "fashion": "other",
}

_TEMPLATES = (
    "what is {word}?",
    "explain {word} to me",
    "what does {word} mean? is it {gloss}?",
    "can you tell me more about {word}",
    "I read that {word} is {gloss}. can you explain?",
    "{gloss}: what is this called?",
)


def _records(path: Path) -> Iterator[tuple[str, list[str], list[str], str]]:
    """(offset, words, topic-domain offsets, gloss) per synset line of a WordNet data file."""
    with path.open(encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            n_words = int(fields[3], 16)
            words = [fields[4 + 2 * i] for i in range(n_words)]
            p = 4 + 2 * n_words
            n_ptrs = int(fields[p])
            domains = [fields[p + 2 + 4 * i] for i in range(n_ptrs) if fields[p + 1 + 4 * i] == ";c"]
            yield fields[0], words, domains, _DOMAIN_PREFIX.sub("", gloss.split(";")[0].strip())


def wordnet_examples(seed: int, per_category_cap: int = 250) -> list[TextExample]:
    """Up to `per_category_cap` questions per mapped category; empty when WordNet is not installed."""
    noun = WORDNET_DIR / "data.noun"
    if not noun.exists():
        return []
    domain_words = {offset: words[0] for offset, words, _, _ in _records(noun)}
    by_category: dict[str, list[TextExample]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        for _, words, domains, gloss in _records(WORDNET_DIR / f"data.{pos}"):
            for offset in domains:
                category = DOMAIN_CATEGORY.get(domain_words.get(offset, ""))
                if category is None or not gloss:
                    continue
                word = words[0].replace("_", " ")
                by_category.setdefault(category, []).append(
                    TextExample(word + "\t" + gloss, category, "wordnet", f"wordnet:{word}")
                )
    rng = random.Random(seed)
    out: list[TextExample] = []
    for category in sorted(by_category):
        rows = by_category[category]
        rng.shuffle(rows)
        for row in rows[:per_category_cap]:
            word, gloss = row.text.split("\t")
            text = rng.choice(_TEMPLATES).format(word=word, gloss=gloss)
            out.append(TextExample(text, row.label, row.source, row.group))
    return out
