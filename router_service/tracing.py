"""OpenTelemetry: VSR's span names, W3C trace context in and out, and the exporter from the config's
`observability.tracing` section (VSR's keys).

Spans are always created; they are recorded and exported only when tracing is enabled (OTLP over gRPC, or
stdout). Without it the API's no-op provider makes them nearly free, and a client's `traceparent` still passes
through to the backend unchanged.

One chat request, both transports (VSR's names; its pii/jailbreak/backend/system-prompt steps are attributes of
`routing.decision` here, because their model outputs come from the one classification call):

    semantic_router.request.received        request.id, routing.original_model
    ├─ semantic_router.classification       classifier.type, classification.texts, classification.time_ms
    ├─ semantic_router.routing.decision     category.*, routing.*, reasoning.enabled, jailbreak.*, pii.*
    ├─ semantic_router.cache.lookup         cache.hit
    └─ semantic_router.upstream.request     model.name, http.status_code (direct proxy only: behind Envoy the
                                            upstream call is Envoy's; the router sends the trace on to it)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context

from router_service.config import RouterConfig

__all__ = [
    "SPAN_CACHE_LOOKUP",
    "SPAN_CLASSIFICATION",
    "SPAN_REQUEST",
    "SPAN_ROUTING_DECISION",
    "SPAN_UPSTREAM",
    "incoming_context",
    "outgoing_headers",
    "setup_tracing",
]

log = logging.getLogger(__name__)

SPAN_REQUEST = "semantic_router.request.received"
SPAN_CLASSIFICATION = "semantic_router.classification"
SPAN_ROUTING_DECISION = "semantic_router.routing.decision"
SPAN_CACHE_LOOKUP = "semantic_router.cache.lookup"
SPAN_UPSTREAM = "semantic_router.upstream.request"


def incoming_context(headers: Mapping[str, str]) -> Context:
    """The caller's trace (W3C `traceparent`/`tracestate`), so the router's spans join it."""
    return propagate.extract(dict(headers))


def outgoing_headers(context: Context | None) -> dict[str, str]:
    """`traceparent` (and `tracestate`) for a request the router sends on, as a child of `context`'s span."""
    carrier: dict[str, str] = {}
    if context is not None:
        propagate.inject(carrier, context=context)
    return carrier


def setup_tracing(cfg: RouterConfig) -> Any | None:
    """Install an exporting tracer provider if the config asks for one; returns it (to shut down), or None."""
    tracing = cfg.observability.tracing or {}
    if not tracing.get("enabled"):
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

    exporter_cfg = tracing.get("exporter") or {}
    kind = str(exporter_cfg.get("type", "otlp"))
    endpoint = str(exporter_cfg.get("endpoint", "127.0.0.1:4317"))
    exporter: SpanExporter
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        headers = {str(k).lower(): str(v) for k, v in (exporter_cfg.get("headers") or {}).items()}  # collector auth
        exporter = OTLPSpanExporter(
            endpoint=endpoint, insecure=bool(exporter_cfg.get("insecure", True)), headers=headers or None
        )
    elif kind == "stdout":
        exporter = ConsoleSpanExporter()
    else:
        log.warning("tracing exporter %r not supported (otlp, stdout); tracing stays off", kind)
        return None
    sampling = tracing.get("sampling") or {}
    sampler = ParentBased(
        {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}.get(
            str(sampling.get("type", "always_on")), TraceIdRatioBased(float(sampling.get("rate", 1.0)))
        )
    )
    resource_cfg = tracing.get("resource") or {}
    resource = Resource.create(
        {
            "service.name": resource_cfg.get("service_name", "triton-semantic-router"),
            "service.version": resource_cfg.get("service_version", "0.1.0"),
            "deployment.environment": resource_cfg.get("deployment_environment", "development"),
        }
    )
    provider = TracerProvider(resource=resource, sampler=sampler)
    delay_ms = int(tracing.get("batch_delay_ms", 1000))  # ours: how long spans wait to be exported together
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay_ms))
    trace.set_tracer_provider(provider)
    log.info("tracing: exporting spans (%s) to %s", kind, endpoint if kind == "otlp" else "stdout")
    return provider
