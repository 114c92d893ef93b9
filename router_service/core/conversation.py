"""Conversation-aware routing: the policy that keeps a conversation on one model (pure; the pin store does the I/O).

Rules (`triton_router.conversation`):

- Only requests for the auto model take part; an explicit model is the client's choice.
- Key: the operator's header (`conversation.header`, scoped by the tenant header), else a hash of the
  conversation's opening: its system messages and first user message, with the tenant and `authorization`
  headers, so two clients opening with "Hello" do not share a pin.
- No pin yet (or the pinned model left the config): route as usual and pin the result (`created`).
- A pin exists: keep its model and category (`applied`), unless the turn's category differs from the pinned one
  with confidence above `switch_confidence` (classifier, or a keyword rule's 1.0): then route as usual and re-pin
  (`broken`). `switch_confidence: 1.0` never moves a conversation. Inside a tool-call loop (a tool result or an
  assistant tool call after the last user message) the pin always holds (`applied_tool_loop`).
- A pinned model the guards refuse this turn (PII policy) is passed over for this turn only (`overridden`);
  the pin stays.
- Redis unavailable: route as usual, nothing is pinned (`unavailable`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from router_service.config import RouterConfig
from router_service.core.routing import Candidate, CategoryChoice

__all__ = ["Pin", "PinLookup", "PinOutcome", "Turn", "conversation_key", "in_tool_loop", "pin_first", "resolve"]

PinOutcome = Literal["created", "applied", "applied_tool_loop", "broken", "overridden", "unavailable"]
PIN_REASON = "conversation_pin"
"""`Routed.reason` (and `llm_routing_reason_codes_total`) when the pinned model serves the turn."""


@dataclass(frozen=True)
class Pin:
    """A conversation's model (the config's name, not a LoRA alias) and the category it was chosen for."""

    model: str
    category: str | None


@dataclass(frozen=True)
class PinLookup:
    """What the pin store returned for a request: the pin (None: none yet), or that Redis could not answer."""

    pin: Pin | None
    available: bool = True


@dataclass(frozen=True)
class Turn:
    """The policy's verdict for one turn: the classification to route by, the model to put first, the outcome."""

    classification: CategoryChoice
    pinned_model: str | None
    outcome: PinOutcome | None


def conversation_key(
    cfg: RouterConfig, messages: Sequence[Mapping[str, Any]], headers: Mapping[str, str]
) -> str | None:
    """The conversation's key (a hex digest, never request text), or None when conversation routing is off or the
    request has no user message to anchor it."""
    conv = cfg.triton_router.conversation
    if not conv.enabled:
        return None
    tenant = headers.get(cfg.triton_router.cache_tenant_header, "")
    explicit = headers.get(conv.header, "").strip()
    if explicit:
        return _digest(["header", tenant, explicit])
    opening: list[str] = []
    for message in messages:
        role = str(message.get("role", ""))
        if role in ("system", "developer") or role == "user":
            opening += [role, _text(message.get("content"))]
        if role == "user":
            return _digest(["opening", tenant, headers.get("authorization", ""), *opening])
    return None


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _digest(parts: list[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "replace"))
        h.update(b"\x00")
    return h.hexdigest()[:40]


def in_tool_loop(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a tool call is in flight: after the last user message, an assistant asked for a tool or a tool
    answered (the model that asked must see the result)."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    for message in messages[last_user + 1 :]:
        role = message.get("role")
        if role in ("tool", "function"):
            return True
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return True
    return False


def resolve(cfg: RouterConfig, is_auto: bool, tool_loop: bool, cls: CategoryChoice, lookup: PinLookup | None) -> Turn:
    """Apply the pin to this turn's classification (see the module docstring)."""
    if lookup is None or not is_auto:
        return Turn(cls, None, None)
    if not lookup.available:
        return Turn(cls, None, "unavailable")
    pin = lookup.pin
    if pin is None or pin.model not in cfg.all_models():
        return Turn(cls, None, "created")
    pinned = CategoryChoice(
        cfg.category(pin.category) if pin.category is not None else None, cls.confidence, PIN_REASON
    )
    if tool_loop:
        return Turn(pinned, pin.model, "applied_tool_loop")
    new_category = cls.category.name if cls.category is not None else None
    confident = cls.confidence is not None and cls.confidence > cfg.triton_router.conversation.switch_confidence
    if new_category != pin.category and new_category is not None and confident:
        return Turn(cls, None, "broken")
    return Turn(pinned, pin.model, "applied")


def pin_first(chain: Sequence[Candidate], model: str) -> tuple[Candidate, ...]:
    """The candidate chain with the pinned model first (keeping its category entry when it has one)."""
    entry = next((c for c in chain if c.model == model), Candidate(model))
    return (entry, *(c for c in chain if c.model != model))
