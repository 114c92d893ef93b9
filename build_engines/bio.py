"""Character spans <-> BIO tags over a tokenizer's offset mapping (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["IGNORE", "Span", "bio_to_spans", "spans_to_bio", "trim_span"]

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


def bio_to_spans(offsets: Sequence[tuple[int, int]], tags: Sequence[str]) -> list[Span]:
    """Entity spans from per-token tags. `I-X` after `O` or another type opens an entity (lenient BIO)."""
    spans: list[Span] = []
    current: tuple[int, int, str] | None = None
    for (start, end), tag in zip(offsets, tags, strict=True):
        if start == end:
            continue
        kind, _, entity = tag.partition("-")
        if kind == "O" or not entity:
            if current:
                spans.append(Span(*current))
            current = None
        elif kind == "I" and current and current[2] == entity:
            current = (current[0], end, entity)
        else:
            if current:
                spans.append(Span(*current))
            current = (start, end, entity)
    if current:
        spans.append(Span(*current))
    return spans


_TRIM = " \t\n\r.,;:!?\"'()"


def trim_span(text: str, span: Span) -> Span:
    """Drop surrounding spaces, quotes and punctuation, which detectors attach to entities differently."""
    start, end = span.start, span.end
    while start < end and text[start] in _TRIM:
        start += 1
    while end > start and text[end - 1] in _TRIM:
        end -= 1
    return Span(start, end, span.entity_type)
