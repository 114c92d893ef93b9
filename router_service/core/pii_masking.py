"""PII masking: detected values become typed, numbered placeholders before a request leaves the router, and the
placeholders become the original values again in the response (optional), streamed SSE included.

Pure and transport-neutral; the decision core plans a `Masking`, the transports restore responses with it.

- A placeholder is `<TYPE_N>`: TYPE the Presidio type name, N numbered per type in order of first appearance
  over the conversation; one value keeps one placeholder across all messages and turns of the request.
- Masking replaces every occurrence of a detected value in the messages' text (string content, text parts,
  tool-call arguments), not only the span the detector saw, so a value repeated where the detector missed it
  does not leak. A value is replaced only where it stands as a whole word.
- The value map lives in memory for one request; `Masking`'s repr shows types and counts only, so no log line
  or traceback carries a masked value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from router_service.core.decision_types import PiiEntity
from router_service.errors import InvalidRequest

__all__ = [
    "MAX_RESTORE_BYTES",
    "PLACEHOLDER",
    "Masking",
    "ResponseRestorer",
    "StreamRestorer",
    "map_strings",
    "mask_any_body",
    "mask_body",
    "plan_masking",
    "restore_completion",
]

PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_[0-9]+>")
_PARTIAL = re.compile(r"<[A-Z0-9_]*\Z")
"""A tail that may be the start of a placeholder split across stream chunks."""
_MAX_PLACEHOLDER = 64
_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")
MAX_RESTORE_BYTES = 8 * 1024 * 1024
"""A non-streamed response is restored whole; past this size it passes through with its placeholders."""


@dataclass(frozen=True)
class Masking:
    """The placeholders of one request. The values are never logged: the repr shows the types and counts only."""

    placeholders: Mapping[str, str] = field(repr=False)
    """Original value → placeholder."""
    restore: bool
    counts: Mapping[str, int]
    """Masked values per PII type (for headers and metrics: no content)."""
    _pattern: re.Pattern[str] = field(repr=False, compare=False)
    _values: Mapping[str, str] = field(repr=False, compare=False)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted(self.counts))

    def mask(self, text: str) -> str:
        return self._pattern.sub(lambda m: self._replace(m, text), text)

    def _replace(self, m: re.Match[str], text: str) -> str:
        value = m.group(0)
        start = m.start()
        # Whole words only ("Al" not in "Algebra"): the word boundary before a value is checked here rather than
        # in the pattern, which keeps the pattern a plain alternation of literals (scanned ~10x faster).
        if start > 0 and _is_word(value[0]) and _is_word(text[start - 1]):
            return value[0] + self.mask(value[1:])  # not here; a shorter value may still start inside it
        return self.placeholders[value]

    def unmask(self, text: str) -> str:
        return PLACEHOLDER.sub(lambda m: self._values.get(m.group(0), m.group(0)), text)


def plan_masking(entities: Iterable[PiiEntity], masked: Callable[[str], bool], *, restore: bool) -> Masking | None:
    """The placeholders for the entities whose type `masked` says must not reach the model; None when none."""
    by_value: dict[str, str] = {}
    numbers: dict[str, int] = {}
    for entity in entities:
        value = entity.text.strip()
        if not value or value in by_value or not masked(entity.type):
            continue
        numbers[entity.type] = numbers.get(entity.type, 0) + 1
        by_value[value] = f"<{entity.type}_{numbers[entity.type]}>"
    if not by_value:
        return None
    # Longest first, so a value containing another is replaced whole; whole words only ("Al" not in "Algebra").
    alternatives = (_whole(v) for v in sorted(by_value, key=len, reverse=True))
    pattern = re.compile("|".join(alternatives))
    return Masking(
        placeholders=by_value,
        restore=restore,
        counts=dict(numbers),
        _pattern=pattern,
        _values={p: v for v, p in by_value.items()},
    )


def _whole(value: str) -> str:
    tail = r"(?!\w)" if _is_word(value[-1]) else ""
    return f"{re.escape(value)}{tail}"


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def mask_body(body: dict[str, Any], masking: Masking) -> None:
    """Replace the masked values in every message of a chat request body (in place: the decision's copy)."""
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = masking.mask(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = masking.mask(part["text"])
        _map_calls(message, masking.mask)


def _map_calls(message: dict[str, Any], fn: Callable[[str], str]) -> None:
    """Apply `fn` to a message's (or a delta's) tool-call and function-call arguments."""
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            function["arguments"] = fn(function["arguments"])
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
        legacy["arguments"] = fn(legacy["arguments"])


def restore_completion(raw: bytes, masking: Masking) -> bytes:
    """A JSON response body (a chat or text completion, a Responses API object) with every placeholder in its
    strings restored; a body that is not JSON comes back unchanged."""
    try:
        return _dumps(map_strings(json.loads(raw), masking.unmask))
    except (ValueError, RecursionError):
        return raw


def map_strings(value: Any, fn: Callable[[str], str], skip: frozenset[str] = frozenset()) -> Any:
    """`value` with `fn` applied to every string in it (dict keys and the values of `skip` keys excepted)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_strings(v, fn, skip) for v in value]
    if isinstance(value, dict):
        return {k: v if k in skip else map_strings(v, fn, skip) for k, v in value.items()}
    return value


def mask_any_body(body: dict[str, Any], masking: Masking) -> dict[str, Any]:
    """A masked copy of any request body (`/v1/completions`, `/v1/responses`): every string but `model`.
    Raises InvalidRequest for a body nested too deeply to walk (it must not leave unmasked)."""
    try:
        masked = map_strings(body, masking.mask, frozenset({"model"}))
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply to be checked for personal data.") from None
    assert isinstance(masked, dict)
    return masked


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class StreamRestorer:
    """Restores placeholders in an OpenAI SSE stream, chunk by chunk as it passes.

    Network chunks are cut into complete events (an incomplete event waits for the next chunk). In each
    `chat.completion.chunk`, a text field's tail that may be the start of a placeholder (`<EMAIL_AD`) is held
    back and prepended to the same field of the next chunk for that choice, so a placeholder split across chunks
    is restored whole; a choice's finish chunk (or the end of the stream) releases whatever is held. Events that
    are not JSON chunks pass through unchanged.
    """

    def __init__(self, masking: Masking) -> None:
        self.masking = masking
        self._buf = b""
        self._held: dict[tuple[int, str], str] = {}
        self._head: dict[str, Any] = {}

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out: list[bytes] = []
        while True:
            end, sep = _event_end(self._buf)
            if end < 0:
                break
            event, self._buf = self._buf[:end], self._buf[end + sep :]
            out.append(self._event(event) + b"\n\n")
        return b"".join(out)

    def flush(self) -> bytes:
        """The end of the stream: what is still held, then any incomplete last event as it came."""
        rest, self._buf = self._buf, b""
        return self._release_all() + rest

    def _event(self, event: bytes) -> bytes:
        if not self._held and b"<" not in event:  # no placeholder, nothing pending: as it came (most events)
            return event
        lines = event.replace(b"\r\n", b"\n").split(b"\n")
        data = [line for line in lines if line.startswith(b"data:")]
        if len(data) != 1:
            return event
        payload = data[0][5:].strip()
        if payload == b"[DONE]":
            return self._release_all() + event
        try:
            chunk = json.loads(payload)
        except (ValueError, RecursionError):
            return event
        if not isinstance(chunk, dict):
            return event
        if not isinstance(chunk.get("choices"), list):  # e.g. a Responses API event: restored event by event
            return b"\n".join(
                [
                    *(ln for ln in lines if not ln.startswith(b"data:")),
                    b"data: " + _dumps(map_strings(chunk, self.masking.unmask)),
                ]
            )
        for key in ("id", "object", "created", "model"):
            if key in chunk:
                self._head.setdefault(key, chunk[key])
        for choice in chunk["choices"]:
            if not isinstance(choice, dict):
                continue
            if isinstance(choice.get("delta"), dict):
                self._choice(choice, choice["delta"])
            elif isinstance(choice.get("text"), str):  # a text completion's chunk
                index = choice.get("index", 0)
                slot = (index if isinstance(index, int) else 0, "text")
                choice["text"] = self._text(slot, choice["text"], choice.get("finish_reason") is not None)
        rebuilt = b"data: " + _dumps(chunk)
        others = [line for line in lines if not line.startswith(b"data:")]
        return b"\n".join([*others, rebuilt])

    def _choice(self, choice: dict[str, Any], delta: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else 0
        final = choice.get("finish_reason") is not None
        for key in _TEXT_FIELDS:
            held = (index, key) in self._held
            if isinstance(delta.get(key), str) or (final and held):
                delta[key] = self._text((index, key), delta.get(key) or "", final)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                slot = (index, f"tool_calls.{call.get('index', 0)}")
                function["arguments"] = self._text(slot, function["arguments"], final)

    def _text(self, slot: tuple[int, str], text: str, final: bool) -> str:
        text = self._held.pop(slot, "") + text
        if not final:
            tail = _PARTIAL.search(text[-_MAX_PLACEHOLDER:])
            if tail is not None:
                cut = len(text) - (len(text[-_MAX_PLACEHOLDER:]) - tail.start())
                text, self._held[slot] = text[:cut], text[cut:]
        return self.masking.unmask(text)

    def _release_all(self) -> bytes:
        """One chunk carrying every held tail (a stream that ended without finish chunks)."""
        if not self._held:
            return b""
        by_choice: dict[int, dict[str, Any]] = {}
        for (index, key), text in sorted(self._held.items()):
            delta = by_choice.setdefault(index, {})
            if key in _TEXT_FIELDS or key == "text":
                delta[key] = self.masking.unmask(text)
            else:
                call_index = int(key.rsplit(".", 1)[1])
                delta.setdefault("tool_calls", []).append(
                    {"index": call_index, "function": {"arguments": self.masking.unmask(text)}}
                )
        self._held.clear()
        choices = [
            {"index": i, "text": d["text"], "finish_reason": None}  # a text completion's
            if set(d) == {"text"}
            else {"index": i, "delta": d, "finish_reason": None}
            for i, d in sorted(by_choice.items())
        ]
        return b"data: " + _dumps({**self._head, "choices": choices}) + b"\n\n"


def _event_end(buf: bytes) -> tuple[int, int]:
    """(offset, separator length) of the first complete event's end in `buf`, or (-1, 0)."""
    ends = [(buf.find(sep), len(sep)) for sep in (b"\n\n", b"\r\n\r\n")]
    found = [(i, n) for i, n in ends if i >= 0]
    return min(found) if found else (-1, 0)


class ResponseRestorer:
    """Restores one upstream response for the client: an SSE stream chunk by chunk (`StreamRestorer`), any other
    body whole at its end (bounded by `MAX_RESTORE_BYTES`; past it the body passes through unrestored)."""

    def __init__(self, masking: Masking, *, sse: bool) -> None:
        self._stream = StreamRestorer(masking) if sse else None
        self._masking = masking
        self._buf = bytearray()
        self._passthrough = False

    def feed(self, data: bytes) -> bytes:
        if self._stream is not None:
            return self._stream.feed(data)
        if self._passthrough:
            return data
        self._buf += data
        if len(self._buf) > MAX_RESTORE_BYTES:
            self._passthrough = True
            out, self._buf = bytes(self._buf), bytearray()
            return out
        return b""

    def finish(self) -> bytes:
        if self._stream is not None:
            return self._stream.flush()
        out, self._buf = bytes(self._buf), bytearray()
        return out if self._passthrough or not out else restore_completion(out, self._masking)
