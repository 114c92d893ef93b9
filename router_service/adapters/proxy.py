"""Direct mode: `/v1/chat/completions` and `/v1/models` as an OpenAI-compatible proxy (no Envoy). The router's
reply (`RequestRouter.handle`) is spoken as a Starlette response, or as an httpx request upstream.

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
from router_service.core.reply import Answer, Forward, ParsedRequest, error_answer, router_error_answer
from router_service.errors import UpstreamUnavailable
from router_service.router import RequestRouter
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
    def __init__(self, router: RequestRouter, client: httpx.AsyncClient) -> None:
        self.router = router
        self.client = client

    async def __call__(self, request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers["x-request-id"] = request_id
        raw = await request.body()
        reply = await self.router.handle(ParsedRequest(request.method, request.url.path, headers, raw))
        if isinstance(reply, Answer):
            return _response(reply, request_id)
        if not reply.tracked:  # only the chat path and the model list are mounted here
            return _response(error_answer(404, f"{request.url.path} is not served here", "not_found"), request_id)
        return await self._forward(reply, headers, request_id)

    async def _forward(self, forward: Forward, headers: dict[str, str], request_id: str) -> Response:
        """The first candidate that answers before failing is streamed back; all failed: 502."""
        cfg = self.router.config
        resp_headers = {**forward.response_headers, "x-request-id": request_id}
        candidates = [(forward.model, forward.endpoint), *forward.candidates]
        last_error = "no candidate endpoint"
        for attempt, (model, endpoint) in enumerate(candidates):
            span = tracer.start_span(SPAN_UPSTREAM, context=forward.trace_context, kind=trace.SpanKind.CLIENT)
            span.set_attributes({"model.name": model, "routing.endpoint": endpoint, "routing.attempt": attempt})
            sent = {
                **forward_headers(headers, request_id),
                **outgoing_headers(trace.set_span_in_context(span, forward.trace_context)),
            }
            try:
                upstream = await self._open(endpoint, forward.body_for(model), sent)
            except UpstreamUnavailable as e:
                if e.upstream_status is None:
                    self.router.health.record_failure(endpoint)
                else:
                    self.router.health.record_status(endpoint, e.upstream_status, forward.body)
                last_error = str(e)
                metrics.REQUEST_ERRORS.labels(
                    model=metrics.model_label(cfg, model), reason="upstream_unavailable"
                ).inc()
                log.warning("upstream %s (%s) failed before first byte: %s", model, endpoint, e)
                span.record_exception(e)
                span.set_status(trace.StatusCode.ERROR, "upstream unavailable")
                span.end()
                continue
            self.router.health.record_status(endpoint, upstream.status_code, forward.body)
            if attempt:
                metrics.FAILOVERS.labels(transport="proxy").inc()
                resp_headers["x-vsr-selected-model"] = model
                resp_headers["x-vsr-failover"] = "true"
            span.set_attribute("http.status_code", upstream.status_code)
            return self._relay(upstream, model, forward, resp_headers, span)
        unavailable = UpstreamUnavailable(f"all candidate backends failed: {last_error}")
        return _response(router_error_answer(unavailable), request_id)

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
            raise UpstreamUnavailable(f"HTTP {resp.status_code}: {detail}", upstream_status=resp.status_code)
        return resp

    def _relay(
        self, upstream: httpx.Response, model: str, forward: Forward, headers: dict[str, str], span: trace.Span
    ) -> Response:
        """Stream the upstream's answer through; `span` (the upstream call's) ends with the stream."""
        tracker = ResponseTracker(model=model)
        tracker.on_headers(upstream.status_code, upstream.headers.get("content-type", ""))
        passthrough = passthrough_headers(upstream.headers.raw)
        router = self.router
        restorer = forward.restorer(upstream.status_code, upstream.headers.get("content-type", ""))

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
                    tracker.finish(router.config, router.cache, forward.store_scope)
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


def _response(answer: Answer, request_id: str) -> Response:
    """The router's own answer, with the request's id."""
    headers = _wire({**answer.headers, "x-request-id": request_id})
    return Response(answer.body, answer.status, headers, media_type=answer.content_type)
