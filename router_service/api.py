"""Classification API (VSR's shapes) on the router's HTTP port, plus its OpenAPI document."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from router_service.config import RouterConfig
from router_service.decision import TextSignals
from router_service.errors import InvalidRequest
from router_service.signals import SignalClient

__all__ = ["openapi_document", "routes"]

MAX_TEXT_CHARS = 100_000
MAX_BATCH_TEXTS = 100

Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class IntentOptions(_Strict):
    return_probabilities: bool = False


class IntentRequest(_Strict):
    text: Text
    options: IntentOptions | None = None


class TextRequest(_Strict):
    text: Text


class BatchRequest(_Strict):
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_BATCH_TEXTS)]
    task_type: Literal["intent", "pii", "security", "all"] = "intent"


class Classification(BaseModel):
    category: str
    confidence: float
    processing_time_ms: float


class IntentResponse(BaseModel):
    classification: Classification
    probabilities: dict[str, float] | None = None
    recommended_model: str
    routing_decision: str


class PiiEntityOut(BaseModel):
    type: str
    value: str
    confidence: float
    start_position: int
    end_position: int
    masked_value: str


class PiiResponse(BaseModel):
    has_pii: bool
    entities: list[PiiEntityOut]
    masked_text: str
    processing_time_ms: float


class SecurityResponse(BaseModel):
    is_jailbreak: bool
    risk_score: float
    detection_types: list[str]
    confidence: float
    processing_time_ms: float


class BatchStatistics(BaseModel):
    category_distribution: dict[str, int]
    avg_confidence: float
    low_confidence_count: int


class BatchResponse(BaseModel):
    results: list[dict[str, Any]]
    total_count: int
    processing_time_ms: float
    statistics: BatchStatistics


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    try:
        raw = await request.body()
        return model.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidRequest(f"{where}: {first.get('msg', 'invalid value')}", where) from e


def _intent(cfg: RouterConfig, sig: TextSignals, elapsed_ms: float, probs: bool) -> IntentResponse:
    threshold = cfg.classifier.category_model.threshold
    confident = sig.intent_confidence >= threshold
    model = cfg.best_model_for(sig.intent) if confident else None
    return IntentResponse(
        classification=Classification(
            category=sig.intent, confidence=sig.intent_confidence, processing_time_ms=elapsed_ms
        ),
        probabilities=dict(sig.intent_probs) if probs else None,
        recommended_model=model or cfg.default_model,
        routing_decision="category_model" if model else "default_model",
    )


def _mask(entity_type: str) -> str:
    return f"[{entity_type}]"


def _pii(cfg: RouterConfig, text: str, sig: TextSignals, elapsed_ms: float) -> PiiResponse:
    threshold = cfg.classifier.pii_model.threshold
    found = [e for e in sig.pii or () if e.confidence >= threshold]
    masked = text
    for e in sorted(found, key=lambda e: e.start, reverse=True):
        masked = masked[: e.start] + _mask(e.type) + masked[e.end :]
    return PiiResponse(
        has_pii=bool(found),
        entities=[
            PiiEntityOut(
                type=e.type,
                value=e.text,
                confidence=e.confidence,
                start_position=e.start,
                end_position=e.end,
                masked_value=_mask(e.type),
            )
            for e in found
        ],
        masked_text=masked,
        processing_time_ms=elapsed_ms,
    )


def _security(cfg: RouterConfig, sig: TextSignals, elapsed_ms: float) -> SecurityResponse:
    is_jb = cfg.prompt_guard.enabled and sig.jailbreak_confidence >= cfg.prompt_guard.threshold
    return SecurityResponse(
        is_jailbreak=is_jb,
        risk_score=sig.jailbreak_confidence,
        detection_types=["jailbreak"] if is_jb else [],
        confidence=sig.jailbreak_confidence if is_jb else 1.0 - sig.jailbreak_confidence,
        processing_time_ms=elapsed_ms,
    )


def routes(get_config: Any, signals: SignalClient) -> list[Route]:
    async def classify_one(
        request: Request, model: type[BaseModel], *, pii: bool = False
    ) -> tuple[Any, TextSignals, float]:
        body = await _parse(request, model)
        started = time.perf_counter()
        [sig] = await signals.classify([body.text], pii=pii)
        return body, sig, (time.perf_counter() - started) * 1000

    async def intent(request: Request) -> Response:
        body, sig, ms = await classify_one(request, IntentRequest)
        probs = bool(body.options and body.options.return_probabilities)
        return JSONResponse(_intent(get_config(), sig, ms, probs).model_dump(exclude_none=True))

    async def pii(request: Request) -> Response:
        body, sig, ms = await classify_one(request, TextRequest, pii=True)
        return JSONResponse(_pii(get_config(), body.text, sig, ms).model_dump())

    async def security(request: Request) -> Response:
        _, sig, ms = await classify_one(request, TextRequest)
        return JSONResponse(_security(get_config(), sig, ms).model_dump())

    async def batch(request: Request) -> Response:
        body: BatchRequest = await _parse(request, BatchRequest)
        cfg = get_config()
        started = time.perf_counter()
        sigs = await signals.classify(body.texts, pii=body.task_type in ("pii", "all"))
        ms = (time.perf_counter() - started) * 1000
        results: list[dict[str, Any]] = []
        for text, sig in zip(body.texts, sigs, strict=True):
            row: dict[str, Any] = {}
            if body.task_type in ("intent", "all"):
                row["intent"] = _intent(cfg, sig, ms, False).model_dump(exclude_none=True)
            if body.task_type in ("pii", "all"):
                row["pii"] = _pii(cfg, text, sig, ms).model_dump()
            if body.task_type in ("security", "all"):
                row["security"] = _security(cfg, sig, ms).model_dump()
            results.append(row if body.task_type == "all" else row[body.task_type])
        threshold = cfg.classifier.category_model.threshold
        stats = BatchStatistics(
            category_distribution=dict(Counter(s.intent for s in sigs)),
            avg_confidence=sum(s.intent_confidence for s in sigs) / len(sigs),
            low_confidence_count=sum(1 for s in sigs if s.intent_confidence < threshold),
        )
        out = BatchResponse(results=results, total_count=len(results), processing_time_ms=ms, statistics=stats)
        return JSONResponse(out.model_dump())

    return [
        Route("/api/v1/classify/intent", intent, methods=["POST"]),
        Route("/api/v1/classify/pii", pii, methods=["POST"]),
        Route("/api/v1/classify/security", security, methods=["POST"]),
        Route("/api/v1/classify/batch", batch, methods=["POST"]),
    ]


_OPERATIONS: list[tuple[str, str, type[BaseModel] | None, type[BaseModel] | None, str]] = [
    ("/api/v1/classify/intent", "post", IntentRequest, IntentResponse, "Classify the intent (category)"),
    ("/api/v1/classify/pii", "post", TextRequest, PiiResponse, "Detect PII entities"),
    ("/api/v1/classify/security", "post", TextRequest, SecurityResponse, "Detect jailbreak attempts"),
    ("/api/v1/classify/batch", "post", BatchRequest, BatchResponse, "Classify many texts in one call"),
]


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
    paths["/v1/chat/completions"] = {
        "post": {
            "summary": "OpenAI-compatible chat completions (routed, guarded, cached; SSE when stream=true)",
            "responses": {"200": {"description": "chat.completion or SSE stream"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Triton semantic router", "version": "0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
