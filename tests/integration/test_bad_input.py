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
NOT_UTF8: list[bytes] = [
    b'{"model": "MoM", "messages": [{"role": "user", "content": "caf\xe9"}]}',  # Latin-1, not UTF-8
    b'{"model": "MoM", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',  # an encoded surrogate
    b'{"model": "MoM", "messages": [{"role": "user", "content": "cut \xf0\x9f"}]}',  # a sequence cut short
    b'{"model": "MoM\xff", "messages": [{"role": "user", "content": "hi"}]}',
]


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


BASES = ["envoy", "router"]
HEADERS = {"content-type": "application/json", "x-vsr-cache-control": "no-cache, no-store"}


def _base(stack: RunningStack, base: str) -> str:
    return stack.envoy_url if base == "envoy" else stack.router_url


@pytest.mark.parametrize("base", BASES)
def test_a_body_that_is_not_utf8_is_a_400_on_every_prompt_path(stack: RunningStack, base: str) -> None:
    paths = ["/v1/chat/completions"] + (["/v1/completions", "/v1/responses"] if base == "envoy" else [])
    with httpx.Client(base_url=_base(stack, base), timeout=30) as client:
        for path in paths:
            for raw in NOT_UTF8:
                r = client.post(path, content=raw, headers=HEADERS)
                assert r.status_code == 400, (path, raw, r.text)
                error = r.json()["error"]
                assert error["code"] == "invalid_utf8" and "not valid UTF-8" in error["message"], error
    for task in ("intent", "pii", "security", "batch"):
        r = httpx.post(f"{stack.router_url}/api/v1/classify/{task}", content=b'{"text": "\xed\xa0\x80"}', timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_utf8", r.text


SCHEMA_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/chat/completions", {"model": "MoM", "messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ("/v1/chat/completions", {"model": "MoM", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    (
        "/v1/chat/completions",
        {"model": "MoM", "messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
        "messages[0].content[0].text",
    ),
    ("/v1/chat/completions", {"model": "MoM", "messages": HI, "temperature": "hot"}, "temperature"),
    ("/v1/chat/completions", {"model": "MoM", "messages": HI, "max_tokens": 10**20}, "max_tokens"),
    ("/v1/completions", {"model": "MoM", "prompt": None}, "prompt"),
    ("/v1/responses", {"model": "MoM", "input": [{"role": "user", "content": None}]}, "input[0].content"),
]


@pytest.mark.parametrize("base", BASES)
def test_what_the_openai_schema_refuses_is_a_400_naming_the_field(stack: RunningStack, base: str) -> None:
    before = {name: len(stack.backend_requests(name)) for name in stack.backends}
    with httpx.Client(base_url=_base(stack, base), timeout=30) as client:
        for path, body, param in SCHEMA_CASES:
            if base == "router" and path != "/v1/chat/completions":
                continue  # the direct proxy serves the chat path only
            r = client.post(path, json=body, headers=HEADERS)
            assert r.status_code == 400, (path, body, r.text)
            error = r.json()["error"]
            assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_request", param)
    assert {name: len(stack.backend_requests(name)) for name in stack.backends} == before  # none reached a backend


def test_what_the_schema_allows_reaches_the_backend_unchanged(stack: RunningStack) -> None:
    marker = "schema-pass-through"
    body = {
        "model": "qwen2.5-coder-7b",  # explicit: no system prompt or reasoning field is injected
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": f"Write a haiku, {marker}"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "user", "content": f"Thanks, {marker}"},
        ],
        "temperature": 0,
        "stop": ["\n\n"],
        "top_k": 20,
        "chat_template_kwargs": {"enable_thinking": False},
        "metadata": {"k": "v"},
    }
    r = httpx.post(f"{stack.envoy_url}/v1/chat/completions", json=body, headers=HEADERS, timeout=30)
    assert r.status_code == 200, r.text
    [seen] = [
        s["body"] for name in stack.backends for s in stack.backend_requests(name) if marker in json.dumps(s["body"])
    ]
    assert seen == body
