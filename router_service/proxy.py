"""Direct mode: `POST /v1/chat/completions` as an OpenAI-compatible proxy (no Envoy), same decision core.

Failover: on a connect error or a 5xx before the first byte reaches the client, the next candidate model is tried.
Streaming responses are passed through chunk by chunk."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from opentelemetry import trace
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from router_service import metrics
from router_service.accounting import ResponseTracker
from router_service.decision import Blocked, Routed, load_body
from router_service.errors import InvalidRequest, RouterError, UpstreamUnavailable
from router_service.pii_masking import ResponseRestorer
from router_service.pipeline import RequestRouter
from router_service.ratelimit import retry_after_header
from router_service.responses import openai_error, render_block, render_cached
from router_service.tracing import SPAN_UPSTREAM, outgoing_headers

__all__ = ["ChatProxy", "forward_headers", "passthrough_headers"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer("router_service")

# RFC 9110 §7.6.1 hop-by-hop headers, plus ones httpx/uvicorn set themselves.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
    "accept-encoding",
}


def forward_headers(headers: dict[str, str], request_id: str) -> dict[str, str]:
    """The client's headers as sent upstream: no hop-by-hop headers, no HTTP/2 pseudo-headers, no routing header."""
    out = {
        k: v
        for k, v in headers.items()
        if k.lower() not in _HOP_BY_HOP and not k.startswith(":") and k.lower() != "x-vsr-destination-endpoint"
    }
    out["x-request-id"] = request_id
    return out


class ChatProxy:
    def __init__(self, router: RequestRouter, client: httpx.AsyncClient, max_body_bytes: int) -> None:
        self.router = router
        self.client = client
        self.max_body_bytes = max_body_bytes

    async def __call__(self, request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        raw = await request.body()
        if len(raw) > self.max_body_bytes:
            return _error(413, f"request body exceeds {self.max_body_bytes} bytes", "body_too_large", request_id)
        try:
            body = load_body(raw)
        except (ValueError, RecursionError) as e:  # RecursionError: nested too deep
            return _error(400, f"request body is not valid JSON: {e}", "invalid_json", request_id)
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object", "invalid_body", request_id)
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers["x-request-id"] = request_id
        try:
            outcome = await self.router.route(body, headers)
        except InvalidRequest as e:
            return _error(400, e.message, "invalid_request", request_id, e.param)
        except RouterError as e:  # refused before any decision: the tenant's rate limit
            return _router_error(e, request_id)
        decision = outcome.decision
        cfg = self.router.config
        if isinstance(decision, Blocked):
            status, bheaders, payload, ctype = render_block(
                decision, cfg, stream=outcome.plan.stream, model=outcome.plan.requested_model
            )
            return Response(payload, status, _wire({**bheaders, "x-request-id": request_id}), media_type=ctype)
        assert isinstance(decision, Routed)
        resp_headers = {**outcome.response_headers, "x-request-id": request_id}
        if outcome.cache_hit is not None:
            payload, ctype = render_cached(outcome.cache_hit, stream=outcome.plan.stream, body=body)
            return Response(payload, 200, _wire(resp_headers), media_type=ctype)
        candidates = [(decision.model, decision.endpoint), *decision.candidates]
        last_error = "no candidate endpoint"
        for attempt, (model, endpoint) in enumerate(candidates):
            upstream_body = dict(decision.body, model=model)
            span = tracer.start_span(SPAN_UPSTREAM, context=outcome.trace_context, kind=trace.SpanKind.CLIENT)
            span.set_attributes({"model.name": model, "routing.endpoint": endpoint, "routing.attempt": attempt})
            forward = {
                **forward_headers(headers, request_id),
                **outgoing_headers(trace.set_span_in_context(span, outcome.trace_context)),
            }
            try:
                upstream = await self._open(endpoint, upstream_body, forward)
            except UpstreamUnavailable as e:
                self.router.health.record_failure(endpoint)
                last_error = str(e)
                metrics.REQUEST_ERRORS.labels(
                    model=metrics.model_label(cfg, model), reason="upstream_unavailable"
                ).inc()
                log.warning("upstream %s (%s) failed before first byte: %s", model, endpoint, e)
                span.record_exception(e)
                span.set_status(trace.StatusCode.ERROR, "upstream unavailable")
                span.end()
                continue
            self.router.health.record_success(endpoint)
            if attempt:
                metrics.FAILOVERS.labels(transport="proxy").inc()
                resp_headers["x-vsr-selected-model"] = model
                resp_headers["x-vsr-failover"] = "true"
            span.set_attribute("http.status_code", upstream.status_code)
            return self._relay(upstream, model, outcome, resp_headers, span)
        return _error(502, f"all candidate backends failed: {last_error}", "upstream_unavailable", request_id)

    async def _open(self, endpoint: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        url = f"http://{endpoint}/v1/chat/completions"
        req = self.client.build_request("POST", url, json=body, headers=headers)
        try:
            resp = await self.client.send(req, stream=True)
        except httpx.HTTPError as e:
            raise UpstreamUnavailable(f"{type(e).__name__}: {e}") from e
        if resp.status_code >= 500:
            detail = (await resp.aread())[:200].decode("utf-8", "replace")
            await resp.aclose()
            raise UpstreamUnavailable(f"HTTP {resp.status_code}: {detail}")
        return resp

    def _relay(
        self, upstream: httpx.Response, model: str, outcome: Any, headers: dict[str, str], span: trace.Span
    ) -> Response:
        """Stream the upstream's answer through; `span` (the upstream call's) ends with the stream."""
        tracker = ResponseTracker(model=model)
        tracker.on_headers(upstream.status_code, upstream.headers.get("content-type", ""))
        passthrough = passthrough_headers(upstream.headers.raw)
        router = self.router
        masking = outcome.decision.masking
        restorer = (
            ResponseRestorer(masking, sse=tracker.sse)
            if masking is not None and masking.restore and 200 <= upstream.status_code < 300
            else None
        )

        async def body() -> AsyncIterator[bytes]:
            complete = False
            try:
                async for chunk in upstream.aiter_raw():
                    tracker.on_chunk(chunk)
                    out = restorer.feed(chunk) if restorer is not None else chunk
                    if out:
                        yield out
                if restorer is not None and (rest := restorer.finish()):
                    yield rest
                complete = True
            finally:
                await upstream.aclose()
                if not complete:
                    span.set_status(trace.StatusCode.ERROR, "stream interrupted")
                span.end()
                if complete:
                    tracker.finish(router.config, router.cache, outcome.store_scope)
                else:  # client went away or upstream broke mid-stream: count it, never cache it
                    label = metrics.model_label(router.config, model)
                    metrics.REQUEST_ERRORS.labels(model=label, reason="stream_interrupted").inc()

        return StreamingResponse(
            body(),
            status_code=upstream.status_code,
            headers={**passthrough, **_wire(headers)},
            media_type=upstream.headers.get("content-type"),
        )


def passthrough_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The upstream's end-to-end headers, their bytes exactly (latin-1 maps each byte to one character and back);
    a repeated header is joined with ", " as HTTP allows."""
    out: dict[str, str] = {}
    for k, v in raw:
        key, value = k.decode("latin-1").lower(), v.decode("latin-1")
        if key not in _HOP_BY_HOP:
            out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _wire(headers: dict[str, str]) -> dict[str, str]:
    """Header values as they go on the wire: their UTF-8 bytes, as Envoy sends them (Starlette encodes header values
    as latin-1, which fails on a model name such as "模型")."""
    return {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}


def _error(status: int, message: str, code: str, request_id: str, param: str | None = None) -> Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    status, payload = openai_error(status, message, kind, code, param)
    return Response(payload, status, {"x-request-id": request_id}, media_type="application/json")


def _router_error(e: RouterError, request_id: str) -> Response:
    status, payload = openai_error(e.status, e.message, e.error_type, e.code)
    headers = {"x-request-id": request_id}
    if e.retry_after_s is not None:
        headers["retry-after"] = retry_after_header(e.retry_after_s)
    return Response(payload, status, headers, media_type="application/json")
