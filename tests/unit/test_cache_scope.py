"""cache_service.scope: what the fingerprint covers and what it ignores; the prompt key."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cache_service.scope import fingerprint, prompt_text

BASE: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "How do I reverse a list in Python?"},
    ],
    "temperature": 0.2,
    "max_tokens": 256,
}


def _with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body.update(changes)
    return body


def test_stable_and_hex() -> None:
    fp = fingerprint(BASE)
    assert fp == fingerprint(copy.deepcopy(BASE))
    assert len(fp) == 32 and int(fp, 16) >= 0


@pytest.mark.parametrize(
    "changes",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"user": "alice"},
        {"metadata": {"trace": "x"}},
        {"model": "another-model"},  # the model is a scope part of its own
        {"temperature": 0.2, "top_p": None},  # None is the same as absent
    ],
)
def test_ignores_what_does_not_change_the_answer(changes: dict[str, Any]) -> None:
    assert fingerprint(_with(**changes)) == fingerprint(BASE)


def test_ignores_the_user_message_and_key_order() -> None:
    other = copy.deepcopy(BASE)
    other["messages"][1]["content"] = "Something else entirely"
    assert fingerprint(other) == fingerprint(BASE)
    reordered = dict(reversed(list(BASE.items())))
    assert fingerprint(reordered) == fingerprint(BASE)


def test_integral_floats_equal_ints() -> None:
    assert fingerprint(_with(temperature=1)) == fingerprint(_with(temperature=1.0))


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    "changes",
    [
        {"temperature": 0.7},
        {"top_p": 0.9},
        {"max_tokens": 512},
        {"max_completion_tokens": 100},
        {"n": 2},
        {"stop": ["\n"]},
        {"seed": 7},
        {"presence_penalty": 0.5},
        {"frequency_penalty": 0.5},
        {"logit_bias": {"50256": -100}},
        {"reasoning_effort": "high"},
        {"chat_template_kwargs": {"enable_thinking": True}},
        {"tools": TOOLS},
        {"tools": TOOLS, "tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"some_vendor_knob": 3},  # unknown keys count: distinct rather than wrongly shared
    ],
)
def test_generation_parameters_change_it(changes: dict[str, Any]) -> None:
    assert fingerprint(_with(**changes)) != fingerprint(BASE)


def test_system_prompt_changes_it() -> None:
    other = copy.deepcopy(BASE)
    other["messages"][0]["content"] = "You are verbose."
    assert fingerprint(other) != fingerprint(BASE)
    dev = copy.deepcopy(BASE)
    dev["messages"][0]["role"] = "developer"
    assert fingerprint(dev) != fingerprint(BASE)
    none = copy.deepcopy(BASE)
    del none["messages"][0]
    assert fingerprint(none) != fingerprint(BASE)


def test_earlier_turns_change_it() -> None:
    a = copy.deepcopy(BASE)
    a["messages"][1:1] = [
        {"role": "user", "content": "Write a sort in Go"},
        {"role": "assistant", "content": "func sort..."},
    ]
    b = copy.deepcopy(a)
    b["messages"][1]["content"] = "Write a sort in Rust"
    assert len({fingerprint(a), fingerprint(b), fingerprint(BASE)}) == 3


def test_prompt_text_is_the_last_user_message() -> None:
    body = _with(
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "part"}],
            },
        ]
    )
    assert prompt_text(body) == "second\npart"
    assert prompt_text(BASE) == "How do I reverse a list in Python?"


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "system", "content": "only a system prompt"}],
        [{"role": "user", "content": "   "}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:..."}}]}],
        [{"role": "user", "content": None}],
    ],
)
def test_prompt_text_none_when_not_cacheable(messages: list[Any]) -> None:
    assert prompt_text({"messages": messages}) is None
    assert prompt_text({}) is None
