"""What the response phase hands to the cache: complete answers are stored, refusals never (JSON or SSE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from cache_service.client import CacheClient
from router_service.accounting import ResponseTracker
from router_service.config import load_config
from router_service.core.reply import CacheScope
from wire.sse import is_cacheable, is_refusal

CFG = load_config(Path(__file__).resolve().parents[1] / "fixtures" / "vsr-classic" / "config.e2e.yaml")
SCOPE = CacheScope(prompt="p", embedding=[1.0], model="Model-A", fingerprint="f", tenant=None)


class RecordingCache:
    def __init__(self) -> None:
        self.stored: list[dict[str, Any]] = []

    def spawn_store(self, **kwargs: Any) -> bool:
        self.stored.append(kwargs["response"])
        return True


def completion(finish: str, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "Model-A",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def sse(finish: str, delta: dict[str, Any]) -> bytes:
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "Model-A"}
    events = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", **delta}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
    ]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def track(body: bytes, *, streamed: bool) -> list[dict[str, Any]]:
    cache = RecordingCache()
    tracker = ResponseTracker(model="Model-A")
    tracker.on_headers(200, "text/event-stream" if streamed else "application/json")
    tracker.on_chunk(body)
    tracker.finish(CFG, cast(CacheClient, cache), SCOPE)
    return cache.stored


ANSWER = {"content": "Paris."}
REFUSALS = [
    pytest.param("content_filter", {"content": "I can't help with that."}, id="content_filter"),
    pytest.param("stop", {"content": None, "refusal": "I can't help with that."}, id="refusal-message"),
]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_complete_answer_is_stored(streamed: bool) -> None:
    """The positive control: the same path stores an ordinary answer."""
    body = sse("stop", ANSWER) if streamed else json.dumps(completion("stop", ANSWER)).encode()
    (stored,) = track(body, streamed=streamed)
    assert stored["choices"][0]["message"]["content"] == "Paris."


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("finish", "message"), REFUSALS)
def test_refusal_is_never_stored(streamed: bool, finish: str, message: dict[str, Any]) -> None:
    body = sse(finish, message) if streamed else json.dumps(completion(finish, message)).encode()
    assert track(body, streamed=streamed) == []


def test_unknown_finish_is_not_stored() -> None:
    """Only finishes known to be complete answers are cached (an aborted generation is not)."""
    assert track(json.dumps(completion("abort", ANSWER)).encode(), streamed=False) == []


def test_is_refusal() -> None:
    assert is_refusal(completion("content_filter", {"content": "no"}))
    assert is_refusal(completion("stop", {"content": None, "refusal": "no"}))
    assert not is_refusal(completion("stop", ANSWER))
    assert not is_refusal({})
    assert not is_cacheable(completion("stop", {"content": None, "refusal": "no"}))
    assert is_cacheable(completion("tool_calls", {"content": None, "tool_calls": []}))
