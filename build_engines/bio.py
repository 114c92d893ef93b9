"""Character spans <-> BIO tags over a tokenizer's offset mapping (pure functions)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["IGNORE", "Span", "bio_to_spans", "merge_adjacent", "spans_to_bio", "trim_span"]

IGNORE = -100  # label of special tokens: no loss, no prediction


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    entity_type: str


def spans_to_bio(offsets: Sequence[tuple[int, int]], spans: Sequence[Span], tag_ids: dict[str, int]) -> list[int]:
    """One tag id per token. Tokens with an empty offset (special tokens) get IGNORE.

    A token belongs to the span it overlaps; the first such token is `B-`, the rest `I-`, so every word piece
    carries a tag and decoding can rebuild character spans from the offsets alone.
    """
    labels: list[int] = []
    previous: Span | None = None
    for start, end in offsets:
        if start == end:
            labels.append(IGNORE)
            continue
        span = next((s for s in spans if start < s.end and end > s.start), None)
        if span is None:
            labels.append(tag_ids["O"])
        elif span == previous:
            labels.append(tag_ids[f"I-{span.entity_type}"])
        else:
            labels.append(tag_ids[f"B-{span.entity_type}"])
        previous = span
    return labels


def bio_to_spans(offsets: Sequence[tuple[int, int]], tags: Sequence[str], text: str | None = None) -> list[Span]:
    """Entity spans from per-token tags.

    `B-X` opens an entity; `I-X` continues the open one whatever its type (or opens one after `O`); the entity's
    type is the majority of its tokens' types, the first token breaking ties. With `text`, a word piece glued to
    the previous piece (no gap, letters or digits on both sides) belongs to that word: it extends the word's
    entity or stays outside one, whatever its own tag says. Entities so never start or end inside a word, and a
    name whose pieces disagree on the type ("Skinner, Mcpherson and Young") stays one entity.
    """
    spans: list[Span] = []
    start_char = end_char = -1
    votes: list[str] = []

    def close() -> None:
        if votes:
            counts = Counter(votes)
            best = max(counts.values())
            spans.append(Span(start_char, end_char, next(v for v in votes if counts[v] == best)))
            votes.clear()

    previous_end = -1
    for (start, end), tag in zip(offsets, tags, strict=True):
        if start == end:
            continue
        glued = text is not None and start == previous_end and text[start - 1].isalnum() and text[start].isalnum()
        previous_end = end
        if glued:
            if votes:
                end_char = end
            continue
        kind, _, entity = tag.partition("-")
        if kind == "O" or not entity:
            close()
        elif kind == "I" and votes:
            votes.append(entity)
            end_char = end
        else:
            close()
            start_char, end_char = start, end
            votes.append(entity)
    close()
    return _bridge_punctuation(text, spans) if text is not None else spans


_BRIDGE = frozenset(".:-/@_")


def _bridge_punctuation(text: str, spans: list[Span]) -> list[Span]:
    """Join same-type neighbours split only by one or two in-word punctuation marks and no space
    ("192.168" + "." + "1.20", "555" + "-" + "0142"): one token of such an entity tagged O must not cut it."""
    out: list[Span] = []
    for span in spans:
        last = out[-1] if out else None
        gap = text[last.end : span.start] if last is not None else ""
        if last is not None and last.entity_type == span.entity_type and 0 < len(gap) <= 2 and set(gap) <= _BRIDGE:
            out[-1] = Span(last.start, span.end, span.entity_type)
        else:
            out.append(span)
    return out


def merge_adjacent(text: str, spans: Sequence[Span], types: frozenset[str]) -> list[Span]:
    """Join same-type spans of `types` separated only by spaces (e.g. a building number and its street)."""
    merged: list[Span] = []
    for span in sorted(spans):
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.entity_type == span.entity_type
            and span.entity_type in types
            and last.end <= span.start
            and text[last.end : span.start].strip(" ") == ""
        ):
            merged[-1] = Span(last.start, span.end, span.entity_type)
        else:
            merged.append(span)
    return merged


_TRIM = " \t\n\r.,;:!?\"'()"
# No entity type starts or ends with a hyphen, backslash or bar ("9241798036-Fax", "-Zombie"), nor starts with a
# slash; URLs may end with one.
_TRIM_START = _TRIM + "-\\|/"
_TRIM_END = _TRIM + "-\\|"


def trim_span(text: str, span: Span) -> Span:
    """Drop surrounding spaces, quotes and punctuation, which detectors attach to entities differently, and the
    hyphens, backslashes and bars (and leading slashes) that no entity starts or ends with."""
    start, end = span.start, span.end
    while start < end and text[start] in _TRIM_START:
        start += 1
    while end > start and text[end - 1] in _TRIM_END:
        end -= 1
    return Span(start, end, span.entity_type)
