"""The request schemas of the prompt paths: what OpenAI's API allows passes unchanged, what it refuses is a 400 whose
`param` names the field as the body spells it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from router_service.core.openai_schema import check_request
from router_service.errors import InvalidRequest

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

VALID_CHAT: list[dict[str, Any]] = [
    {"model": "MoM", "messages": [{"role": "user", "content": "hi"}]},
    {
        "model": "qwen3-32b",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "developer", "content": "No lists."},
            {
                "role": "user",
                "name": "ann",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    {"type": "file", "file": {"file_id": "file-1"}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "9C"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
            {"role": "function", "name": "f", "content": None},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 16,
        "max_completion_tokens": 16,
        "n": 1,
        "temperature": 0,
        "top_p": 0.5,
        "presence_penalty": -2,
        "frequency_penalty": 2.0,
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 20,
        "stop": ["\n"],
        "seed": -(2**63),
        "tools": [TOOL, {"type": "custom", "custom": {"name": "grep"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "reasoning_effort": "high",
        "metadata": {"k": "v"},
        # extensions that vLLM and other backends read pass too
        "chat_template_kwargs": {"enable_thinking": True},
        "top_k": 20,
        "repetition_penalty": 1.1,
    },
    {"model": "m", "messages": [{"role": "user", "content": ""}], "stop": None, "tool_choice": "required"},
]


@pytest.mark.parametrize("body", VALID_CHAT)
def test_valid_chat_requests_pass_unchanged(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    check_request("chat", body)
    assert body == before


U = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "MoM", "messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        ({"model": "MoM", "messages": [{"role": "system", "content": None}]}, "messages[0].content"),
        ({"model": "MoM", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "MoM", "messages": [{"role": "assistant", "content": None}]}, "messages[0].content"),
        ({"model": "MoM", "messages": [{"role": "assistant"}]}, "messages[0]"),
        ({"model": "MoM", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"model": "MoM", "messages": [{"role": "alien", "content": "x"}]}, "messages[0].role"),
        (
            {"model": "MoM", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"model": "MoM", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].image_url",
        ),
        (
            {"model": "MoM", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"model": "MoM", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"model": "MoM", "messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]},
            "messages[0].tool_calls[0].type",
        ),
        ({"model": "MoM", "messages": U, "max_tokens": -1}, "max_tokens"),
        ({"model": "MoM", "messages": U, "max_tokens": 10**30}, "max_tokens"),
        ({"model": "MoM", "messages": U, "max_tokens": "16"}, "max_tokens"),
        ({"model": "MoM", "messages": U, "max_tokens": True}, "max_tokens"),
        ({"model": "MoM", "messages": U, "temperature": "hot"}, "temperature"),
        ({"model": "MoM", "messages": U, "temperature": 2.5}, "temperature"),
        ({"model": "MoM", "messages": U, "n": 0}, "n"),
        ({"model": "MoM", "messages": U, "stop": ["a", 1]}, "stop[1]"),
        ({"model": "MoM", "messages": U, "logit_bias": {"1": 500}}, "logit_bias.1"),
        ({"model": "MoM", "messages": U, "tools": [{"type": "function"}]}, "tools[0].function"),
        (
            {"model": "MoM", "messages": U, "tools": [{"type": "function", "function": {"name": 5}}]},
            "tools[0].function.name",
        ),
        ({"model": "MoM", "messages": U, "tool_choice": {"type": "function"}}, "tool_choice.function"),
        ({"model": "MoM", "messages": U, "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "MoM", "messages": U, "reasoning_effort": ["x"]}, "reasoning_effort"),
        ({"model": "MoM", "messages": U, "chat_template_kwargs": 3}, "chat_template_kwargs"),
        ({"model": "MoM", "messages": U, "response_format": {"type": "yaml"}}, "response_format.type"),
        ({"model": "MoM" * 100, "messages": U}, "model"),
        ({"model": "MoM\r\nx-injected: 1", "messages": U}, "model"),
        ({"model": None, "messages": U}, "model"),
        ({"messages": U}, "model"),
        ({"model": "MoM", "messages": []}, "messages"),
        ({"model": "MoM", "messages": [None]}, "messages[0]"),
    ],
)
def test_invalid_chat_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_request("chat", body)
    assert err.value.param == param, err.value.message
    assert err.value.status == 400 and err.value.error_type == "invalid_request_error"
    assert param in err.value.message


def test_a_null_content_says_null_is_not_allowed() -> None:
    with pytest.raises(InvalidRequest) as err:
        check_request("chat", {"model": "MoM", "messages": [{"role": "user", "content": None}]})
    assert err.value.message.startswith("Invalid type for 'messages[0].content': null is not allowed")


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("completions", {"model": "m", "prompt": "Say hi", "max_tokens": 0, "echo": True, "logprobs": 5}),
        ("completions", {"model": "m", "prompt": ["a", "b"], "suffix": "x", "best_of": 2}),
        ("completions", {"model": "m", "prompt": [1, 2, 3]}),
        ("responses", {"model": "m", "input": "hi", "instructions": "Be brief.", "max_output_tokens": 16}),
        (
            "responses",
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x"}]},
                    {"type": "function_call_output", "call_id": "c", "output": "9C"},
                    {"role": "developer", "content": "terse"},
                ],
                "truncation": "auto",
                "reasoning": {"effort": "low"},
            },
        ),
    ],
)
def test_valid_completions_and_responses_pass(kind: str, body: dict[str, Any]) -> None:
    check_request(kind, body)


@pytest.mark.parametrize(
    ("kind", "body", "param"),
    [
        ("completions", {"model": "m"}, "prompt"),
        ("completions", {"model": "m", "prompt": None}, "prompt"),
        ("completions", {"model": "m", "prompt": "x", "logprobs": 6}, "logprobs"),
        ("responses", {"model": "m", "input": 5}, "input"),
        ("responses", {"model": "m", "input": "x", "instructions": 5}, "instructions"),
        ("responses", {"model": "m", "input": [{"role": "user", "content": None}]}, "input[0].content"),
        ("responses", {"model": "m", "input": [{"type": "message", "content": "x"}]}, "input[0].role"),
        (
            "responses",
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
            "input[0].content[0].text",
        ),
        ("responses", {"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_invalid_completions_and_responses_name_the_field(kind: str, body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_request(kind, body)
    assert err.value.param == param, err.value.message
