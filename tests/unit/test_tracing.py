"""Trace-context helpers without an exporting provider (tracing off): the caller's trace passes through."""

from __future__ import annotations

from opentelemetry import trace

from router_service.tracing import SPAN_REQUEST, incoming_context, outgoing_headers

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_with_tracing_off_a_callers_traceparent_reaches_the_backend_unchanged() -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span(SPAN_REQUEST, context=incoming_context({"traceparent": TRACEPARENT})) as span:
        assert not span.is_recording()
        assert outgoing_headers(trace.set_span_in_context(span)) == {"traceparent": TRACEPARENT}


def test_without_a_caller_trace_nothing_is_invented() -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span(SPAN_REQUEST, context=incoming_context({})) as span:
        assert outgoing_headers(trace.set_span_in_context(span)) == {}
    assert outgoing_headers(None) == {}
