"""Envoy ExtProc gRPC server: the router's reply (`RequestRouter.handle`), spoken as header/body mutations (a
`Forward`) or an ImmediateResponse (an `Answer`). One `_Stream` per HTTP request follows it through the phases Envoy
sends; the response phase restores masked PII, fails over to further candidates and accounts the response."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import duration_pb2

from router_service import metrics
from router_service.accounting import ResponseTracker
from router_service.adapters.proxy import forward_headers, passthrough_headers
from router_service.core.pii_masking import ResponseRestorer
from router_service.core.reply import Answer, Forward, ParsedRequest, error_answer, router_error_answer, wants_body
from router_service.errors import UpstreamUnavailable
from router_service.router import RequestRouter
from router_service.tracing import outgoing_headers

__all__ = ["ExtProcServer", "serve_extproc"]

log = logging.getLogger(__name__)


def _header_map(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for h in headers.headers:
        value = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
        out[h.key.lower()] = value
    return out


def _set_headers(items: dict[str, str]) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k, raw_value=v.encode()),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
        for k, v in items.items()
    ]


def _immediate(answer: Answer) -> pb.ProcessingResponse:
    """The router's own answer as Envoy's immediate response."""
    headers = {**answer.headers, "content-type": answer.content_type} if answer.content_type else answer.headers
    return pb.ProcessingResponse(
        immediate_response=pb.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=answer.status),  # type: ignore[arg-type]
            headers=pb.HeaderMutation(set_headers=_set_headers(headers)),
            body=answer.body,
            details=answer.details,
        )
    )


@dataclass
class _Stream:
    headers: dict[str, str] = field(default_factory=dict)
    method: str = ""
    path: str = ""
    forward: Forward | None = None
    """What the router decided for the request (None until it has, or when it answered itself)."""
    tracker: ResponseTracker | None = None
    restorer: ResponseRestorer | None = None
    """Puts masked PII back into the response (`pii_policy.restore`)."""
    done: bool = False
    """The upstream response has ended (end_of_stream seen)."""


class ExtProcServer(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(
        self, router: RequestRouter, http: httpx.AsyncClient | None = None, upstream_timeout_s: float = 300.0
    ) -> None:
        self.router = router
        self.http = http
        """For failover: the next candidate is fetched by the router itself (Envoy cannot rewrite a retry's body)."""
        self.upstream_timeout_s = upstream_timeout_s

    async def Process(
        self,
        request_iterator: AsyncIterator[pb.ProcessingRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.ProcessingResponse]:
        stream = _Stream()
        try:
            async for req in request_iterator:
                kind = req.WhichOneof("request")
                try:
                    if kind == "request_headers":
                        yield await self._on_request_headers(stream, req.request_headers)
                    elif kind == "request_body":
                        yield await self._on_request_body(stream, req.request_body)
                    elif kind == "response_headers" and self._failed_upstream(stream, req.response_headers):
                        # Before the first byte reached the client: answer from the next candidate instead. The
                        # fetch may take as long as a generation, so the message deadline is extended first.
                        yield pb.ProcessingResponse(
                            override_message_timeout=duration_pb2.Duration(seconds=int(self.upstream_timeout_s))
                        )
                        yield await self._fail_over(stream)
                    elif kind == "response_headers":
                        yield self._on_response_headers(stream, req.response_headers)
                        self._finish_if_done(stream)  # after the reply: bookkeeping is off the response's path
                    elif kind == "response_body":
                        yield self._on_response_body(stream, req.response_body)
                        self._finish_if_done(stream)
                    elif kind == "request_trailers":
                        yield pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
                    elif kind == "response_trailers":
                        yield pb.ProcessingResponse(response_trailers=pb.TrailersResponse())
                except Exception:  # one bad request must not take the stream down silently
                    log.exception("extproc: error in %s", kind)
                    yield _immediate(error_answer(500, "internal router error", "router_error"))
                    return
        finally:
            # Envoy may end the gRPC stream as soon as it has the last reply, before this generator resumes after
            # its `yield`: the response's bookkeeping (metrics, the cache store) must not depend on that race.
            self._finish_if_done(stream)

    # -- request phase: the router's reply, spoken as mutations or an immediate response ----------------------

    async def _on_request_headers(self, stream: _Stream, headers: pb.HttpHeaders) -> pb.ProcessingResponse:
        stream.headers = _header_map(headers.headers)
        stream.method = stream.headers.get(":method", "")
        stream.path = stream.headers.get(":path", "").split("?", 1)[0]
        if wants_body(stream.method, stream.path) and not headers.end_of_stream:
            return pb.ProcessingResponse(request_headers=pb.HeadersResponse())  # the reply waits for the body
        reply = await self.router.handle(ParsedRequest(stream.method, stream.path, stream.headers))
        if isinstance(reply, Answer):
            return _immediate(reply)
        stream.forward = reply
        mutation = pb.HeaderMutation(set_headers=_set_headers(reply.upstream_headers))
        common = pb.CommonResponse(header_mutation=mutation, clear_route_cache=True)
        return pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=common))

    async def _on_request_body(self, stream: _Stream, body: pb.HttpBody) -> pb.ProcessingResponse:
        if not wants_body(stream.method, stream.path) or stream.forward is not None:
            return pb.ProcessingResponse(request_body=pb.BodyResponse())
        reply = await self.router.handle(ParsedRequest(stream.method, stream.path, stream.headers, body.body))
        if isinstance(reply, Answer):
            return _immediate(reply)
        stream.forward = reply
        if reply.tracked:
            stream.tracker = ResponseTracker(model=reply.model)
        new_body = json.dumps(reply.body, ensure_ascii=False).encode()
        mutation = pb.HeaderMutation(
            set_headers=_set_headers({**reply.upstream_headers, "content-length": str(len(new_body))})
        )
        common = pb.CommonResponse(
            header_mutation=mutation, body_mutation=pb.BodyMutation(body=new_body), clear_route_cache=True
        )
        return pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))

    # -- response phase ----------------------------------------------------------------------------------

    def _failed_upstream(self, stream: _Stream, headers: pb.HttpHeaders) -> bool:
        """Record the chosen endpoint's health; True when it failed (5xx, or Envoy's own 503 for a refused,
        reset or timed-out connection) and the decision has another candidate to try."""
        forward = stream.forward
        if forward is None or not forward.tracked:
            return False
        status = int(_header_map(headers.headers).get(":status", "0") or 0)
        self.router.health.record_status(forward.endpoint, status, forward.body)
        if status < 500:
            return False
        model = metrics.model_label(self.router.config, forward.model)
        metrics.REQUEST_ERRORS.labels(model=model, reason="upstream_unavailable").inc()
        log.warning("upstream %s (%s) answered %d before its first byte", forward.model, forward.endpoint, status)
        return self.http is not None and bool(forward.candidates)

    async def _fail_over(self, stream: _Stream) -> pb.ProcessingResponse:
        """Try the decision's further candidates in order (as the direct proxy does); the first that answers
        below 500 is the response, sent whole. All failed: 502 `upstream_unavailable`, as the direct proxy."""
        forward = stream.forward
        assert forward is not None and self.http is not None
        request_id = stream.headers.get("x-request-id", "")
        sent = {**forward_headers(stream.headers, request_id), **outgoing_headers(forward.trace_context)}
        last_error = f"{forward.model} failed"
        for model, endpoint in forward.candidates:
            if not self.router.health.healthy(endpoint):
                last_error = f"{model} ({endpoint}) is skipped after repeated failures"
                continue
            try:
                resp = await self.http.post(
                    f"http://{endpoint}/v1/chat/completions",
                    json=forward.body_for(model),
                    headers=sent,
                    timeout=self.upstream_timeout_s,
                )
            except httpx.HTTPError as e:
                resp = None
                last_error = f"{type(e).__name__}: {e}"
            if resp is None:
                self.router.health.record_failure(endpoint)
            else:
                self.router.health.record_status(endpoint, resp.status_code, forward.body)
            if resp is None or resp.status_code >= 500:
                if resp is not None:
                    last_error = f"HTTP {resp.status_code}"
                label = metrics.model_label(self.router.config, model)
                metrics.REQUEST_ERRORS.labels(model=label, reason="upstream_unavailable").inc()
                log.warning("failover candidate %s (%s) failed: %s", model, endpoint, last_error)
                continue
            metrics.FAILOVERS.labels(transport="extproc").inc()
            stream.tracker = None  # this response is accounted here, and never cached under the first choice's key
            ctype = resp.headers.get("content-type", "")
            tracker = ResponseTracker(model=model)
            tracker.on_headers(resp.status_code, ctype)
            tracker.on_chunk(resp.content)
            tracker.finish(self.router.config, self.router.cache, None)
            content = resp.content
            restorer = forward.restorer(resp.status_code, ctype)
            if restorer is not None:  # the candidate got the same masked body
                content = restorer.feed(content) + restorer.finish()
            headers = {
                **passthrough_headers(resp.headers.raw),
                **forward.response_headers,
                "x-vsr-selected-model": model,
                "x-vsr-failover": "true",
            }
            headers.pop("content-type", None)
            return _immediate(Answer(resp.status_code, headers, content, ctype, "failover"))
        return _immediate(router_error_answer(UpstreamUnavailable(f"all candidate backends failed: {last_error}")))

    def _on_response_headers(self, stream: _Stream, headers: pb.HttpHeaders) -> pb.ProcessingResponse:
        resp = _header_map(headers.headers)
        status, ctype = int(resp.get(":status", "0") or 0), resp.get("content-type", "")
        mode: processing_mode_pb2.ProcessingMode | None = None
        forward = stream.forward
        if stream.tracker is not None:
            stream.tracker.on_headers(status, ctype)
            if stream.tracker.sse:
                # Stream SSE chunks through as they come instead of buffering the whole generation.
                mode = processing_mode_pb2.ProcessingMode(
                    response_body_mode=processing_mode_pb2.ProcessingMode.STREAMED
                )
            stream.done = bool(headers.end_of_stream)
        stream.restorer = forward.restorer(status, ctype) if forward is not None else None
        remove = ["content-length"] if stream.restorer is not None else []  # the restored body has its own length
        add = forward.response_headers if forward is not None else {}
        mutation = pb.HeaderMutation(set_headers=_set_headers(add), remove_headers=remove)
        common = pb.CommonResponse(header_mutation=mutation)
        response = pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=common))
        if mode is not None:
            response.mode_override.CopyFrom(mode)
        return response

    def _on_response_body(self, stream: _Stream, body: pb.HttpBody) -> pb.ProcessingResponse:
        if stream.tracker is not None:
            stream.tracker.on_chunk(body.body)
            stream.done = bool(body.end_of_stream)
        if stream.restorer is None:
            return pb.ProcessingResponse(response_body=pb.BodyResponse())
        out = stream.restorer.feed(body.body)
        if body.end_of_stream:
            out += stream.restorer.finish()
        mutation = pb.BodyMutation(body=out) if out else pb.BodyMutation(clear_body=True)
        return pb.ProcessingResponse(response_body=pb.BodyResponse(response=pb.CommonResponse(body_mutation=mutation)))

    def _finish_if_done(self, stream: _Stream) -> None:
        """Metrics and the cache store once the response is complete (called after its last reply was sent)."""
        tracker, forward = stream.tracker, stream.forward
        if not stream.done or tracker is None or forward is None:
            return
        stream.tracker = None
        tracker.finish(self.router.config, self.router.cache, forward.store_scope)


async def serve_extproc(
    router: RequestRouter,
    host: str,
    port: int,
    http: httpx.AsyncClient | None = None,
    upstream_timeout_s: float = 300.0,
) -> grpc.aio.Server:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    pb_grpc.add_ExternalProcessorServicer_to_server(ExtProcServer(router, http, upstream_timeout_s), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server
