"""Value objects of the decision core (re-exported by `router_service.core.decision`).

They live apart from `decision.py` so that its helpers (`routing.py`, `guards.py`) can build them without
an import cycle. All are frozen: a decision is computed once and then only read by the transports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from router_service.core.conversation import Pin
    from router_service.core.pii_masking import Masking

__all__ = ["BlockReason", "Blocked", "CachePolicy", "PiiEntity", "Plan", "Routed", "TextSignals", "ToolMode"]

BlockReason = Literal["jailbreak", "pii", "classifier_unavailable"]
ToolMode = Literal["none", "filter", "add"]


@dataclass(frozen=True)
class PiiEntity:
    """One detected span: `type` is a Presidio name (PERSON, US_SSN, ...); offsets index the text."""

    type: str
    start: int
    end: int
    text: str
    confidence: float


@dataclass(frozen=True, eq=False)
class TextSignals:
    """Everything Triton's `signals` model says about one text (one row of one batched call).

    `eq=False`: the embedding is an array, which has no single truth value to compare by.
    """

    intent: str
    intent_confidence: float
    intent_probs: Mapping[str, float]
    jailbreak_confidence: float
    pii: tuple[PiiEntity, ...] | None
    """None when not computed: the request asked Triton for no PII (it could not change the outcome)."""
    embedding: npt.NDArray[np.float32]
    jailbreak_threshold: float = 0.7
    """The operating point the model's build chose on validation (manifest `thresholds.jailbreak`); a configured
    `prompt_guard.threshold` or category `jailbreak_threshold` takes precedence (`RouterConfig.jailbreak_threshold`)."""
    truncated: bool = False
    """The text was longer than the model's window: what lies past it was not seen (no PII verdict on it)."""


@dataclass(frozen=True)
class Plan:
    """What a request needs from Triton, computed before the (batched) call.

    Indices point into `texts`, which holds each distinct text once. `tool_indices[i]` is the text standing
    for the i-th tool of the request body (only in `tool_mode == "filter"`). `pii_indices` is empty when no
    detected PII could change the outcome (`RouterConfig.pii_can_matter`): Triton is then asked for no PII.
    """

    texts: tuple[str, ...]
    intent_index: int | None
    jailbreak_indices: tuple[int, ...]
    pii_indices: tuple[int, ...]
    embedding_index: int | None
    requested_model: str
    is_auto: bool
    stream: bool
    keyword_category: str | None = None
    tool_mode: ToolMode = "none"
    tool_indices: tuple[int, ...] = ()
    conversation_key: str | None = None
    """The conversation's key when conversation routing is on (`router_service.core.conversation`)."""
    tool_loop: bool = False
    """A tool call is in flight (after the last user message): a pinned conversation never switches models here."""


@dataclass(frozen=True)
class CachePolicy:
    """Semantic-cache use for this request. `threshold` is a cosine similarity: higher is stricter."""

    enabled: bool
    threshold: float


@dataclass(frozen=True)
class Routed:
    """Send the (rewritten) request upstream.

    `model` is the name sent upstream (a category entry's `lora_name` when it has one). `candidates` are
    further (model, endpoint) pairs to try, in order, when `endpoint` fails before its first byte; a caller
    that fails over sets `body["model"]` to the candidate's model. `reason` says how the model was chosen:
    explicit, keyword, classifier, low_confidence, unknown_category, no_user_text, classifier_unavailable,
    with `+pii_fallback` when PII moved the request off its first choice.
    """

    model: str
    endpoint: str
    category: str | None
    confidence: float | None
    reasoning: bool
    injected_system_prompt: bool
    body: dict[str, Any]
    upstream_headers: dict[str, str]
    response_headers: dict[str, str]
    candidates: tuple[tuple[str, str], ...]
    cache: CachePolicy
    reason: str = ""
    pii_types: tuple[str, ...] = ()
    selected_tools: tuple[str, ...] | None = None
    """Names of the tools left in the body after automatic selection; None when selection did not run."""
    pii_denied: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Models passed over because their pii_policy refused detected PII, with the types each refused."""
    masking: Masking | None = None
    """The placeholders that replaced PII in `body` (`pii_policy.action: mask`); transports restore responses."""
    pin_outcome: str | None = None
    """What conversation routing did (`conversation.PinOutcome`); None when it does not apply."""
    pin: Pin | None = None
    """The pin to store for the conversation after this turn (None: store nothing)."""


@dataclass(frozen=True)
class Blocked:
    """Answer the client directly; the request never reaches a model. `render.render_block` renders it."""

    reason: BlockReason
    message: str
    category: str | None
    headers: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
