"""The Starlette app: routes, the lifespan that owns the Redis client, and the one error-to-HTTP mapping."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cache_service.auth import AuthFailure, check_bearer, resolve_admin_token
from cache_service.errors import AuthError, CacheError, InvalidRequestError, PayloadTooLargeError
from cache_service.metrics import CacheMetrics
from cache_service.models import InvalidateRequest, LookupRequest, StoreRequest, parse
from cache_service.service import CacheService, LookupResult
from cache_service.settings import CacheSettings

__all__ = ["create_app", "error_body"]

log = logging.getLogger(__name__)

_HTTP_TYPES = {404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error"}


def error_body(message: str, error_type: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "code": code}}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError as e:
            raise InvalidRequestError("invalid content-length header", code="invalid_body") from e
        if size > limit:
            raise PayloadTooLargeError(f"body of {size} bytes is over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"body is over the {limit}-byte limit")
    return bytes(body)


class _App(Starlette):
    """Starlette, with the lookup route served by a plain ASGI handler."""

    def __init__(self, lookup: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lookup = lookup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/cache/lookup" and scope["method"] == "POST":
            await self._lookup(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: CacheSettings, metrics: CacheMetrics | None = None) -> Starlette:
    service = CacheService(settings, metrics)
    limit = settings.max_body_bytes
    run_dir = Path(settings.run_dir) if settings.run_dir else None
    admin_token = resolve_admin_token(settings.admin_token or None, run_dir)

    def require_admin(request: Request) -> None:
        try:
            check_bearer(request.headers, admin_token)
        except AuthFailure as e:
            raise AuthError(e.status, e.message) from e

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "healthy" if service.redis_ok and service.index_ready else "degraded",
                "redis": "ok" if service.redis_ok else "unavailable",
                "index_ready": service.index_ready,
                "index": settings.index_name,
            }
        )

    def lookup_body(result: LookupResult) -> bytes:
        entry = result.entry
        if entry is None:
            return _dumps({"hit": False, "similarity": result.similarity, "took_ms": round(result.took_ms, 3)})
        head = _dumps(
            {
                "hit": True,
                "exact": result.exact,
                "similarity": result.similarity,
                "entry_id": entry.entry_id,
                "prompt": entry.prompt,
                "model": entry.model,
                "created_at": entry.created_at,
                "took_ms": round(result.took_ms, 3),
            }
        )
        # The stored response is JSON text written by this service: splice it in rather than re-parse it.
        return head[:-1] + b',"response":' + entry.response_json.encode("utf-8") + b"}"

    async def lookup(request: Request) -> Response:
        req = parse(LookupRequest, await _read_body(request, limit))
        result = await service.lookup(req)
        entry = result.entry
        if entry is None or result.touched:
            return Response(lookup_body(result), media_type="application/json")
        return Response(
            lookup_body(result), media_type="application/json", background=BackgroundTask(service.touch, entry)
        )

    async def fast_lookup(scope: Scope, receive: Receive, send: Send) -> None:
        """POST /v1/cache/lookup straight on ASGI: the same handler without Starlette's routing, Request and
        Response objects (on the router's request path; ~0.1 ms of 2-core CPU per lookup)."""
        headers = dict(scope["headers"])
        try:
            declared = headers.get(b"content-length")
            if declared is not None:
                try:
                    declared_size = int(declared)
                except ValueError as e:
                    raise InvalidRequestError("invalid content-length header", code="invalid_body") from e
                if declared_size > limit:
                    raise PayloadTooLargeError(f"body of {declared_size} bytes is over the {limit}-byte limit")
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"body is over the {limit}-byte limit")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            result = await service.lookup(parse(LookupRequest, b"".join(chunks)))
            status, body = 200, lookup_body(result)
        except CacheError as exc:
            if exc.status_code >= 500:
                log.debug("POST /v1/cache/lookup: %s", exc.message)
            status, body = exc.status_code, _dumps(error_body(exc.message, exc.error_type, exc.code))
            result = None
        except Exception:
            log.exception("unexpected error in POST /v1/cache/lookup")
            status, body = 500, _dumps(error_body("internal error", "server_error", "internal_error"))
            result = None
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        if result is not None and result.entry is not None and not result.touched:
            await service.touch(result.entry)

    async def store(request: Request) -> Response:
        require_admin(request)
        req = parse(StoreRequest, await _read_body(request, limit))
        eid, evicted = await service.store(req)
        return JSONResponse({"stored": True, "entry_id": eid, "evicted": evicted})

    async def invalidate(request: Request) -> Response:
        require_admin(request)
        req = parse(InvalidateRequest, await _read_body(request, limit))
        return JSONResponse({"deleted": await service.invalidate(req)})

    async def stats(request: Request) -> Response:
        return JSONResponse(await service.stats())

    async def metrics_endpoint(request: Request) -> Response:
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def on_cache_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CacheError)
        if exc.status_code >= 500:
            log.debug("%s %s: %s", request.method, request.url.path, exc.message)
        headers = {"www-authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(
            error_body(exc.message, exc.error_type, exc.code), status_code=exc.status_code, headers=headers
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = exc.status_code
        return JSONResponse(
            error_body(str(exc.detail), _HTTP_TYPES.get(code, "invalid_request_error"), f"http_{code}"),
            status_code=code,
            headers=exc.headers,
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal error", "server_error", "internal_error"), status_code=500)

    app = _App(
        fast_lookup,
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/cache/lookup", lookup, methods=["POST"]),
            Route("/v1/cache/store", store, methods=["POST"]),
            Route("/v1/cache/invalidate", invalidate, methods=["POST"]),
            Route("/v1/cache/stats", stats, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        exception_handlers={
            CacheError: on_cache_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.service = service
    return app
