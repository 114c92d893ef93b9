"""Conversation-aware routing: the key, the tool-loop rule and the pinning policy (hysteresis) in the decision."""

from __future__ import annotations

from typing import Any

import pytest

from router_service.core.conversation import Pin, PinLookup, conversation_key, in_tool_loop
from router_service.core.decision import Routed, TextSignals, decide, plan_request
from tests.unit.test_decision import make_cfg, unit, user

CFG = make_cfg(triton_router={"conversation": {"enabled": True, "switch_confidence": 0.85}})


def assistant(text: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


def turn(
    messages: list[dict[str, Any]],
    intent: str,
    conf: float,
    lookup: PinLookup | None,
    headers: dict[str, str] | None = None,
) -> Routed:
    body = {"model": "MoM", "messages": messages}
    p = plan_request(CFG, body, headers or {})
    signals = [TextSignals(intent, conf, {intent: conf}, 0.0, (), unit(1.0)) for _ in p.texts]
    result = decide(CFG, p, body, signals, None, lookup)
    assert isinstance(result, Routed)
    return result


# --- the key ---------------------------------------------------------------------------------------------


def test_the_key_is_stable_over_the_turns_of_one_conversation() -> None:
    first = [{"role": "system", "content": "Be brief."}, user("Prove that sqrt(2) is irrational")]
    later = [*first, assistant("Suppose..."), user("And sqrt(3)?"), assistant("Same."), user("Thanks")]
    assert conversation_key(CFG, first, {}) == conversation_key(CFG, later, {}) is not None


def test_different_openings_tenants_and_api_keys_get_different_keys() -> None:
    base = [user("Hello")]
    keys = {
        conversation_key(CFG, base, {}),
        conversation_key(CFG, [user("Hello!")], {}),
        conversation_key(CFG, [{"role": "system", "content": "x"}, *base], {}),
        conversation_key(CFG, base, {"x-user-id": "alice"}),
        conversation_key(CFG, base, {"authorization": "Bearer k2"}),
    }
    assert len(keys) == 5


def test_the_operators_header_wins_and_the_key_holds_no_text() -> None:
    a = conversation_key(CFG, [user("secret one")], {"x-conversation-id": "c-42"})
    b = conversation_key(CFG, [user("other")], {"x-conversation-id": "c-42"})
    assert a == b and a is not None and "c-42" not in a and "secret" not in a


def test_off_by_default_and_without_user_text() -> None:
    assert conversation_key(make_cfg(), [user("hi")], {}) is None
    assert conversation_key(CFG, [{"role": "system", "content": "x"}], {}) is None


@pytest.mark.parametrize(
    ("messages", "loop"),
    [
        ([user("hi")], False),
        ([user("weather?"), assistant("", tool_calls=[{"id": "1"}])], True),
        ([user("weather?"), assistant("", tool_calls=[{"id": "1"}]), {"role": "tool", "content": "9C"}], True),
        (
            [user("weather?"), assistant("", tool_calls=[{"id": "1"}]), {"role": "tool", "content": "9C"}, user("ok")],
            False,
        ),
    ],
)
def test_tool_loop(messages: list[dict[str, Any]], loop: bool) -> None:
    assert in_tool_loop(messages) is loop


# --- the policy ------------------------------------------------------------------------------------------


def test_first_turn_creates_a_pin_with_the_stateless_choice() -> None:
    r = turn([user("integrate x^2")], "math", 0.9, PinLookup(None))
    assert r.model == "qwen" and r.pin_outcome == "created" and r.pin == Pin("qwen", "math")
    assert r.response_headers["x-vsr-conversation-pin"] == "created"


def test_a_pin_holds_against_a_low_confidence_change() -> None:
    r = turn([user("a"), assistant("b"), user("and in history?")], "history", 0.7, PinLookup(Pin("qwen", "math")))
    assert r.model == "qwen" and r.pin_outcome == "applied" and r.reason == "conversation_pin"
    assert r.category == "math"  # the conversation's category: its system prompt and reasoning stay


def test_a_confident_category_change_breaks_the_pin() -> None:
    r = turn([user("a"), assistant("b"), user("the fall of Rome?")], "history", 0.95, PinLookup(Pin("qwen", "math")))
    assert r.model == "gpt" and r.pin_outcome == "broken" and r.pin == Pin("gpt", "history")


def test_same_category_keeps_the_pin_even_when_the_stateless_choice_differs() -> None:
    r = turn([user("a"), assistant("b"), user("more algebra")], "math", 0.99, PinLookup(Pin("gpt", "math")))
    assert r.model == "gpt" and r.pin_outcome == "applied"


def test_a_tool_loop_never_switches() -> None:
    call = {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [user("a"), assistant("", tool_calls=[call]), {"role": "tool", "content": "r", "tool_call_id": "1"}]
    r = turn(messages, "history", 0.99, PinLookup(Pin("qwen", "math")))
    assert r.model == "qwen" and r.pin_outcome == "applied_tool_loop"


def test_a_pin_to_a_model_gone_from_the_config_is_replaced() -> None:
    r = turn([user("a"), assistant("b"), user("c")], "math", 0.9, PinLookup(Pin("retired-model", "math")))
    assert r.model == "qwen" and r.pin_outcome == "created"


def test_store_unavailable_routes_statelessly_and_pins_nothing() -> None:
    r = turn([user("integrate x^2")], "math", 0.9, PinLookup(None, available=False))
    assert r.model == "qwen" and r.pin_outcome == "unavailable" and r.pin is None


def test_explicit_models_take_no_part() -> None:
    body = {"model": "gpt", "messages": [user("x")]}
    p = plan_request(CFG, body, {})
    assert p.conversation_key is None
    signals = [TextSignals("math", 0.9, {}, 0.0, (), unit(1.0)) for _ in p.texts]
    r = decide(CFG, p, body, signals, None, None)
    assert isinstance(r, Routed) and r.pin_outcome is None and "x-vsr-conversation-pin" not in r.response_headers


def test_six_turns_stay_on_one_model_where_stateless_routing_bounces() -> None:
    turns = [("math", 0.9), ("history", 0.6), ("math", 0.8), ("physics", 0.7), ("history", 0.8), ("math", 0.9)]
    messages: list[dict[str, Any]] = []
    pin: Pin | None = None
    pinned, stateless = [], []
    for i, (intent, conf) in enumerate(turns):
        messages = [*messages, user(f"turn {i}")]
        r = turn(messages, intent, conf, PinLookup(pin))
        pin = r.pin
        pinned.append(r.model)
        stateless.append(turn([user(f"turn {i}")], intent, conf, None).model)
        messages.append(assistant("ok"))
    assert len(set(pinned)) == 1
    assert len(set(stateless)) > 1
