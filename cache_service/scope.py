"""What makes two chat requests share a cache entry, computed from the request body alone (pure functions).

An entry is found by (target model, `fingerprint(body)`, tenant) exactly, then by similarity of
`prompt_text(body)` (the last user message). The fingerprint covers everything else that changes the answer:

- the system/developer prompts, in order;
- the rest of the conversation (earlier turns, tool results after the last user message): a follow-up such as
  "and in Python?" must not be answered from another conversation;
- tools, tool_choice, response_format and every generation parameter (temperature, top_p, max_tokens,
  max_completion_tokens, n, stop, seed, presence/frequency_penalty, logit_bias, reasoning_effort,
  chat_template_kwargs, ...): any body key not listed in `IGNORED_KEYS` counts, so an unknown vendor
  parameter makes entries distinct rather than wrongly shared.

Not covered: the last user message (that is the prompt key), `model` (a scope part of its own), `stream`,
`stream_options` (a cached answer is replayed either way), and per-request bookkeeping (`user`,
`metadata`, ...).
Compute it on the body as sent upstream (after the router rewrote model, system prompt and tools).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["IGNORED_KEYS", "fingerprint", "prompt_text"]

IGNORED_KEYS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    }
)
_SYSTEM_ROLES = frozenset({"system", "developer"})
_VERSION = "fp1"


def _canonical(value: Any) -> Any:
    """JSON-ready, with integral floats as ints (temperature 1 and 1.0 are the same request)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return str(value)


def _last_user_index(messages: list[Any]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, Mapping) and m.get("role") == "user":
            return i
    return None


def _messages(body: Mapping[str, Any]) -> list[Any]:
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []


def fingerprint(body: Mapping[str, Any]) -> str:
    """Hex digest of everything in a chat request that changes the answer, except the prompt key and model."""
    messages = _messages(body)
    last_user = _last_user_index(messages)
    system: list[Any] = []
    conversation: list[Any] = []
    for i, m in enumerate(messages):
        if i == last_user:
            conversation.append({"role": "user", "content": "<prompt>", "name": m.get("name")})
        elif isinstance(m, Mapping) and m.get("role") in _SYSTEM_ROLES:
            system.append({"role": m.get("role"), "content": m.get("content"), "name": m.get("name")})
        else:
            conversation.append(m)
    params = {k: v for k, v in body.items() if k not in IGNORED_KEYS and v is not None}
    doc = {"v": _VERSION, "system": system, "conversation": conversation, "params": params}
    text = json.dumps(_canonical(doc), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def prompt_text(body: Mapping[str, Any]) -> str | None:
    """The text of the last user message: the cache's prompt key. None when there is none, or when it holds
    non-text parts (an image or audio is not in the text embedding, so such requests are not cached)."""
    messages = _messages(body)
    i = _last_user_index(messages)
    if i is None:
        return None
    content = messages[i].get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                return None
        text = "\n".join(parts)
    else:
        return None
    return text if text.strip() else None
