"""Model choice and request rewriting for the decision core: category, candidate chain, endpoints,
reasoning fields, the category system prompt and automatic tool selection.

Every function is pure apart from mutating the body copy it is handed (the decision core deep-copies
the client's body once, up front).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from router_service.config import Category, ModelScore, RouterConfig
from router_service.core.decision_types import Plan, TextSignals
from router_service.core.tools import ToolIndex, rank, tool_name

__all__ = [
    "MAX_CANDIDATES",
    "Candidate",
    "CategoryChoice",
    "apply_reasoning",
    "apply_system_prompt",
    "apply_tools",
    "candidate_chain",
    "classify",
    "endpoints",
]

MAX_CANDIDATES = 8
"""Bound on failover pairs: past a handful of backends, retrying only adds latency to a failing request."""


@dataclass(frozen=True)
class CategoryChoice:
    """The category a request routes by (None: use default_model) and how it was found."""

    category: Category | None
    confidence: float | None
    reason: str


@dataclass(frozen=True)
class Candidate:
    """A model to try; `entry` is its category model_scores entry (None for explicit/default models)."""

    model: str
    entry: ModelScore | None = None

    @property
    def upstream_name(self) -> str:
        """What `model` says upstream: the entry's LoRA adapter name when it has one (VSR semantics)."""
        if self.entry is not None and self.entry.lora_name:
            return self.entry.lora_name
        return self.model


def classify(cfg: RouterConfig, plan: Plan, signals: Sequence[TextSignals] | None) -> CategoryChoice:
    """Keyword rules first (confidence 1.0), then the intent classifier with its confidence threshold."""
    if not plan.is_auto:
        return CategoryChoice(None, None, "explicit")
    if plan.keyword_category is not None:
        return CategoryChoice(cfg.category(plan.keyword_category), 1.0, "keyword")
    if plan.intent_index is None:
        return CategoryChoice(None, None, "no_user_text")
    if signals is None:
        return CategoryChoice(None, None, "classifier_unavailable")
    signal = signals[plan.intent_index]
    category = cfg.category(signal.intent)
    if category is None:
        return CategoryChoice(None, signal.intent_confidence, "unknown_category")
    if signal.intent_confidence < cfg.classifier.category_model.threshold:
        return CategoryChoice(None, signal.intent_confidence, "low_confidence")
    return CategoryChoice(category, signal.intent_confidence, "classifier")


def candidate_chain(cfg: RouterConfig, plan: Plan, cls: CategoryChoice) -> tuple[Candidate, ...]:
    """Models in preference order: an explicit model alone; for auto, the category's entries by score,
    then default_model (the PII fallback chain)."""
    if not plan.is_auto:
        return (Candidate(plan.requested_model),)
    ranked = cls.category.ranked_scores() if cls.category is not None else ()
    chain = [Candidate(entry.model, entry) for entry in ranked]
    if all(c.model != cfg.default_model for c in chain):
        chain.append(Candidate(cfg.default_model))
    return tuple(chain)


def endpoints(cfg: RouterConfig, allowed: Sequence[Candidate]) -> list[tuple[str, str]]:
    """(upstream model name, host:port) pairs in failover order: each model's endpoints by weight."""
    pairs: list[tuple[str, str]] = []
    for candidate in allowed:
        for endpoint in cfg.endpoints_for(candidate.model):
            pair = (candidate.upstream_name, endpoint.host_port)
            if pair not in pairs:
                pairs.append(pair)
    return pairs[: MAX_CANDIDATES + 1]


# --- body rewriting -------------------------------------------------------------------------------------


def apply_reasoning(cfg: RouterConfig, body: dict[str, Any], candidate: Candidate) -> bool:
    """Set the chosen model's reasoning field; returns whether reasoning is on.

    Any reasoning field the client sent is removed first: with an auto model the router owns the
    decision. chat_template_kwargs families get an explicit false when reasoning is off (as VSR does), so
    a model that thinks by default does not. A model without a reasoning family is left untouched: there
    is no known way to ask it.
    """
    family = cfg.reasoning_family_for(candidate.model)
    if family is None:
        return False
    _strip_reasoning(cfg, body)
    entry = candidate.entry
    use = bool(entry is not None and entry.use_reasoning)
    if family.type == "chat_template_kwargs":
        kwargs = body.get("chat_template_kwargs")
        if not isinstance(kwargs, dict):
            kwargs = body["chat_template_kwargs"] = {}
        kwargs[family.parameter] = use
    elif use:
        effort = (entry.reasoning_effort if entry is not None else None) or cfg.default_reasoning_effort
        body[family.parameter] = effort
    return use


def _strip_reasoning(cfg: RouterConfig, body: dict[str, Any]) -> None:
    families = cfg.reasoning_families.values()
    body.pop("reasoning_effort", None)
    for family in families:
        if family.type == "reasoning_effort":
            body.pop(family.parameter, None)
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, dict):
        for family in families:
            if family.type == "chat_template_kwargs":
                kwargs.pop(family.parameter, None)
        if not kwargs:
            del body["chat_template_kwargs"]


def apply_system_prompt(body: dict[str, Any], category: Category | None) -> bool:
    """Inject the category's system prompt; returns whether it did.

    replace: the first system message's content becomes the prompt (or one is inserted first).
    insert: the prompt is prepended to the first system message's content (or inserted first).
    """
    if category is None or not category.injects_system_prompt or not category.system_prompt:
        return False
    prompt = category.system_prompt
    messages: list[dict[str, Any]] = body["messages"]
    index = next((i for i, m in enumerate(messages) if m.get("role") == "system"), None)
    if index is None:
        messages.insert(0, {"role": "system", "content": prompt})
        return True
    existing = messages[index].get("content")
    if category.system_prompt_mode == "replace" or not existing:
        content: Any = prompt
    elif isinstance(existing, list):
        content = [{"type": "text", "text": prompt}, *existing]
    else:
        content = f"{prompt}\n\n{existing}"
    messages[index] = {**messages[index], "content": content}
    return True


def apply_tools(
    cfg: RouterConfig,
    plan: Plan,
    body: dict[str, Any],
    signals: Sequence[TextSignals] | None,
    tool_index: ToolIndex | None,
) -> tuple[str, ...] | None:
    """Automatic tool selection; returns the names of the tools left in the body (None: did not run).

    filter (the body has tools, tool_choice auto/absent): keep the top_k body tools whose description is
    at least `tools_threshold` similar to the last user message, in the client's order. None similar
    enough: fallback_to_empty true empties the list, false keeps the client's tools unchanged.
    add (no body tools, tool_choice "auto", VSR's use of tools_db.json): add the top_k catalogue tools.
    A request left without tools also loses tool_choice/parallel_tool_calls, which servers reject alone.
    """
    if plan.tool_mode == "none" or signals is None or plan.embedding_index is None:
        return None
    query = signals[plan.embedding_index].embedding
    top_k, threshold = cfg.tools.top_k, cfg.tools_threshold
    try:
        if plan.tool_mode == "filter":
            return _filter_tools(cfg, plan, body, signals, query, top_k, threshold)
        if tool_index is None or len(tool_index) == 0:
            return None
        matches = tool_index.search(query, top_k, threshold)
    except ValueError:  # embedding sizes disagree (catalogue built by another model): skip selection
        return None
    if not matches:
        _drop_tool_options(body)
        return ()
    body["tools"] = [copy.deepcopy(dict(m.entry.tool)) for m in matches]
    return tuple(m.entry.name for m in matches)


def _filter_tools(
    cfg: RouterConfig,
    plan: Plan,
    body: dict[str, Any],
    signals: Sequence[TextSignals],
    query: np.ndarray[Any, Any],
    top_k: int,
    threshold: float,
) -> tuple[str, ...]:
    tools: list[dict[str, Any]] = body["tools"]
    matrix = np.stack([signals[i].embedding for i in plan.tool_indices])
    hits = rank(query, matrix, top_k, threshold)
    if not hits and not cfg.tools.fallback_to_empty:
        return tuple(tool_name(t) for t in tools)
    kept = [tools[i] for i in sorted(i for i, _ in hits)]
    if kept:
        body["tools"] = kept
    else:
        body.pop("tools", None)
        _drop_tool_options(body)
    return tuple(tool_name(t) for t in kept)


def _drop_tool_options(body: dict[str, Any]) -> None:
    body.pop("tool_choice", None)
    body.pop("parallel_tool_calls", None)
