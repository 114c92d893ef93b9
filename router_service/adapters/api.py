"""Classification API (VSR's shapes) on the router's HTTP port, plus its OpenAPI document.

The request and response shapes are VSR's documented ones (its `website/docs/api/classification.md` and its API
server): every endpoint accepts an `options` object, unknown keys are ignored as VSR's JSON decoder ignores them,
and a known key of the wrong type is a 400 with an OpenAI error body. Fields of ours appear next to VSR's keys,
never instead of them. `docs/config.md` ("Classification API") says which option does what here.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from router_service.clients.triton import SignalClient
from router_service.config import MAX_BATCH_SIZE_LIMIT, RouterConfig
from router_service.core.decision import TextSignals, parse_body
from router_service.core.decision_types import PiiEntity
from router_service.core.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    ResponsesRequest,
    invalid_request,
)
from router_service.errors import InvalidRequest

__all__ = ["LOW_CONFIDENCE_THRESHOLD", "openapi_document", "routes"]

MAX_TEXT_CHARS = 100_000
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest body read: a full batch of texts at MAX_TEXT_CHARS, with room for escapes."""
LOW_CONFIDENCE_THRESHOLD = 0.7
"""VSR's bar for `statistics.low_confidence_count` (and its routing_decision) when no confidence_threshold is given."""

Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
Threshold = Annotated[float, Field(ge=0.0, le=1.0)]
TaskType = Literal["intent", "pii", "security", "all"]


class _Request(BaseModel):
    """A request body: known keys are type-checked strictly, unknown keys ignored (as VSR's Go decoder does)."""

    model_config = ConfigDict(extra="ignore", strict=True)


# --- options -----------------------------------------------------------------------------------------------


class IntentOptions(_Request):
    return_probabilities: bool = False
    """The whole probability distribution over the intent labels."""
    confidence_threshold: Threshold | None = None
    """Bar for a confident classification (recommended model, routing_decision, low_confidence_count); 0 = unset."""
    include_explanation: bool = False
    """Accepted; no explanation is produced."""


class PiiOptions(_Request):
    entity_types: list[str] | None = None
    """Report only these types; a name matches a type equal to it or one of its words (EMAIL → EMAIL_ADDRESS,
    SSN → US_SSN); "ALL" or an empty list reports every type."""
    confidence_threshold: Threshold | None = None
    """Minimum entity confidence (instead of classifier.pii_model.threshold); 0 = unset."""
    return_positions: bool = True
    """false: entities come without start_position/end_position."""
    mask_entities: bool = True
    """false: no masked_text and no masked_value."""


class SecurityOptions(_Request):
    """Accepted for VSR clients; one jailbreak detector serves every request here, so none changes the answer."""

    detection_types: list[str] | None = None
    sensitivity: str | None = None
    include_reasoning: bool = False


# --- requests ----------------------------------------------------------------------------------------------


class IntentRequest(_Request):
    text: Text
    options: IntentOptions | None = None


class PiiRequest(_Request):
    text: Text
    options: PiiOptions | None = None


class SecurityRequest(_Request):
    text: Text
    options: SecurityOptions | None = None


class BatchRequest(_Request):
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_BATCH_SIZE_LIMIT)]
    """At most `api.batch_classification.max_batch_size` texts (default 100)."""
    task_type: TaskType = "intent"
    options: IntentOptions | None = None


# --- responses ---------------------------------------------------------------------------------------------


class IntentClassification(BaseModel):
    category: str
    confidence: float
    processing_time_ms: int


class IntentResponse(BaseModel):
    classification: IntentClassification
    probabilities: dict[str, float] | None = None
    recommended_model: str
    routing_decision: Literal["high_confidence_specialized", "low_confidence_general"]


class PiiEntityOut(BaseModel):
    type: str
    value: str
    confidence: float
    start_position: int | None = None
    end_position: int | None = None
    masked_value: str | None = None


class PiiResponse(BaseModel):
    has_pii: bool
    entities: list[PiiEntityOut]
    masked_text: str | None = None
    security_recommendation: Literal["block", "allow"]
    processing_time_ms: int


class SecurityResponse(BaseModel):
    is_jailbreak: bool
    risk_score: float
    detection_types: list[str]
    confidence: float
    recommendation: Literal["block", "allow"]
    processing_time_ms: int


class BatchPii(BaseModel):
    """`task_type: all`: the PII verdict next to the intent keys (VSR's nested `pii` object)."""

    has_pii: bool
    pii_types: list[str] | None = None
    confidence: float
    scores_available: bool = True


class BatchSecurity(BaseModel):
    """`task_type: all`: the jailbreak verdict next to the intent keys (VSR's nested `security` object)."""

    is_jailbreak: bool
    threat_type: Literal["jailbreak", "benign"]
    confidence: float
    scores_available: bool = True


class BatchItem(BaseModel):
    """One text's result, flat as VSR's: `category` is the intent category (intent, all), the first PII type or
    "no_pii" (pii), the threat type or "safe" (security). Keys after `probabilities` are ours or VSR's `all` extras;
    absent ones are left out of the JSON."""

    category: str
    confidence: float
    processing_time_ms: int
    probabilities: dict[str, float] | None = None
    recommended_model: str | None = None
    routing_decision: str | None = None
    has_pii: bool | None = None
    pii_types: list[str] | None = None
    is_jailbreak: bool | None = None
    risk_score: float | None = None
    pii: BatchPii | None = None
    security: BatchSecurity | None = None


class BatchStatistics(BaseModel):
    """Over the intent results, whatever the task_type (as VSR computes them)."""

    category_distribution: dict[str, int]
    avg_confidence: float
    low_confidence_count: int


class BatchResponse(BaseModel):
    results: list[BatchItem]
    total_count: int
    processing_time_ms: int
    statistics: BatchStatistics


# --- parsing -----------------------------------------------------------------------------------------------

_M = TypeVar("_M", bound=BaseModel)


async def _parse(request: Request, model: type[_M]) -> _M:
    """The body read as the chat path reads one (`parse_body`: UTF-8, JSON, depth and size limits), then checked
    against the request's model; the first problem is a 400 naming its field."""
    body = parse_body(await request.body(), max_bytes=MAX_BODY_BYTES, expected="a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise invalid_request(e, body) from None


def _set(threshold: float | None) -> float | None:
    """VSR applies a confidence_threshold only when it is > 0."""
    return threshold if threshold else None


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# --- verdicts (pure) ---------------------------------------------------------------------------------------


def intent_result(
    cfg: RouterConfig, sig: TextSignals, elapsed_ms: int, options: IntentOptions | None
) -> IntentResponse:
    """The category, and the model it recommends: the category's best model when the confidence reaches the
    threshold (options.confidence_threshold, else classifier.category_model.threshold), else default_model."""
    opts = options or IntentOptions()
    threshold = _set(opts.confidence_threshold) or cfg.classifier.category_model.threshold
    confident = sig.intent_confidence >= threshold
    model = cfg.best_model_for(sig.intent) if confident else None
    return IntentResponse(
        classification=IntentClassification(
            category=sig.intent, confidence=sig.intent_confidence, processing_time_ms=elapsed_ms
        ),
        probabilities=dict(sig.intent_probs) if opts.return_probabilities else None,
        recommended_model=model or cfg.default_model,
        routing_decision="high_confidence_specialized" if confident else "low_confidence_general",
    )


def _type_matches(entity_type: str, wanted: Sequence[str]) -> bool:
    if not wanted:
        return True
    words = set(entity_type.upper().split("_")) | {entity_type.upper()}
    return any(w.upper() == "ALL" or w.upper() in words for w in wanted)


def pii_entities(cfg: RouterConfig, sig: TextSignals, options: PiiOptions | None = None) -> list[PiiEntity]:
    """Detected entities at or above the threshold, of the wanted types, in text order."""
    opts = options or PiiOptions()
    threshold = _set(opts.confidence_threshold) or cfg.classifier.pii_model.threshold
    wanted = opts.entity_types or ()
    found = [e for e in sig.pii or () if e.confidence >= threshold and _type_matches(e.type, wanted)]
    return sorted(found, key=lambda e: (e.start, e.end))


def _mask(entity_type: str) -> str:
    return f"[{entity_type}]"


def pii_result(
    cfg: RouterConfig, text: str, sig: TextSignals, elapsed_ms: int, options: PiiOptions | None
) -> PiiResponse:
    opts = options or PiiOptions()
    found = pii_entities(cfg, sig, opts)
    masked = text
    for e in reversed(found):
        masked = masked[: e.start] + _mask(e.type) + masked[e.end :]
    return PiiResponse(
        has_pii=bool(found),
        entities=[
            PiiEntityOut(
                type=e.type,
                value=e.text,
                confidence=e.confidence,
                start_position=e.start if opts.return_positions else None,
                end_position=e.end if opts.return_positions else None,
                masked_value=_mask(e.type) if opts.mask_entities else None,
            )
            for e in found
        ],
        masked_text=masked if opts.mask_entities else None,
        security_recommendation="block" if found else "allow",
        processing_time_ms=elapsed_ms,
    )


def is_jailbreak(cfg: RouterConfig, sig: TextSignals) -> bool:
    return cfg.prompt_guard.enabled and sig.jailbreak_confidence >= cfg.jailbreak_threshold(
        None, sig.jailbreak_threshold
    )


def security_result(cfg: RouterConfig, sig: TextSignals, elapsed_ms: int) -> SecurityResponse:
    jailbreak = is_jailbreak(cfg, sig)
    return SecurityResponse(
        is_jailbreak=jailbreak,
        risk_score=sig.jailbreak_confidence,
        detection_types=["jailbreak"] if jailbreak else [],
        confidence=_security_confidence(sig, jailbreak),
        recommendation="block" if jailbreak else "allow",
        processing_time_ms=elapsed_ms,
    )


def _security_confidence(sig: TextSignals, jailbreak: bool) -> float:
    """Confidence in the verdict given: the jailbreak probability, or its complement for "safe"."""
    return sig.jailbreak_confidence if jailbreak else 1.0 - sig.jailbreak_confidence


def _pii_confidence(sig: TextSignals, found: Sequence[PiiEntity]) -> float:
    """The first entity's confidence; with none, 1 minus the strongest candidate the threshold dropped (1.0 when the
    detector saw nothing)."""
    if found:
        return found[0].confidence
    return 1.0 - max((e.confidence for e in sig.pii or ()), default=0.0)


# --- batch (pure) ------------------------------------------------------------------------------------------


def batch_item(
    cfg: RouterConfig, sig: TextSignals, task_type: TaskType, item_ms: int, options: IntentOptions | None
) -> BatchItem:
    """One text's flat result for the task type."""
    if task_type == "pii":
        found = pii_entities(cfg, sig)
        types = list(dict.fromkeys(e.type for e in found))
        return BatchItem(
            category=found[0].type if found else "no_pii",
            confidence=_pii_confidence(sig, found),
            processing_time_ms=item_ms,
            has_pii=bool(found),
            pii_types=types,
        )
    if task_type == "security":
        jailbreak = is_jailbreak(cfg, sig)
        return BatchItem(
            category="jailbreak" if jailbreak else "safe",
            confidence=_security_confidence(sig, jailbreak),
            processing_time_ms=item_ms,
            is_jailbreak=jailbreak,
            risk_score=sig.jailbreak_confidence,
        )
    intent = intent_result(cfg, sig, item_ms, options)
    item = BatchItem(
        category=intent.classification.category,
        confidence=intent.classification.confidence,
        processing_time_ms=item_ms,
        probabilities=intent.probabilities,
        recommended_model=intent.recommended_model,
        routing_decision=intent.routing_decision,
    )
    if task_type == "all":
        found = pii_entities(cfg, sig)
        jailbreak = is_jailbreak(cfg, sig)
        item.pii = BatchPii(
            has_pii=bool(found),
            pii_types=list(dict.fromkeys(e.type for e in found)) or None,
            confidence=_pii_confidence(sig, found),
        )
        item.security = BatchSecurity(
            is_jailbreak=jailbreak,
            threat_type="jailbreak" if jailbreak else "benign",
            confidence=_security_confidence(sig, jailbreak),
        )
    return item


def batch_statistics(sigs: Sequence[TextSignals], options: IntentOptions | None) -> BatchStatistics:
    """Over the intent results: low confidence is below options.confidence_threshold, else VSR's fixed 0.7."""
    threshold = _set((options or IntentOptions()).confidence_threshold) or LOW_CONFIDENCE_THRESHOLD
    confidences = [s.intent_confidence for s in sigs]
    return BatchStatistics(
        category_distribution=dict(Counter(s.intent for s in sigs)),
        avg_confidence=sum(confidences) / len(confidences) if confidences else 0.0,
        low_confidence_count=sum(1 for c in confidences if c < threshold),
    )


def batch_result(
    cfg: RouterConfig, sigs: Sequence[TextSignals], request: BatchRequest, elapsed_ms: int
) -> BatchResponse:
    """VSR's batch response: per-item time is the batch's time split evenly (integer ms, as VSR's)."""
    item_ms = elapsed_ms // len(sigs) if sigs else 0
    results = [batch_item(cfg, s, request.task_type, item_ms, request.options) for s in sigs]
    return BatchResponse(
        results=results,
        total_count=len(results),
        processing_time_ms=elapsed_ms,
        statistics=batch_statistics(sigs, request.options),
    )


def check_batch_size(cfg: RouterConfig, count: int) -> None:
    limit = cfg.api.batch_classification.effective_max_batch_size
    if count > limit:
        raise InvalidRequest(f"texts array exceeds max_batch_size {limit}", "texts")


def _json(model: BaseModel) -> Response:
    return JSONResponse(model.model_dump(exclude_none=True))


# --- routes ------------------------------------------------------------------------------------------------


def routes(get_config: Callable[[], RouterConfig], get_signals: Callable[[], SignalClient]) -> list[Route]:
    """The classification routes; `get_config` and `get_signals` give the running config and Triton client."""

    async def classify_one(text: str, *, pii: bool = False) -> tuple[TextSignals, int]:
        started = time.perf_counter()
        [sig] = await get_signals().classify([text], pii=pii)
        return sig, _ms(time.perf_counter() - started)

    async def intent(request: Request) -> Response:
        body = await _parse(request, IntentRequest)
        sig, ms = await classify_one(body.text)
        return _json(intent_result(get_config(), sig, ms, body.options))

    async def pii(request: Request) -> Response:
        body = await _parse(request, PiiRequest)
        sig, ms = await classify_one(body.text, pii=True)
        return _json(pii_result(get_config(), body.text, sig, ms, body.options))

    async def security(request: Request) -> Response:
        body = await _parse(request, SecurityRequest)
        sig, ms = await classify_one(body.text)
        return _json(security_result(get_config(), sig, ms))

    async def batch(request: Request) -> Response:
        body = await _parse(request, BatchRequest)
        cfg: RouterConfig = get_config()
        check_batch_size(cfg, len(body.texts))
        started = time.perf_counter()
        sigs = await get_signals().classify(body.texts, pii=body.task_type in ("pii", "all"))
        return _json(batch_result(cfg, sigs, body, _ms(time.perf_counter() - started)))

    return [
        Route("/api/v1/classify/intent", intent, methods=["POST"]),
        Route("/api/v1/classify/pii", pii, methods=["POST"]),
        Route("/api/v1/classify/security", security, methods=["POST"]),
        Route("/api/v1/classify/batch", batch, methods=["POST"]),
    ]


_OPERATIONS: list[tuple[str, str, type[BaseModel] | None, type[BaseModel] | None, str]] = [
    ("/api/v1/classify/intent", "post", IntentRequest, IntentResponse, "Classify the intent (category)"),
    ("/api/v1/classify/pii", "post", PiiRequest, PiiResponse, "Detect PII entities"),
    ("/api/v1/classify/security", "post", SecurityRequest, SecurityResponse, "Detect jailbreak attempts"),
    ("/api/v1/classify/batch", "post", BatchRequest, BatchResponse, "Classify many texts in one call"),
]


_PROMPT_OPERATIONS: list[tuple[str, type[BaseModel], str]] = [
    ("/v1/chat/completions", ChatCompletionRequest, "OpenAI chat completions: validated, guarded, routed, cached"),
    ("/v1/completions", CompletionRequest, "OpenAI completions (legacy): validated, guarded and routed"),
    ("/v1/responses", ResponsesRequest, "OpenAI Responses API: validated, guarded and routed"),
]
"""The prompt paths, with the request schemas the router checks (`openai_schema`); served through Envoy, and the
chat path by the direct proxy too."""


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for path, method, req, resp, summary in _OPERATIONS:
        op: dict[str, Any] = {"summary": summary, "responses": {}}
        for model in (req, resp):
            if model is not None:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
        if req is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{req.__name__}"}}},
            }
        if resp is not None:
            op["responses"]["200"] = {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{resp.__name__}"}}},
            }
        op["responses"]["400"] = {"description": "Invalid request (OpenAI-style error body)"}
        op["responses"]["503"] = {"description": "Classifier unavailable"}
        paths.setdefault(path, {})[method] = op
    for path, summary in [
        ("/health", "Liveness and dependencies"),
        ("/v1/models", "Models (auto model and configured models)"),
        ("/info/models", "Served classifier models and labels"),
        ("/config", "Active configuration, secrets redacted"),
    ]:
        paths[path] = {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}
    for path, req, summary in _PROMPT_OPERATIONS:
        schema = req.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[req.__name__] = schema
        paths[path] = {
            "post": {
                "summary": summary,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{req.__name__}"}}},
                },
                "responses": {
                    "200": {"description": "The backend's answer (JSON, or SSE when stream=true), or a cache hit"},
                    "400": {"description": "Invalid request: OpenAI error body, `param` names the field"},
                    "403": {"description": "Refused by the jailbreak or PII guard (OpenAI error body)"},
                    "413": {"description": "Body too large"},
                    "429": {"description": "Rate limited (Retry-After)"},
                    "502": {"description": "Every candidate backend failed before its first byte"},
                    "503": {"description": "Classifier unavailable under a fail-closed policy (Retry-After)"},
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Triton semantic router", "version": "0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
