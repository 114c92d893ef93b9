"""OpenAI chat-completion streams (SSE) to and from complete `chat.completion` objects (pure functions).

`assemble_stream` turns a captured upstream stream into the completion to cache, or None when it must not be
cached (partial, errored, non-200); `is_cacheable` and `is_refusal` say what may be stored. A cached completion
is replayed as a stream by the router (`router_service.core.render.render_cached`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CACHEABLE_FINISH_REASONS",
    "STREAM_HEAD_KEYS",
    "assemble_stream",
    "chat_chunk",
    "encode_events",
    "is_cacheable",
    "is_refusal",
    "iter_sse",
]

CACHEABLE_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "function_call"})
STREAM_HEAD_KEYS = ("system_fingerprint", "service_tier")
"""Completion-level keys a stream repeats on its chunks (besides id, created and model)."""


def chat_chunk(rid: str, created: int, model: str, choices: list[dict[str, Any]], **head: Any) -> dict[str, Any]:
    """One `chat.completion.chunk` event; `head` adds completion-level keys (`system_fingerprint`, `usage`)."""
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
        **head,
    }


def encode_events(events: list[dict[str, Any]]) -> bytes:
    """Events as an SSE body: one `data:` line each (compact JSON, UTF-8), then `data: [DONE]`."""
    return b"".join(b"data: " + _dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def iter_sse(raw: bytes) -> Iterator[tuple[str, str]]:
    """(event type, data) per complete event, per the SSE rules: `data:` lines joined with newlines, comments
    skipped, an event ends at a blank line. A last event without its blank line is incomplete and dropped,
    except a bare `[DONE]` (some servers omit the final newline)."""
    text = raw.decode("utf-8", "replace")
    event, seen = "message", False
    data: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if seen:
                yield event, "\n".join(data)
            event, data, seen = "message", [], False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
            seen = True
        elif name == "event":
            event = value
            seen = True
    if seen and data == ["[DONE]"]:
        yield event, "[DONE]"


@dataclass
class _Choice:
    index: int
    role: str | None = None
    content: list[str] = field(default_factory=list)
    saw_content: bool = False
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    function_call: dict[str, Any] | None = None
    logprobs: list[Any] | None = None
    finish_reason: str | None = None

    def add(self, delta: dict[str, Any]) -> None:
        if isinstance(delta.get("role"), str):
            self.role = delta["role"]
        if isinstance(delta.get("content"), str):
            self.content.append(delta["content"])
            self.saw_content = True
        for key in ("reasoning_content", "reasoning"):
            if isinstance(delta.get(key), str):
                self.reasoning.append(delta[key])
        if isinstance(delta.get("refusal"), str):
            self.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or []:
            idx = int(call.get("index", len(self.tool_calls)))
            slot = self.tool_calls.setdefault(idx, {"id": None, "type": "function", "name": [], "arguments": []})
            if call.get("id"):
                slot["id"] = call["id"]
            if call.get("type"):
                slot["type"] = call["type"]
            fn = call.get("function") or {}
            if isinstance(fn.get("name"), str):
                slot["name"].append(fn["name"])
            if isinstance(fn.get("arguments"), str):
                slot["arguments"].append(fn["arguments"])
        fc = delta.get("function_call")
        if isinstance(fc, dict):
            if self.function_call is None:
                self.function_call = {"name": [], "arguments": []}
            for key in ("name", "arguments"):
                if isinstance(fc.get(key), str):
                    self.function_call[key].append(fc[key])

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": self.role or "assistant"}
        has_calls = bool(self.tool_calls) or self.function_call is not None
        msg["content"] = "".join(self.content) if self.saw_content or not has_calls else None
        if msg["content"] == "" and has_calls:
            msg["content"] = None
        if self.reasoning:
            msg["reasoning_content"] = "".join(self.reasoning)
        if self.refusal:
            msg["refusal"] = "".join(self.refusal)
        if self.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": slot["id"],
                    "type": slot["type"],
                    "function": {"name": "".join(slot["name"]), "arguments": "".join(slot["arguments"])},
                }
                for _, slot in sorted(self.tool_calls.items())
            ]
        if self.function_call is not None:
            msg["function_call"] = {k: "".join(v) for k, v in self.function_call.items()}
        return msg


def assemble_stream(raw: bytes, *, status_code: int = 200) -> dict[str, Any] | None:
    """The complete `chat.completion` a stream of `chat.completion.chunk` events adds up to, or None when the
    stream must not be cached: non-200, an error event, no `[DONE]`, a choice without finish_reason, or
    anything that is not a chat-completion chunk."""
    if status_code != 200:
        return None
    head: dict[str, Any] = {}
    choices: dict[int, _Choice] = {}
    usage: dict[str, Any] | None = None
    done = False
    for event, data in iter_sse(raw):
        if done:
            break
        if event == "error":
            return None
        if data.strip() == "[DONE]":
            done = True
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            return None
        if not isinstance(chunk, dict) or "error" in chunk:
            return None
        if chunk.get("object", "chat.completion.chunk") != "chat.completion.chunk":
            return None
        for key in ("id", "created", "model", *STREAM_HEAD_KEYS):
            if chunk.get(key) is not None:
                head.setdefault(key, chunk[key])
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        for c in chunk.get("choices") or []:
            if not isinstance(c, dict):
                return None
            idx = int(c.get("index", 0))
            choice = choices.setdefault(idx, _Choice(idx))
            if isinstance(c.get("delta"), dict):
                choice.add(c["delta"])
            lp = c.get("logprobs")
            if isinstance(lp, dict) and isinstance(lp.get("content"), list):
                choice.logprobs = (choice.logprobs or []) + lp["content"]
            if c.get("finish_reason"):
                choice.finish_reason = c["finish_reason"]
    if not done or not choices or any(c.finish_reason is None for c in choices.values()):
        return None
    completion: dict[str, Any] = {
        "id": head.get("id", ""),
        "object": "chat.completion",
        "created": head.get("created", 0),
        "model": head.get("model", ""),
        "choices": [
            {
                "index": c.index,
                "message": c.message(),
                "logprobs": {"content": c.logprobs} if c.logprobs is not None else None,
                "finish_reason": c.finish_reason,
            }
            for c in sorted(choices.values(), key=lambda c: c.index)
        ],
    }
    for key in STREAM_HEAD_KEYS:
        if key in head:
            completion[key] = head[key]
    if usage is not None:
        completion["usage"] = usage
    return completion


def is_refusal(response: dict[str, Any]) -> bool:
    """A refusal: some choice finished with "content_filter" or carries a `refusal` message. Never cached: it
    answers the policy of the moment (a guard, an upstream filter), not the question."""
    choices = response.get("choices")
    if not isinstance(choices, list):
        return False
    for c in choices:
        if not isinstance(c, dict):
            continue
        msg = c.get("message")
        if c.get("finish_reason") == "content_filter" or (isinstance(msg, dict) and msg.get("refusal")):
            return True
    return False


def is_cacheable(completion: dict[str, Any]) -> bool:
    """A complete, successful chat.completion: every choice finished normally (stop, length, a tool call), none
    is a refusal."""
    choices = completion.get("choices")
    return (
        completion.get("object") == "chat.completion"
        and isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and c.get("finish_reason") in CACHEABLE_FINISH_REASONS for c in choices)
        and not is_refusal(completion)
    )
