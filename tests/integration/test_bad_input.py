"""Odd and wrong request bodies through both transports (Envoy + ExtProc, and the direct proxy): every one gets a
deliberate answer, a 2xx or a 4xx with an OpenAI error body, never a 5xx or a dropped connection. The cases are
the shapes a fuzzing pass sent (several of them were 500s or resets before they were fixed)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.integration


def _user(content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


HI = _user("hi")
CASES: list[Any] = [
    {},
    {"model": "MoM"},
    {"model": 5, "messages": HI},
    {"model": ["MoM"], "messages": HI},
    {"model": "", "messages": HI},
    {"model": "MoM\r\nx-injected: 1", "messages": HI},
    {"model": "MoM", "messages": "hi"},
    {"model": "MoM", "messages": {"role": "user"}},
    {"model": "MoM", "messages": []},
    {"model": "MoM", "messages": [None]},
    {"model": "MoM", "messages": [5]},
    {"model": "MoM", "messages": [{"role": "user"}]},
    {"model": "MoM", "messages": [{"role": 5, "content": "x"}]},
    {"model": "MoM", "messages": [{"role": "alien", "content": "x"}]},
    {"model": "MoM", "messages": [{"role": "assistant", "content": None}]},
    {"model": "MoM", "messages": [{"role": "assistant", "content": None, "tool_calls": "x"}]},
    {"model": "MoM", "messages": [{"role": "tool", "content": "x"}]},
    {"model": "MoM", "messages": [{"role": "system", "content": "only a system prompt"}]},
    {"model": "MoM", "messages": _user(5)},
    {"model": "MoM", "messages": _user(True)},
    {"model": "MoM", "messages": _user(1e308)},
    {"model": "MoM", "messages": _user(["a", 5])},
    {"model": "MoM", "messages": _user([None])},
    {"model": "MoM", "messages": _user([{"type": 5}])},
    {"model": "MoM", "messages": _user([{"type": "text"}])},
    {"model": "MoM", "messages": _user([{"type": "text", "text": ["x"]}])},
    {"model": "MoM", "messages": _user([{"type": "image_url", "image_url": {"url": "data:,"}}])},
    {"model": "MoM", "messages": _user("\u202e\u0000\u200b z\u0338\u0321a\u036a\u034al\u033dg\u0305o " + "🙂" * 2000)},
    {"model": "MoM", "messages": [HI[0]] * 2000},
    {"model": "MoM", "messages": HI, "stream": "yes"},
    {"model": "MoM", "messages": HI, "stream": True, "stream_options": 5},
    {"model": "MoM", "messages": HI, "stream": True, "stream_options": {"include_usage": "x"}},
    {"model": "MoM", "messages": HI, "tools": "x"},
    {"model": "MoM", "messages": HI, "tools": [None]},
    {"model": "MoM", "messages": HI, "tools": [{"type": "function"}]},
    {"model": "MoM", "messages": HI, "tools": [{"type": "function", "function": "x"}]},
    {"model": "MoM", "messages": HI, "tools": [{"type": "function", "function": {"name": 5}}]},
    {"model": "MoM", "messages": HI, "tool_choice": 7},
    {"model": "MoM", "messages": HI, "tool_choice": {"type": "function"}},
    {"model": "MoM", "messages": HI, "max_tokens": -1},
    {"model": "MoM", "messages": HI, "temperature": "hot"},
    {"model": "MoM", "messages": HI, "reasoning_effort": ["x"]},
    {"model": "MoM", "messages": HI, "chat_template_kwargs": 3},
]
RAW: list[bytes] = [b"", b"null", b"[]", b'"str"', b"{nope", b"\xff\xfe\x00garbage", b'{"model": "MoM", "messages": [']


def _check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text[:300]
    if r.status_code >= 400:
        err = r.json()["error"]
        assert err["message"] and err["type"], r.text[:300]


@pytest.mark.parametrize("base", ["envoy", "router"])
def test_odd_bodies_get_a_deliberate_answer(stack: RunningStack, base: str) -> None:
    url = stack.envoy_url if base == "envoy" else stack.router_url
    headers = {"content-type": "application/json", "x-vsr-cache-control": "no-cache, no-store"}
    with httpx.Client(base_url=url, timeout=30) as client:
        for case in CASES:
            content = json.dumps(case, ensure_ascii=False).encode()
            try:
                _check(client.post("/v1/chat/completions", content=content, headers=headers))
            except (AssertionError, httpx.HTTPError) as e:
                raise AssertionError(f"{json.dumps(case)[:200]}: {e!r}") from e
        for raw in RAW:
            try:
                _check(client.post("/v1/chat/completions", content=raw, headers=headers))
            except (AssertionError, httpx.HTTPError) as e:
                raise AssertionError(f"{raw[:60]!r}: {e!r}") from e
