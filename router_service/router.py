"""The request path shared by the ExtProc server and the direct proxy, with its I/O.

`RequestRouter.handle` is the one entry point: a `ParsedRequest` in, an `Answer` or a `Forward` out
(`core.reply`). A chat request goes plan → signals (one batched Triton call, beside the conversation's pin lookup)
→ decision → semantic-cache lookup (`route`, a `RouteResult`); the transports only speak the reply."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from cache_service.client import CacheClient
from cache_service.scope import fingerprint
from router_service import metrics
from router_service.clients.pins import PinStore
from router_service.clients.triton import SignalClient
from router_service.config import RouterConfig
from router_service.config.store import ConfigStore
from router_service.core.conversation import PinLookup
from router_service.core.decision import Blocked, Plan, Routed, TextSignals, decide, parse_body, plan_request
from router_service.core.path_table import lookup, served_paths
from router_service.core.pii_masking import mask_any_body
from router_service.core.prompt_paths import as_chat
from router_service.core.render import JSON, dumps, models_list, render_block, render_cached, retry_after_header
from router_service.core.reply import (
    Answer,
    CacheScope,
    Forward,
    ParsedRequest,
    Reply,
    error_answer,
    router_error_answer,
)
from router_service.core.tools import ToolIndex
from router_service.endpoint_health import EndpointHealth
from router_service.errors import ClassifierOverloaded, ClassifierUnavailable, RateLimited, RouterError
from router_service.ratelimit import TenantRateLimiter
from router_service.tracing import (
    SPAN_CACHE_LOOKUP,
    SPAN_CLASSIFICATION,
    SPAN_REQUEST,
    SPAN_ROUTING_DECISION,
    incoming_context,
    outgoing_headers,
)

__all__ = ["RequestRouter", "RouteResult", "in_embedding_space", "skip_unhealthy", "with_candidate"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer("router_service")

CACHE_CONTROL_HEADER = "x-vsr-cache-control"


def in_embedding_space(body_fingerprint: str, build_key: str) -> str:
    """The cache fingerprint scoped to the signals model's build: vectors of different builds live in different
    embedding spaces (the one-pass model's embedding approximates all-MiniLM-L6-v2's, it does not equal it), so an
    entry stored under one build is never compared with a query embedded by another."""
    return hashlib.sha256(f"{body_fingerprint}:{build_key}".encode()).hexdigest()[:32]


@dataclass
class RouteResult:
    """One chat request's routing: the decision, its plan, a cache hit or the scope to store the answer under."""

    decision: Routed | Blocked
    plan: Plan
    cache_hit: dict[str, Any] | None = None
    store_scope: CacheScope | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    trace_context: Context | None = None
    """The context of the request's `semantic_router.request.received` span: the parent of later spans (the
    upstream call) and of the trace the router sends on."""

    @property
    def upstream_trace_headers(self) -> dict[str, str]:
        """`traceparent` for the upstream request, so a backend's spans join the router's trace."""
        return outgoing_headers(self.trace_context)

    @property
    def response_headers(self) -> dict[str, str]:
        headers = dict(self.decision.response_headers if isinstance(self.decision, Routed) else {})
        if self.cache_hit is not None:
            headers["x-vsr-cache-hit"] = "true"
        # Where the router's time went, for operators and benchmarks (no request content in it).
        headers["x-vsr-timings"] = ";".join(f"{k}={v:.2f}" for k, v in self.timings_ms.items())
        return headers


class RequestRouter:
    def __init__(
        self,
        store: ConfigStore,
        signals: SignalClient,
        cache: CacheClient | None,
        tool_index: ToolIndex | None = None,
        pins: PinStore | None = None,
        max_body_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.store = store
        self.max_body_bytes = max_body_bytes
        self.signals = signals
        self.cache = cache
        self.tool_index = tool_index
        self._limiter: TenantRateLimiter | None = None
        self.health = EndpointHealth()
        self.pins = pins

    @property
    def config(self) -> RouterConfig:
        return self.store.current

    async def handle(self, request: ParsedRequest) -> Reply:
        """The router's one entry point: what to do with one HTTP request, for any transport.

        The path is looked up in the explicit table (`path_table`): a path not in it is a 404 and a method it does
        not list a 405, both in OpenAI's error shape, so nothing reaches a backend unguarded. GET /v1/models (and
        /v1/models/{model}) is answered from the config. A chat completion is validated, routed and answered
        (refusal, cache hit) or forwarded with its rewritten body; completions and responses are validated, checked
        and forwarded with `model` rewritten (`prompt_paths`). A bad request is answered with the status and OpenAI
        error of its `RouterError`.
        """
        method, path = request.method, request.path.split("?", 1)[0]
        match = lookup(path)
        if match is None:
            message = f"{path[:200]} is not served by this router; it serves {served_paths()}"
            return error_answer(404, message, "not_found")
        if method not in match.methods:
            allowed = ", ".join(match.methods)
            message = f"{method or 'this method'} is not allowed on {path}: use {allowed}"
            return error_answer(405, message, "method_not_allowed", headers={"allow": allowed})
        cfg = self.store.current
        if match.kind == "models":
            return Answer(200, {}, dumps(models_list(cfg)), JSON, "models")
        if match.kind == "model":
            found = [m for m in models_list(cfg)["data"] if m["id"] == match.model]
            if not found:
                message = f"The model '{(match.model or '')[:200]}' does not exist"
                return error_answer(404, message, "model_not_found", param="model")
            return Answer(200, {}, dumps(found[0]), JSON, "model")
        try:
            body = parse_body(request.body, max_bytes=self.max_body_bytes, expected=f"a {match.kind} request as JSON")
            if match.kind == "chat":
                return await self._chat(body, request.headers)
            return await self._prompt(match.kind, body, request.headers)
        except RouterError as e:  # a malformed request, or one refused before any decision (the rate limit)
            return router_error_answer(e)

    async def _chat(self, body: dict[str, Any], headers: Mapping[str, str]) -> Reply:
        result = await self.route(body, headers)
        decision = result.decision
        if isinstance(decision, Blocked):
            status, block_headers, payload, ctype = render_block(
                decision, self.store.current, stream=result.plan.stream, model=result.plan.requested_model
            )
            return Answer(status, block_headers, payload, ctype, f"blocked_{decision.reason}")
        if result.cache_hit is not None:
            payload, ctype = render_cached(result.cache_hit, stream=result.plan.stream, body=body)
            return Answer(200, result.response_headers, payload, ctype, "cache_hit")
        return Forward(
            body=decision.body,
            upstream_headers={**decision.upstream_headers, **result.upstream_trace_headers},
            response_headers=result.response_headers,
            model=decision.model,
            endpoint=decision.endpoint,
            candidates=decision.candidates,
            tracked=True,
            masking=decision.masking,
            store_scope=result.store_scope,
            trace_context=result.trace_context,
        )

    async def _prompt(self, kind: str, body: dict[str, Any], headers: Mapping[str, str]) -> Reply:
        """/v1/completions and /v1/responses: guarded and routed as a chat request would be, never cached."""
        headers = {**headers, CACHE_CONTROL_HEADER: "no-cache, no-store"}
        result = await self.route(as_chat(kind, body), headers)
        decision = result.decision
        if isinstance(decision, Blocked):
            status, block_headers, payload, ctype = render_block(
                decision, self.store.current, stream=False, model=result.plan.requested_model, as_error=True
            )
            return Answer(status, block_headers, payload, ctype, f"blocked_{decision.reason}")
        upstream = {**body, "model": decision.model}
        if decision.masking is not None:  # a masking model gets this path's body masked too
            upstream = mask_any_body(upstream, decision.masking)
        return Forward(
            body=upstream,
            upstream_headers=dict(decision.upstream_headers),
            response_headers=result.response_headers,
            model=decision.model,
            endpoint=decision.endpoint,
            masking=decision.masking,
            trace_context=result.trace_context,
        )

    async def route(self, body: dict[str, Any], headers: Mapping[str, str]) -> RouteResult:
        """Decide what to do with one chat request. Raises InvalidRequest for a malformed body."""
        started = time.perf_counter()
        cfg = self.store.current
        self._check_rate(cfg, headers)
        with tracer.start_as_current_span(
            SPAN_REQUEST, context=incoming_context(headers), kind=trace.SpanKind.SERVER
        ) as root:
            root.set_attribute("request.id", headers.get("x-request-id", ""))
            plan = plan_request(cfg, body, headers)
            root.set_attribute("routing.original_model", plan.requested_model)
            timings: dict[str, float] = {}
            signals: list[TextSignals] | None = None
            unclassified: ClassifierUnavailable | None = None
            pin_lookup = self._start_pin_lookup(plan)  # runs beside the Triton call
            if plan.texts:
                t0 = time.perf_counter()
                with tracer.start_as_current_span(SPAN_CLASSIFICATION) as span:
                    span.set_attributes({"classifier.type": "triton", "classification.texts": len(plan.texts)})
                    try:
                        signals = await self.signals.classify(list(plan.texts), pii=bool(plan.pii_indices))
                    except ClassifierUnavailable as e:
                        unclassified = e
                        if isinstance(e, ClassifierOverloaded):
                            metrics.CLASSIFICATION_SHED.inc()
                        log.warning("classifier unavailable, applying failure policy: %s", e)
                        span.record_exception(e)
                        span.set_status(trace.StatusCode.ERROR, "classifier unavailable")
                        signals = None
                    timings["signals"] = (time.perf_counter() - t0) * 1000
                    span.set_attribute("classification.time_ms", round(timings["signals"], 3))
            pin = await pin_lookup if pin_lookup is not None else None
            with tracer.start_as_current_span(SPAN_ROUTING_DECISION) as span:
                decision = decide(cfg, plan, body, signals, self.tool_index, pin)
                span.set_attributes(_decision_attributes(decision))
            if unclassified is not None:
                decision = _unclassified(decision, unclassified)
            if isinstance(decision, Routed):
                decision = skip_unhealthy(decision, self.health)
            self._save_pin(cfg, plan, decision)
            result = RouteResult(decision=decision, plan=plan, timings_ms=timings)
            record_decision(cfg, plan, decision)
            if isinstance(decision, Routed):
                await self._cache_lookup(result, cfg, body, headers, signals)
            result.trace_context = trace.set_span_in_context(root)
        timings["total"] = (time.perf_counter() - started) * 1000
        metrics.ROUTING_LATENCY.observe(timings["total"] / 1000)
        self._log(cfg, result, headers)
        return result

    def _check_rate(self, cfg: RouterConfig, headers: Mapping[str, str]) -> None:
        """Raise RateLimited when the request's tenant is over `triton_router.rate_limit`."""
        limits = cfg.triton_router.rate_limit
        if not limits.enabled:
            return
        if self._limiter is None or self._limiter.config != limits:  # a reload that changes the limits resets them
            self._limiter = TenantRateLimiter(limits)
        header = limits.tenant_header or cfg.triton_router.cache_tenant_header
        wait = self._limiter.acquire(headers.get(header, ""))
        if wait is not None:
            metrics.RATE_LIMITED.inc()
            raise RateLimited(f"rate limit exceeded for this tenant ({limits.requests_per_second:g} requests/s)", wait)

    def _start_pin_lookup(self, plan: Plan) -> asyncio.Task[PinLookup] | None:
        """The conversation's pin, fetched concurrently with the signals (None: conversation routing is off)."""
        if plan.conversation_key is None:
            return None
        if self.pins is None:  # configured on, but the router runs without Redis: say so on every turn
            return asyncio.get_running_loop().create_task(_unavailable())
        return asyncio.get_running_loop().create_task(self.pins.lookup(plan.conversation_key))

    def _save_pin(self, cfg: RouterConfig, plan: Plan, decision: Routed | Blocked) -> None:
        if not isinstance(decision, Routed) or decision.pin_outcome is None:
            return
        metrics.CONVERSATION_PINS.labels(outcome=decision.pin_outcome).inc()
        if self.pins is not None and decision.pin is not None and plan.conversation_key is not None:
            self.pins.spawn_save(plan.conversation_key, decision.pin, cfg.triton_router.conversation.ttl_seconds)

    @staticmethod
    def _log(cfg: RouterConfig, result: RouteResult, headers: Mapping[str, str]) -> None:
        """One line per decision; the prompt only when the operator opted in (`triton_router.log_prompts`)."""
        d = result.decision
        fields = {
            "request_id": headers.get("x-request-id", "-"),
            "requested": result.plan.requested_model,
            "ms": round(result.timings_ms.get("total", 0.0), 2),
        }
        if isinstance(d, Routed):
            fields |= {"model": d.model, "category": d.category, "confidence": d.confidence, "reason": d.reason}
            fields["cache_hit"] = result.cache_hit is not None
        else:
            fields |= {"blocked": d.reason, "category": d.category}
        if cfg.triton_router.log_prompts and result.plan.intent_index is not None:
            prompt = result.plan.texts[result.plan.intent_index]
            masking = d.masking if isinstance(d, Routed) else None
            fields["prompt"] = (masking.mask(prompt) if masking is not None else prompt)[:500]  # masked stays masked
        log.info("decision %s", " ".join(f"{k}={v}" for k, v in fields.items()))

    async def _cache_lookup(
        self,
        result: RouteResult,
        cfg: RouterConfig,
        body: dict[str, Any],
        headers: Mapping[str, str],
        signals: list[TextSignals] | None,
    ) -> None:
        decision = result.decision
        assert isinstance(decision, Routed)
        plan = result.plan
        if self.cache is None or not decision.cache.enabled or signals is None or plan.embedding_index is None:
            return
        control = headers.get(CACHE_CONTROL_HEADER, "").lower()
        query = signals[plan.embedding_index]
        scope = CacheScope(
            prompt=plan.texts[plan.embedding_index],
            embedding=query.embedding,
            model=decision.model,
            fingerprint=in_embedding_space(fingerprint(body), self.signals.manifest.build_key),
            tenant=headers.get(cfg.triton_router.cache_tenant_header.lower()) or None,
        )
        if "no-store" not in control:
            result.store_scope = scope
        if "no-cache" in control or "no-store" in control:
            return
        t0 = time.perf_counter()
        with tracer.start_as_current_span(SPAN_CACHE_LOOKUP) as span:
            hit = await self.cache.lookup(
                prompt=scope.prompt,
                embedding=scope.embedding,
                model=scope.model,
                fingerprint=scope.fingerprint,
                tenant=scope.tenant,
                threshold=decision.cache.threshold,
            )
            span.set_attribute("cache.hit", hit is not None)
        result.timings_ms["cache"] = (time.perf_counter() - t0) * 1000
        if hit is None:
            metrics.CACHE_MISSES.inc()
            return
        metrics.CACHE_HITS.inc()
        result.cache_hit = hit.response


def skip_unhealthy(decision: Routed, health: EndpointHealth) -> Routed:
    """The decision moved to its first candidate whose endpoint's breaker is closed (unchanged when the chosen one
    is healthy, or when none is: then the chosen one is tried anyway)."""
    if health.healthy(decision.endpoint):
        return decision
    chain = [(decision.model, decision.endpoint), *decision.candidates]
    for i, (model, endpoint) in enumerate(chain[1:], start=1):
        if health.healthy(endpoint):
            return with_candidate(decision, model, endpoint, tuple(chain[i + 1 :]))
    return decision


def with_candidate(decision: Routed, model: str, endpoint: str, rest: tuple[tuple[str, str], ...]) -> Routed:
    """`decision` sent to another candidate: body `model`, upstream and response headers follow (as the direct
    proxy's failover sets them), `x-vsr-failover: true`."""
    return replace(
        decision,
        model=model,
        endpoint=endpoint,
        body=dict(decision.body, model=model),
        upstream_headers={
            **decision.upstream_headers,
            "x-vsr-destination-endpoint": endpoint,
            "x-selected-model": model,
        },
        response_headers={**decision.response_headers, "x-vsr-selected-model": model, "x-vsr-failover": "true"},
        candidates=rest,
    )


def _unclassified(decision: Routed | Blocked, error: ClassifierUnavailable) -> Routed | Blocked:
    """Count a request decided without signals, and give a refusal the `Retry-After` of its cause."""
    reason = "overloaded" if isinstance(error, ClassifierOverloaded) else "unavailable"
    refused = isinstance(decision, Blocked) and decision.reason == "classifier_unavailable"
    metrics.REQUESTS_UNCLASSIFIED.labels(reason=reason, outcome="refused" if refused else "routed").inc()
    if not refused:
        return decision
    assert isinstance(decision, Blocked)
    retry = retry_after_header(error.retry_after_s or 1.0)
    headers = {**decision.headers, "retry-after": retry}
    return replace(decision, headers=headers, detail={**decision.detail, "cause": reason})


async def _unavailable() -> PinLookup:
    return PinLookup(None, available=False)


_BLOCK_ERROR_REASONS = {"jailbreak": "jailbreak_block", "pii": "pii_policy_denied"}
"""VSR's `llm_request_errors_total` reasons for the router's own refusals."""


def record_decision(cfg: RouterConfig, plan: Plan, decision: Routed | Blocked) -> None:
    """The decision's Prometheus metrics (VSR's names), once per request for both transports."""
    requested = metrics.model_label(cfg, plan.requested_model)
    if isinstance(decision, Blocked):
        metrics.REQUESTS_BLOCKED.labels(reason=decision.reason).inc()
        reason = _BLOCK_ERROR_REASONS.get(decision.reason, decision.reason)
        metrics.REQUEST_ERRORS.labels(model=requested, reason=reason).inc()
        for model, types in (decision.detail.get("denied") or {}).items():
            for pii_type in types:
                metrics.PII_VIOLATIONS.labels(model=model, pii_type=pii_type).inc()
        return
    model = metrics.model_label(cfg, decision.model)
    metrics.MODEL_REQUESTS.labels(model=model).inc()
    metrics.ROUTING_REASON_CODES.labels(reason_code=decision.reason, model=model).inc()
    if decision.model != plan.requested_model:
        metrics.ROUTING_MODIFICATIONS.labels(source_model=requested, target_model=model).inc()
    for model, types in decision.pii_denied.items():
        for pii_type in types:
            metrics.PII_VIOLATIONS.labels(model=model, pii_type=pii_type).inc()
    if decision.masking is not None:
        for pii_type, count in decision.masking.counts.items():
            metrics.PII_MASKED.labels(model=metrics.model_label(cfg, decision.model), pii_type=pii_type).inc(count)
    if not plan.is_auto:
        return
    if decision.category is not None:
        metrics.CATEGORY_CLASSIFICATIONS.labels(category=decision.category).inc()
    family_name = cfg.models[decision.model].reasoning_family if decision.model in cfg.models else None
    family = cfg.reasoning_family_for(decision.model)
    effort = ""
    if family is not None and family_name is not None:
        if family.type == "chat_template_kwargs":
            metrics.REASONING_TEMPLATE_USAGE.labels(family=family_name, param=family.parameter).inc()
        elif decision.reasoning:
            effort = str(decision.body.get(family.parameter, ""))
            metrics.REASONING_EFFORT_USAGE.labels(family=family_name, effort=effort).inc()
    metrics.REASONING_DECISIONS.labels(
        category=decision.category or "", model=model, enabled=str(decision.reasoning).lower(), effort=effort
    ).inc()


def _decision_attributes(decision: Routed | Blocked) -> dict[str, str | bool | float]:
    """The decision as span attributes (VSR's names); no request content."""
    attrs: dict[str, str | bool | float] = {}
    if decision.category is not None:
        attrs["category.name"] = decision.category
    if isinstance(decision, Blocked):
        attrs |= {"routing.blocked": True, "routing.block_reason": decision.reason}
        attrs["jailbreak.detected"] = decision.reason == "jailbreak"
        attrs["pii.detected"] = decision.reason == "pii"
        return attrs
    if decision.confidence is not None:
        attrs["category.confidence"] = float(decision.confidence)
    attrs |= {
        "routing.selected_model": decision.model,
        "routing.reason": decision.reason,
        "routing.endpoint": decision.endpoint,
        "reasoning.enabled": decision.reasoning,
        "system_prompt.injected": decision.injected_system_prompt,
        "jailbreak.detected": False,
        "pii.detected": bool(decision.pii_types),
    }
    if decision.pii_types:
        attrs["pii.types"] = ",".join(decision.pii_types)
    if decision.masking is not None:
        attrs["pii.masked_types"] = ",".join(decision.masking.types)
    if decision.pin_outcome is not None:
        attrs["conversation.pin"] = decision.pin_outcome
    return attrs
