"""Jailbreak and PII guards, and the failure policy that applies when Triton gave no signals.

Pure functions of (config, plan, signals); the decision core calls them. Per-category overrides come
from `RouterConfig.jailbreak_*` / `pii_*`, so the guards and the classification API agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from router_service.config import Category, RouterConfig
from router_service.core.decision_types import Blocked, PiiEntity, Plan, TextSignals
from router_service.core.routing import Candidate

__all__ = ["check_jailbreak", "covered", "detect_pii", "eligible", "pii_blocked", "pii_entities", "unavailable"]

JAILBREAK_TYPE = "jailbreak"
"""The signals model is binary (benign/jailbreak), so the only type it can report is this one."""

_NOT_PII = frozenset({"O", "NO_PII"})


def _name(category: Category | None) -> str | None:
    return category.name if category is not None else None


def unavailable(check: str, category: Category | None) -> Blocked:
    """A closed failure policy refusing a request because `check` could not run (rendered as HTTP 503)."""
    return Blocked(
        reason="classifier_unavailable",
        message=f"The router's {check} check is unavailable, so the request was not forwarded. Retry later.",
        category=_name(category),
        detail={"check": check},
    )


def check_jailbreak(
    cfg: RouterConfig, plan: Plan, signals: Sequence[TextSignals] | None, category: Category | None
) -> Blocked | None:
    """Block when any user message scores at or above the (per-category) jailbreak threshold."""
    if not plan.jailbreak_indices or not cfg.jailbreak_enabled(category):
        return None
    if signals is None:
        closed = cfg.triton_router.failure_policy.jailbreak == "closed"
        return unavailable("jailbreak", category) if closed else None
    confidence = max(signals[i].jailbreak_confidence for i in plan.jailbreak_indices)
    threshold = cfg.jailbreak_threshold(category, signals[plan.jailbreak_indices[0]].jailbreak_threshold)
    if confidence < threshold:
        return None
    return Blocked(
        reason="jailbreak",
        message=(
            f"This request was blocked: it looks like a {JAILBREAK_TYPE} attempt (confidence "
            f"{confidence:.3f}). Please rephrase it within the usage policy."
        ),
        category=_name(category),
        headers={
            "x-vsr-jailbreak-blocked": "true",
            "x-vsr-jailbreak-type": JAILBREAK_TYPE,
            "x-vsr-jailbreak-confidence": f"{confidence:.3f}",
        },
        detail={"confidence": confidence, "threshold": threshold, "type": JAILBREAK_TYPE},
    )


def detect_pii(
    cfg: RouterConfig, plan: Plan, signals: Sequence[TextSignals] | None, category: Category | None
) -> frozenset[str] | None:
    """PII types found in any message at or above the (per-category) threshold.

    Empty when the check is off for this request; None when it should run but Triton gave no signals (or no PII).
    """
    if not plan.pii_indices or not cfg.pii_enabled(category):
        return frozenset()
    if signals is None:
        return None
    threshold = cfg.pii_threshold(category)
    found: set[str] = set()
    for i in plan.pii_indices:
        entities = signals[i].pii
        if entities is None:
            return None
        found.update(e.type for e in entities if e.confidence >= threshold and e.type not in _NOT_PII)
    return frozenset(found)


def pii_entities(
    cfg: RouterConfig, plan: Plan, signals: Sequence[TextSignals] | None, category: Category | None
) -> tuple[PiiEntity, ...] | None:
    """Every PII entity at or above the (per-category) threshold, for masking; None when unknown (Triton gave no
    signals or no PII, or a text was longer than the model's window). Unlike `detect_pii` it ignores the
    category's `pii_enabled`: a masking model gets masked text whatever the category says."""
    if not plan.pii_indices:
        return ()
    if signals is None:
        return None
    threshold = cfg.pii_threshold(category)
    found: list[PiiEntity] = []
    for i in plan.pii_indices:
        entities = signals[i].pii
        if entities is None or signals[i].truncated:
            return None
        found.extend(e for e in entities if e.confidence >= threshold and e.type not in _NOT_PII)
    return tuple(found)


def eligible(
    cfg: RouterConfig, chain: Sequence[Candidate], pii: frozenset[str] | None, *, maskable: bool = False
) -> tuple[Candidate, ...]:
    """Candidates whose pii_policy allows every detected type, in chain order.

    With PII unknown (None), only models that allow every type are safe. A model whose policy masks
    (`action: mask`) is eligible exactly when the entities are known (`maskable`): it fails closed.
    """

    def ok(c: Candidate) -> bool:
        policy = cfg.pii_policy_for(c.model)
        if policy.masks:
            return maskable
        if pii is None:
            return policy.allows_all
        return all(policy.allows(t) for t in pii)

    return tuple(c for c in chain if ok(c))


def covered(cfg: RouterConfig, candidate: Candidate, unmasked: frozenset[str]) -> bool:
    """Whether `candidate` may receive a body in which the types `unmasked` are still in clear text: always for a
    model that does not mask (it was found eligible), else only when its policy allows each such type."""
    policy = cfg.pii_policy_for(candidate.model)
    return not policy.masks or all(policy.allows(t) for t in unmasked)


def pii_blocked(
    cfg: RouterConfig, chain: Sequence[Candidate], pii: frozenset[str], category: Category | None
) -> Blocked:
    """No candidate may receive the detected PII."""
    types = sorted(pii)
    denied = {c.model: [t for t in types if not cfg.pii_policy_for(c.model).allows(t)] for c in chain}
    return Blocked(
        reason="pii",
        message=(
            "This request was blocked: it contains personal data "
            f"({', '.join(types)}) that no eligible model is allowed to receive."
        ),
        category=_name(category),
        headers={"x-vsr-pii-violation": "true"},
        detail={"pii_types": types, "denied": denied},
    )
