"""The decision core, shared by the Envoy ExtProc server and the direct proxy. Pure: no I/O.

Two phases, so the I/O layer can batch every text of many requests into one Triton call:

1. `plan_request(cfg, body, headers)` validates the chat request (raising `InvalidRequest`, a 400) and lists the
   distinct texts that need signals, with what each is for.
2. `decide(cfg, plan, body, signals, tool_index)` turns those signals into `Routed` (rewritten body,
   endpoint, headers, failover candidates, cache policy) or `Blocked` (rendered by `render.render_block`).
   `signals=None` means Triton was unavailable: each check then follows `triton_router.failure_policy`.

Order of the decision: category (keyword rules, then classifier) → jailbreak guard → candidate chain →
PII guard (may move an auto request down the chain) → endpoint → rewrites (model, reasoning, system
prompt, tools).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from router_service.config import RouterConfig
from router_service.core import conversation, guards, pii_masking, routing
from router_service.core.decision_types import (
    Blocked,
    BlockReason,
    CachePolicy,
    PiiEntity,
    Plan,
    Routed,
    TextSignals,
    ToolMode,
)
from router_service.core.openai_schema import check_request
from router_service.core.tools import ToolIndex, tool_text
from router_service.errors import BodyTooLarge, InvalidBody, InvalidEncoding, InvalidJson, InvalidRequest

__all__ = [
    "BlockReason",
    "Blocked",
    "CachePolicy",
    "PiiEntity",
    "Plan",
    "Routed",
    "TextSignals",
    "decide",
    "load_body",
    "message_text",
    "parse_body",
    "pii_windows",
    "plan_request",
    "without_lone_surrogates",
]

# --- phase 1: plan ---------------------------------------------------------------------------------------


def plan_request(cfg: RouterConfig, body: object, headers: Mapping[str, str]) -> Plan:
    """Validate a chat-completions body against OpenAI's schema (`openai_schema`) and say which texts need signals.

    `headers` give the conversation key (conversation routing); cache control and tenant scoping are applied by
    the cache layer.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    check_request("chat", body)
    model: str = body["model"]
    stream = body.get("stream")
    texts = _Texts()
    messages: list[dict[str, Any]] = body["messages"]
    roles_and_texts = [(m["role"], message_text(m)) for m in messages]
    is_auto = cfg.is_auto_model(model)
    pii_texts = (w for _, t in roles_and_texts if t.strip() for w in pii_windows(t))
    pii = [texts.add(w) for w in pii_texts] if cfg.pii_can_matter(model, is_auto) else []
    user = [texts.add(t) for role, t in roles_and_texts if role == "user" and t.strip()]
    last_user = user[-1] if user else None
    tool_mode = _tool_mode(cfg, body, last_user)
    tool_indices = [texts.add(tool_text(t)) for t in body["tools"]] if tool_mode == "filter" else []
    keyword = _keyword_category(cfg, texts.items[last_user]) if is_auto and last_user is not None else None
    return Plan(
        texts=tuple(texts.items),
        intent_index=last_user if is_auto else None,
        jailbreak_indices=tuple(dict.fromkeys(user)),
        pii_indices=tuple(dict.fromkeys(pii)),
        embedding_index=last_user,
        requested_model=model,
        is_auto=is_auto,
        stream=bool(stream),
        keyword_category=keyword,
        tool_mode=tool_mode,
        tool_indices=tuple(tool_indices),
        conversation_key=conversation.conversation_key(cfg, messages, headers) if is_auto else None,
        tool_loop=conversation.in_tool_loop(messages),
    )


PII_WINDOW_CHARS = 1000
PII_WINDOW_OVERLAP = 150


def pii_windows(text: str) -> list[str]:
    """`text` in overlapping windows short enough for the model's 512-token window, for PII detection: a long
    message's tail is checked too (an entity shorter than the overlap is whole in some window)."""
    if len(text) <= PII_WINDOW_CHARS:
        return [text]
    step = PII_WINDOW_CHARS - PII_WINDOW_OVERLAP
    return [text[i : i + PII_WINDOW_CHARS] for i in range(0, len(text) - PII_WINDOW_OVERLAP, step)]


class _Texts:
    """Distinct texts in first-seen order; `add` returns a text's index."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.items)
            self.items.append(text)
        return self._index[text]


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text: its string content, or its text parts joined by newlines (images etc. skipped)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def load_body(raw: bytes) -> Any:
    """The request body as JSON. Raises UnicodeDecodeError (not UTF-8), ValueError (not JSON, or a number no JSON
    parser elsewhere reads: NaN, Infinity, a float past the double range) or RecursionError (nested too deep).

    The bytes must be UTF-8 (a leading byte-order mark is skipped): strictly, so an encoded surrogate (ED A0 80) is
    refused too, where `json.loads(bytes)` would let it through as a lone surrogate that no later encode survives.
    JSON may still escape a lone surrogate ("\\ud800"): every one becomes U+FFFD (valid pairs decode to their
    character), since the tokenizer and the re-encoded upstream body could not carry it.
    """
    text = raw.decode("utf-8").removeprefix("\ufeff")
    body = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    _check_depth(body)
    return _without_surrogates(body) if _SURROGATE_ESCAPE.search(raw) else body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"number out of range: {literal[:40]}")
    return value


def parse_body(raw: bytes | None, *, max_bytes: int, expected: str) -> dict[str, Any]:
    """A request body as a JSON object. Raises BodyTooLarge (over `max_bytes`), InvalidEncoding (not UTF-8),
    InvalidJson (empty, not JSON, nested too deep) or InvalidBody (JSON, but not an object); `expected` completes
    "send ..." when it is empty."""
    if not raw:
        raise InvalidJson(f"request body is empty: send {expected}")
    if len(raw) > max_bytes:
        raise BodyTooLarge(f"request body exceeds {max_bytes} bytes")
    try:
        body = load_body(raw)
    except UnicodeDecodeError as e:
        where = f"byte 0x{e.object[e.start]:02x} at offset {e.start}"
        raise InvalidEncoding(f"request body is not valid UTF-8 ({where}): send JSON as UTF-8") from None
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deep
        raise InvalidJson(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidBody("request body must be a JSON object")
    return body


MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a request body. Real requests (tool schemas included) stay far
below it; deeper bodies parse, but copying or re-encoding them would exhaust the interpreter's recursion limit."""


def _check_depth(value: Any) -> None:
    """Raise ValueError when `value` nests deeper than MAX_JSON_DEPTH (iteratively: no recursion to exhaust)."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        todo.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (the tokenizer rejects a str holding one)."""
    return _SURROGATE.sub("\ufffd", text)


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return without_lone_surrogates(value)
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


def _tool_mode(cfg: RouterConfig, body: Mapping[str, Any], last_user: int | None) -> ToolMode:
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not cfg.tools.enabled or last_user is None:
        return "none"
    if tools and choice in (None, "auto"):
        return "filter"
    if not tools and choice == "auto":
        return "add"
    return "none"


def _keyword_category(cfg: RouterConfig, text: str) -> str | None:
    return next((rule.category for rule in cfg.keyword_rules if rule.matches(text)), None)


# --- phase 2: decide -------------------------------------------------------------------------------------


def decide(
    cfg: RouterConfig,
    plan: Plan,
    body: Mapping[str, Any],
    signals: Sequence[TextSignals] | None,
    tool_index: ToolIndex | None,
    pin: conversation.PinLookup | None = None,
) -> Routed | Blocked:
    """Route or block one planned request. `body` is not modified; `Routed.body` is a rewritten copy.

    `pin` is the conversation's pin as the store returned it (None: conversation routing does not apply)."""
    if signals is not None and len(signals) != len(plan.texts):
        raise ValueError(f"got {len(signals)} signals for {len(plan.texts)} planned texts")
    turn = conversation.resolve(cfg, plan.is_auto, plan.tool_loop, routing.classify(cfg, plan, signals), pin)
    cls = turn.classification
    category = cls.category
    blocked = guards.check_jailbreak(cfg, plan, signals, category)
    if blocked is not None:
        return blocked
    if cls.reason == "classifier_unavailable" and cfg.triton_router.failure_policy.classification == "closed":
        return guards.unavailable("classification", category)
    chain = routing.candidate_chain(cfg, plan, cls)
    if turn.pinned_model is not None:
        chain = conversation.pin_first(chain, turn.pinned_model)
    pii = guards.detect_pii(cfg, plan, signals, category)
    if pii is None and cfg.triton_router.failure_policy.pii == "open":
        pii = frozenset()
    entities = guards.pii_entities(cfg, plan, signals, category)
    allowed = guards.eligible(cfg, chain, pii, maskable=entities is not None)
    if not allowed:
        return guards.unavailable("pii", category) if pii is None else guards.pii_blocked(cfg, chain, pii, category)
    chosen = allowed[0]
    policy = cfg.pii_policy_for(chosen.model)
    masking = (
        pii_masking.plan_masking(entities or (), lambda t: not policy.allows(t), restore=policy.restore)
        if policy.masks
        else None
    )
    masked = frozenset(masking.counts if masking is not None else ())
    detected = frozenset(e.type for e in entities or ())
    # A failover candidate gets the same body: a masking one only when what it must not see is masked already.
    allowed = (chosen, *(c for c in allowed[1:] if guards.covered(cfg, c, detected - masked)))
    (model, endpoint), *failover = routing.endpoints(cfg, allowed)
    new_body = copy.deepcopy(dict(body))
    new_body["model"] = model
    if masking is not None:
        pii_masking.mask_body(new_body, masking)
    reasoning = routing.apply_reasoning(cfg, new_body, chosen) if plan.is_auto else False
    injected = routing.apply_system_prompt(new_body, category) if plan.is_auto else False
    tools = routing.apply_tools(cfg, plan, new_body, signals, tool_index)
    name = category.name if category is not None else None
    response_headers = {
        "x-vsr-selected-model": model,
        "x-vsr-selected-reasoning": "on" if reasoning else "off",
        "x-vsr-injected-system-prompt": "true" if injected else "false",
    }
    if name is not None:
        response_headers["x-vsr-selected-category"] = name
    if masking is not None:
        response_headers["x-vsr-pii-masked"] = ",".join(masking.types)
    pin_outcome, new_pin = _pin_after(turn, chosen.model, name)
    if pin_outcome is not None:
        response_headers["x-vsr-conversation-pin"] = pin_outcome
    moved = chosen is not chain[0]
    refused = chain[: chain.index(chosen)] if moved and pii else ()
    pii_denied = {
        c.model: tuple(t for t in sorted(pii or ()) if not cfg.pii_policy_for(c.model).allows(t)) for c in refused
    }
    return Routed(
        model=model,
        endpoint=endpoint,
        category=name,
        confidence=cls.confidence,
        reasoning=reasoning,
        injected_system_prompt=injected,
        body=new_body,
        upstream_headers={"x-vsr-destination-endpoint": endpoint, "x-selected-model": model},
        response_headers=response_headers,
        candidates=tuple(failover),
        # A masked request is never cached: the cache would key PII-bearing prompts and replay placeholders.
        cache=CachePolicy(
            enabled=cfg.cache_enabled(category) and masking is None, threshold=cfg.cache_threshold(category)
        ),
        reason=cls.reason + ("+pii_fallback" if moved else ""),
        pii_types=tuple(sorted(pii or ())),
        selected_tools=tools,
        pii_denied=pii_denied,
        masking=masking,
        pin_outcome=pin_outcome,
        pin=new_pin,
    )


def _pin_after(
    turn: conversation.Turn, chosen: str, category: str | None
) -> tuple[str | None, conversation.Pin | None]:
    """The pin outcome for the response header and the pin to store after this turn."""
    if turn.outcome in (None, "unavailable"):
        return turn.outcome, None
    if turn.pinned_model is not None:
        pin = conversation.Pin(turn.pinned_model, category)
        return ("overridden" if chosen != turn.pinned_model else turn.outcome), pin
    return turn.outcome, conversation.Pin(chosen, category)
