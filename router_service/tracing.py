"""OpenTelemetry setup from the config's `observability.tracing` section (VSR's keys).

Spans are always created (classify, decide, cache.lookup, upstream); they are exported only when tracing is
enabled with an OTLP exporter. Without it the API's no-op provider makes them nearly free."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace

from router_service.config import RouterConfig

__all__ = ["setup_tracing"]

log = logging.getLogger(__name__)


def setup_tracing(cfg: RouterConfig) -> bool:
    """Install an OTLP-exporting tracer provider if the config asks for one; returns whether it did."""
    obs: dict[str, Any] = cfg.observability.model_dump()
    tracing = obs.get("tracing") or {}
    if not tracing.get("enabled"):
        return False
    exporter_cfg = tracing.get("exporter") or {}
    if exporter_cfg.get("type", "otlp") != "otlp":
        log.warning("tracing exporter %r not supported (only otlp); tracing stays off", exporter_cfg.get("type"))
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, TraceIdRatioBased

    sampling = tracing.get("sampling") or {}
    sampler = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}.get(
        str(sampling.get("type", "always_on")), TraceIdRatioBased(float(sampling.get("rate", 1.0)))
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
    endpoint = exporter_cfg.get("endpoint", "127.0.0.1:4317")
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=bool(exporter_cfg.get("insecure", True))))
    )
    trace.set_tracer_provider(provider)
    log.info("tracing: exporting spans over OTLP to %s", endpoint)
    return True
