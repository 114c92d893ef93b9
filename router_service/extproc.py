"""Envoy ExtProc gRPC server: the same decision core as the direct proxy, spoken as header/body mutations and
ImmediateResponses. One `_Stream` per HTTP request follows it through the phases Envoy sends."""

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
from router_service.decision import Blocked, Routed, load_body
from router_service.errors import InvalidRequest, RouterError
from router_service.pii_masking import ResponseRestorer, mask_any_body
from router_service.pipeline import CACHE_CONTROL_HEADER, Outcome, RequestRouter
from router_service.prompt_paths import GUARDED_PATHS, as_chat
from router_service.proxy import forward_headers, passthrough_headers
from router_service.ratelimit import retry_after_header
from router_service.responses import models_list, openai_error, render_block, render_cached

__all__ = ["ExtProcServer", "serve_extproc"]

log = logging.getLogger(__name__)

_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_HOP_BY_HOP_SKIP = {"content-length"}


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


def _immediate(status: int, body: bytes, headers: dict[str, str], details: str) -> pb.ProcessingResponse:
    return pb.ProcessingResponse(
        immediate_response=pb.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=status),  # type: ignore[arg-type]
            headers=pb.HeaderMutation(set_headers=_set_headers(headers)),
            body=body,
            details=details,
        )
    )


def _error(
    status: int, message: str, code: str, *, param: str | None = None, headers: dict[str, str] | None = None
) -> pb.ProcessingResponse:
    """An OpenAI-style error as Envoy's immediate response; `code` also names it in Envoy's details."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    status, body = openai_error(status, message, kind, code, param)
    return _immediate(status, body, {"content-type": "application/json", **(headers or {})}, code)


def _router_error(e: RouterError) -> pb.ProcessingResponse:
    status, body = openai_error(e.status, e.message, e.error_type, e.code)
    headers = {"content-type": "application/json"}
    if e.retry_after_s is not None:
        headers["retry-after"] = retry_after_header(e.retry_after_s)
    return _immediate(status, body, headers, e.code)


@dataclass
class _Stream:
    headers: dict[str, str] = field(default_factory=dict)
    method: str = ""
    path: str = ""
    outcome: Outcome | None = None
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
        async for req in request_iterator:
            kind = req.WhichOneof("request")
            try:
                if kind == "request_headers":
                    yield self._on_request_headers(stream, req.request_headers)
                elif kind == "request_body":
                    yield await self._on_request_body(stream, req.request_body)
                elif kind == "response_headers" and self._failed_upstream(stream, req.response_headers):
                    # Before the first byte reached the client: answer from the next candidate instead. The
                    # fetch may take as long as a generation, so the message deadline is extended first.
                    yield pb.ProcessingResponse(
                        override_message_timeout=duration_pb2.Duration(seconds=int(self.upstream_timeout_s))
                    )
                    yield await self._fail_over(stream, req.response_headers)
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
                yield _error(500, "internal router error", "router_error")
                return

    # -- request phase -----------------------------------------------------------------------------------

    def _on_request_headers(self, stream: _Stream, headers: pb.HttpHeaders) -> pb.ProcessingResponse:
        stream.headers = _header_map(headers.headers)
        stream.method = stream.headers.get(":method", "")
        stream.path = stream.headers.get(":path", "").split("?", 1)[0]
        if stream.method == "GET" and stream.path.rstrip("/") in ("/v1/models", "/models"):
            body = json.dumps(models_list(self.router.config)).encode()
            return _immediate(200, body, {"content-type": "application/json"}, "models")
        if stream.path in _CHAT_PATHS and stream.method == "POST":
            if headers.end_of_stream:  # no body at all: nothing to route, and nothing an upstream could answer
                return _error(400, "request body is empty: send a chat completion request as JSON", "invalid_json")
            return pb.ProcessingResponse(request_headers=pb.HeadersResponse())
        if stream.path in GUARDED_PATHS and stream.method == "POST":
            if headers.end_of_stream:
                return _error(400, "request body is empty: send a JSON request", "invalid_json")
            return pb.ProcessingResponse(request_headers=pb.HeadersResponse())
        if stream.path in _CHAT_PATHS:  # as the direct proxy answers: only POST is a chat completion
            message = f"{stream.method or 'this method'} is not allowed here: use POST"
            return _error(405, message, "method_not_allowed", headers={"allow": "POST"})
        # Anything else goes to the default model's endpoint untouched.
        endpoint = self.router.config.default_endpoint()
        return pb.ProcessingResponse(
            request_headers=pb.HeadersResponse(
                response=pb.CommonResponse(
                    header_mutation=pb.HeaderMutation(
                        set_headers=_set_headers({"x-vsr-destination-endpoint": endpoint})
                    ),
                    clear_route_cache=True,
                )
            )
        )

    async def _on_request_body(self, stream: _Stream, body: pb.HttpBody) -> pb.ProcessingResponse:
        if stream.path in GUARDED_PATHS and stream.method == "POST":
            return await self._on_prompt_body(stream, body)
        if stream.path not in _CHAT_PATHS:
            return pb.ProcessingResponse(request_body=pb.BodyResponse())
        try:
            parsed = load_body(body.body)
        except (ValueError, RecursionError) as e:  # RecursionError: nested too deep
            return _error(400, f"request body is not valid JSON: {e}", "invalid_json")
        if not isinstance(parsed, dict):
            return _error(400, "request body must be a JSON object", "invalid_body")
        try:
            outcome = await self.router.route(parsed, stream.headers)
        except InvalidRequest as e:
            return _error(400, e.message, "invalid_request", param=e.param)
        except RouterError as e:  # refused before any decision: the tenant's rate limit
            return _router_error(e)
        stream.outcome = outcome
        decision = outcome.decision
        if isinstance(decision, Blocked):
            status, headers, payload, ctype = render_block(
                decision, self.router.config, stream=outcome.plan.stream, model=outcome.plan.requested_model
            )
            return _immediate(status, payload, {**headers, "content-type": ctype}, f"blocked_{decision.reason}")
        assert isinstance(decision, Routed)
        if outcome.cache_hit is not None:
            payload, ctype = render_cached(outcome.cache_hit, stream=outcome.plan.stream, body=parsed)
            return _immediate(200, payload, {**outcome.response_headers, "content-type": ctype}, "cache_hit")
        stream.tracker = ResponseTracker(model=decision.model)
        new_body = json.dumps(decision.body, ensure_ascii=False).encode()
        return pb.ProcessingResponse(
            request_body=pb.BodyResponse(
                response=pb.CommonResponse(
                    header_mutation=pb.HeaderMutation(
                        set_headers=_set_headers(
                            {
                                **decision.upstream_headers,
                                **outcome.upstream_trace_headers,
                                "content-length": str(len(new_body)),
                            }
                        ),
                    ),
                    body_mutation=pb.BodyMutation(body=new_body),
                    clear_route_cache=True,
                )
            )
        )

    async def _on_prompt_body(self, stream: _Stream, body: pb.HttpBody) -> pb.ProcessingResponse:
        """/v1/completions and /v1/responses: guarded and routed as a chat request would be (`prompt_paths`)."""
        try:
            parsed = load_body(body.body)
        except (ValueError, RecursionError) as e:
            return _error(400, f"request body is not valid JSON: {e}", "invalid_json")
        if not isinstance(parsed, dict):
            return _error(400, "request body must be a JSON object", "invalid_body")
        headers = {**stream.headers, CACHE_CONTROL_HEADER: "no-cache, no-store"}  # no cache on these paths
        try:
            outcome = await self.router.route(as_chat(GUARDED_PATHS[stream.path], parsed), headers)
        except InvalidRequest as e:
            return _error(400, e.message, "invalid_request", param=e.param)
        except RouterError as e:
            return _router_error(e)
        decision = outcome.decision
        if isinstance(decision, Blocked):
            status, bheaders, payload, ctype = render_block(
                decision, self.router.config, stream=False, model=outcome.plan.requested_model, as_error=True
            )
            return _immediate(status, payload, {**bheaders, "content-type": ctype}, f"blocked_{decision.reason}")
        assert isinstance(decision, Routed)
        stream.outcome = outcome
        upstream = {**parsed, "model": decision.model}
        if decision.masking is not None:  # a masking model gets this path's body masked too
            try:
                upstream = mask_any_body(upstream, decision.masking)
            except InvalidRequest as e:
                return _error(400, e.message, "invalid_request")
        new_body = json.dumps(upstream, ensure_ascii=False).encode()
        return pb.ProcessingResponse(
            request_body=pb.BodyResponse(
                response=pb.CommonResponse(
                    header_mutation=pb.HeaderMutation(
                        set_headers=_set_headers({**decision.upstream_headers, "content-length": str(len(new_body))}),
                    ),
                    body_mutation=pb.BodyMutation(body=new_body),
                    clear_route_cache=True,
                )
            )
        )

    # -- response phase ----------------------------------------------------------------------------------

    def _failed_upstream(self, stream: _Stream, headers: pb.HttpHeaders) -> bool:
        """Record the chosen endpoint's health; True when it failed (5xx, or Envoy's own 503 for a refused,
        reset or timed-out connection) and the decision has another candidate to try."""
        outcome = stream.outcome
        if outcome is None or not isinstance(outcome.decision, Routed) or stream.path not in _CHAT_PATHS:
            return False
        status = int(_header_map(headers.headers).get(":status", "0") or 0)
        endpoint = outcome.decision.endpoint
        if status < 500:
            self.router.health.record_success(endpoint)
            return False
        self.router.health.record_failure(endpoint)
        model = metrics.model_label(self.router.config, outcome.decision.model)
        metrics.REQUEST_ERRORS.labels(model=model, reason="upstream_unavailable").inc()
        log.warning("upstream %s (%s) answered %d before its first byte", outcome.decision.model, endpoint, status)
        return self.http is not None and bool(outcome.decision.candidates)

    async def _fail_over(self, stream: _Stream, headers: pb.HttpHeaders) -> pb.ProcessingResponse:
        """Try the decision's further candidates in order (as the direct proxy does); the first that answers
        below 500 is the response, sent whole. All failed: 502 `upstream_unavailable`, as the direct proxy."""
        assert stream.outcome is not None and isinstance(stream.outcome.decision, Routed) and self.http is not None
        outcome, decision = stream.outcome, stream.outcome.decision
        request_id = stream.headers.get("x-request-id", "")
        forward = {**forward_headers(stream.headers, request_id), **outcome.upstream_trace_headers}
        last_error = f"{decision.model} failed"
        for model, endpoint in decision.candidates:
            if not self.router.health.healthy(endpoint):
                last_error = f"{model} ({endpoint}) is skipped after repeated failures"
                continue
            try:
                resp = await self.http.post(
                    f"http://{endpoint}/v1/chat/completions",
                    json=dict(decision.body, model=model),
                    headers=forward,
                    timeout=self.upstream_timeout_s,
                )
            except httpx.HTTPError as e:
                resp = None
                last_error = f"{type(e).__name__}: {e}"
            if resp is None or resp.status_code >= 500:
                if resp is not None:
                    last_error = f"HTTP {resp.status_code}"
                self.router.health.record_failure(endpoint)
                label = metrics.model_label(self.router.config, model)
                metrics.REQUEST_ERRORS.labels(model=label, reason="upstream_unavailable").inc()
                log.warning("failover candidate %s (%s) failed: %s", model, endpoint, last_error)
                continue
            self.router.health.record_success(endpoint)
            metrics.FAILOVERS.labels(transport="extproc").inc()
            stream.tracker = None  # this response is accounted here, and never cached under the first choice's key
            tracker = ResponseTracker(model=model)
            tracker.on_headers(resp.status_code, resp.headers.get("content-type", ""))
            tracker.on_chunk(resp.content)
            tracker.finish(self.router.config, self.router.cache, None)
            content = resp.content
            restorer = _restorer(outcome, resp.status_code, resp.headers.get("content-type", ""))
            if restorer is not None:  # the candidate got the same masked body
                content = restorer.feed(content) + restorer.finish()
            out = {
                **passthrough_headers(resp.headers.raw),
                **outcome.response_headers,
                "x-vsr-selected-model": model,
                "x-vsr-failover": "true",
            }
            return _immediate(resp.status_code, content, out, "failover")
        return _error(502, f"all candidate backends failed: {last_error}", "upstream_unavailable")

    def _on_response_headers(self, stream: _Stream, headers: pb.HttpHeaders) -> pb.ProcessingResponse:
        resp = _header_map(headers.headers)
        add: dict[str, str] = {}
        mode: processing_mode_pb2.ProcessingMode | None = None
        if stream.outcome is not None:
            add = stream.outcome.response_headers
        if stream.tracker is not None:
            ctype = resp.get("content-type", "")
            stream.tracker.on_headers(int(resp.get(":status", "0") or 0), ctype)
            if stream.tracker.sse:
                # Stream SSE chunks through as they come instead of buffering the whole generation.
                mode = processing_mode_pb2.ProcessingMode(
                    response_body_mode=processing_mode_pb2.ProcessingMode.STREAMED
                )
            stream.done = bool(headers.end_of_stream)
        stream.restorer = _restorer(stream.outcome, int(resp.get(":status", "0") or 0), resp.get("content-type", ""))
        remove = ["content-length"] if stream.restorer is not None else []  # the restored body has its own length
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
        tracker, outcome = stream.tracker, stream.outcome
        if not stream.done or tracker is None or outcome is None:
            return
        stream.tracker = None
        tracker.finish(self.router.config, self.router.cache, outcome.store_scope)


def _restorer(outcome: Outcome | None, status: int, content_type: str) -> ResponseRestorer | None:
    """A restorer when the request was masked with `restore` and the backend answered with a success."""
    decision = outcome.decision if outcome is not None else None
    masking = decision.masking if isinstance(decision, Routed) else None
    if masking is None or not masking.restore or not 200 <= status < 300:
        return None
    return ResponseRestorer(masking, sse=content_type.startswith("text/event-stream"))


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
