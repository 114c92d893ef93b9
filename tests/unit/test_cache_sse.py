"""wire.sse: assembling OpenAI chat-completion streams and replaying cached completions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from router_service.core.render import render_cached
from wire.sse import assemble_stream, is_cacheable

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m"}


def _chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
    return b"data: " + json.dumps({**HEAD, "choices": choices, **extra}).encode() + b"\n\n"


def _delta(d: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {"index": index, "delta": d, "finish_reason": finish}


USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
TEXT_STREAM = (
    _chunk([_delta({"role": "assistant", "content": ""})])
    + b": keep-alive comment\n\n"
    + _chunk([_delta({"content": "Hel"})])
    + _chunk([_delta({"content": "lo!"})])
    + _chunk([_delta({}, "stop")])
    + _chunk([], usage=USAGE)
    + b"data: [DONE]\n\n"
)


def test_assembles_text_stream() -> None:
    c = assemble_stream(TEXT_STREAM)
    assert c == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
    assert is_cacheable(c)


def test_crlf_and_missing_final_newline() -> None:
    raw = TEXT_STREAM.replace(b"\n", b"\r\n").removesuffix(b"\r\n\r\n")
    c = assemble_stream(raw)
    assert c is not None and c["choices"][0]["message"]["content"] == "Hello!"


def test_assembles_tool_calls() -> None:
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    raw = (
        _chunk([_delta({"role": "assistant", "content": None, "tool_calls": [call]})])
        + _chunk([_delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]})])
        + _chunk([_delta({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]})])
        + _chunk([_delta({}, "tool_calls")])
        + b"data: [DONE]\n\n"
    )
    c = assemble_stream(raw)
    assert c is not None
    msg = c["choices"][0]["message"]
    assert msg["content"] is None
    assert msg["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert c["choices"][0]["finish_reason"] == "tool_calls" and "usage" not in c


@pytest.mark.parametrize(
    "raw",
    [
        TEXT_STREAM.replace(b"data: [DONE]\n\n", b""),  # cut before [DONE]
        TEXT_STREAM[: len(TEXT_STREAM) // 2],  # cut mid-way
        _chunk([_delta({"content": "Hi"})]) + b"data: [DONE]\n\n",  # no finish_reason
        _chunk([_delta({"content": "Hi"})]) + b'data: {"error": {"message": "boom"}}\n\n' + b"data: [DONE]\n\n",
        _chunk([_delta({"content": "Hi"})]) + b"event: error\ndata: {}\n\n",
        b"data: {not json}\n\ndata: [DONE]\n\n",
        b"data: [DONE]\n\n",  # no choices at all
        b"",
        b'data: {"object": "chat.completion", "choices": []}\n\ndata: [DONE]\n\n',
    ],
)
def test_partial_or_failed_streams_are_none(raw: bytes) -> None:
    assert assemble_stream(raw) is None


def test_non_200_is_none() -> None:
    assert assemble_stream(TEXT_STREAM, status_code=500) is None


def test_multiple_choices() -> None:
    raw = (
        _chunk([_delta({"role": "assistant", "content": "A"}, index=0), _delta({"content": "B"}, index=1)])
        + _chunk([_delta({}, "stop", 0), _delta({}, "length", 1)])
        + b"data: [DONE]\n\n"
    )
    c = assemble_stream(raw)
    assert c is not None
    assert [(ch["message"]["content"], ch["finish_reason"]) for ch in c["choices"]] == [
        ("A", "stop"),
        ("B", "length"),
    ]


COMPLETIONS = [
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "system_fingerprint": "fp_x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": 'Ünïcode ✓ and "quotes"\nnew line'},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": USAGE,
    },
    {
        "id": "c2",
        "object": "chat.completion",
        "created": 2,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                        {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"x":1}'}},
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "", "reasoning_content": "thinking..."},
                "logprobs": {"content": [{"token": "x", "logprob": -0.1}]},
                "finish_reason": "stop",
            },
        ],
    },
    {
        "id": "c3",
        "object": "chat.completion",
        "created": 3,
        "model": "m",
        "system_fingerprint": "fp_y",
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
                "logprobs": None,
                "finish_reason": "function_call",
            }
        ],
        "usage": USAGE,
    },
]


@pytest.mark.parametrize("completion", COMPLETIONS, ids=["text", "tools+reasoning+logprobs", "function_call"])
def test_round_trip_through_the_served_replay(completion: dict[str, Any]) -> None:
    # Everything a cached completion holds survives its replay as a stream: system_fingerprint, service_tier,
    # logprobs and a legacy function_call included.
    usage = {"stream": True, "stream_options": {"include_usage": True}}
    replayed, ctype = render_cached(completion, stream=True, body=usage)
    assert ctype == "text/event-stream"
    assert assemble_stream(replayed) == completion
    plain, _ = render_cached(completion, stream=True, body={"stream": True})
    assert assemble_stream(plain) == {k: v for k, v in completion.items() if k != "usage"}


def test_is_cacheable() -> None:
    assert not is_cacheable({"object": "chat.completion", "choices": []})
    filtered = {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "content_filter"}]}
    assert not is_cacheable(filtered)
    assert not is_cacheable({"error": {"message": "x"}})
