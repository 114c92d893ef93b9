"""Assemble the router process: Starlette app (API + proxy), ExtProc gRPC server, metrics server, config watcher.

Everything stateful (Triton client, httpx client, cache client, config store) is created in the lifespan and shared."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cache_service.auth import AuthFailure, check_bearer, resolve_admin_token
from cache_service.client import CacheClient
from router_service import metrics
from router_service.adapters import api
from router_service.adapters.extproc import serve_extproc
from router_service.adapters.proxy import ChatProxy
from router_service.clients.pins import PinStore
from router_service.clients.triton import SignalClient
from router_service.config import RouterConfig
from router_service.config.store import ConfigStore
from router_service.core.render import JSON, openai_error
from router_service.core.reply import Answer, error_answer, router_error_answer
from router_service.core.tools import ToolIndex
from router_service.errors import ConfigError, InvalidRequest, RouterError
from router_service.router import RequestRouter
from router_service.settings import Settings
from router_service.tracing import setup_tracing

__all__ = ["AppParts", "create_app"]

log = logging.getLogger(__name__)


def _response(answer: Answer) -> Response:
    return Response(answer.body, answer.status, answer.headers or None, media_type=answer.content_type)


async def _router_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RouterError)
    return _response(router_error_answer(exc))


async def _auth_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthFailure)
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
    status, payload = openai_error(exc.status, exc.message, "authentication_error", "invalid_admin_token")
    return Response(payload, status, headers, media_type=JSON)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _response(error_answer(exc.status_code, str(exc.detail), f"http_{exc.status_code}"))


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return _response(error_answer(500, "internal router error", "internal_error"))


_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _build_tool_index(cfg: RouterConfig, signals: SignalClient) -> ToolIndex | None:
    """Embed the tool catalogue through Triton (never in-process) when tool selection is on."""
    if not cfg.tools.enabled or not cfg.tools.tools_db_path:
        return None
    try:
        return await ToolIndex.from_config(cfg, signals.embed)
    except Exception as e:  # a broken tools db must not stop routing
        log.error("tool selection disabled: %s", e)
        return None


def _cache_outcome(operation: str, outcome: str, seconds: float) -> None:
    metrics.CACHE_OPERATION_DURATION.labels(backend="redis", operation=operation, status=str(outcome)).observe(seconds)
    metrics.CACHE_OPERATIONS.labels(backend="redis", operation=operation, status=str(outcome)).inc()


async def _poll_cache_entries(cache: CacheClient, every_s: float = 5.0) -> None:
    """Mirror the cache's entry count as `llm_cache_entries_total` on the router's metrics (as VSR exports it)."""
    while True:
        entries = await cache.entries()
        if entries is not None:
            metrics.CACHE_ENTRIES.labels(backend="redis").set(entries)
        await asyncio.sleep(every_s)


@dataclass(frozen=True)
class AppParts:
    """The running app's parts, shared by every route. Built in the lifespan, not in `create_app`: the Triton and
    cache clients belong to the event loop that serves requests."""

    signals: SignalClient
    cache: CacheClient | None
    router: RequestRouter
    proxy: ChatProxy


def create_app(settings: Settings) -> Starlette:
    parts: AppParts | None = None

    def running() -> AppParts:
        if parts is None:
            raise RuntimeError("the router's parts are built when the app starts (its lifespan)")
        return parts

    def on_reload(cfg: RouterConfig) -> None:
        metrics.CONFIG_RELOADS.labels(result="ok").inc()
        log.info("config reloaded from %s", settings.config)
        if parts is not None:
            router = parts.router
            task = asyncio.get_running_loop().create_task(_build_tool_index(cfg, parts.signals))
            task.add_done_callback(lambda t: setattr(router, "tool_index", t.result()))

    def on_reload_error(exc: Exception) -> None:
        metrics.CONFIG_RELOADS.labels(result="error").inc()
        log.error("config reload rejected, keeping the running config: %s", exc)

    store = ConfigStore(settings.config, on_reload_error=on_reload_error, on_reload=on_reload)
    admin_token = resolve_admin_token(store.current.triton_router.admin_token, settings.run_dir)

    def require_admin(request: Request) -> None:
        check_bearer(request.headers, admin_token)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal parts
        tracer_provider = setup_tracing(store.current)
        signals = SignalClient(
            settings.triton_url,
            settings.model_repository,
            max_batch=settings.max_batch,
            window_ms=settings.batch_window_ms,
            timeout_s=settings.triton_timeout_s,
            max_pending_rows=settings.max_pending_rows,
        )
        await signals.start()
        cache = (
            CacheClient(
                settings.cache_url,
                timeout_s=settings.cache_timeout_s,
                on_outcome=_cache_outcome,
                admin_token=admin_token,
            )
            if settings.cache_url
            else None
        )
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.upstream_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        )
        pins = PinStore(settings.redis_url, timeout_s=settings.pin_timeout_s) if settings.redis_url else None
        router = RequestRouter(store, signals, cache, pins=pins, max_body_bytes=settings.max_body_bytes)
        router.tool_index = await _build_tool_index(store.current, signals)
        parts = AppParts(signals=signals, cache=cache, router=router, proxy=ChatProxy(router, http))
        grpc_server = await serve_extproc(
            router, settings.host, settings.grpc_port, http=http, upstream_timeout_s=settings.upstream_timeout_s
        )
        watcher = asyncio.create_task(store.watch(), name="config-watch")
        poller = asyncio.create_task(_poll_cache_entries(cache), name="cache-entries") if cache is not None else None
        # Everything built so far (tokenizer, tool index, config, gRPC/HTTP clients) lives as long as the process:
        # move it out of the collector's reach, so a later full collection under load scans only what requests
        # left behind (a full collection of the startup heap takes 35-70 ms on these hosts).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for task in (watcher, poller):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await grpc_server.stop(grace=2.0)
            await http.aclose()
            if cache is not None:
                await cache.close()
            if pins is not None:
                await pins.close()
            await signals.close()
            if tracer_provider is not None:  # export what is still queued, without hanging on a dead collector
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await asyncio.to_thread(tracer_provider.shutdown)

    async def health(_: Request) -> Response:
        triton_ok = await running().signals.ready()
        body = {
            "status": "healthy" if triton_ok else "degraded",
            "triton": "ready" if triton_ok else "unavailable",
            "cache": "configured" if running().cache is not None else "disabled",
            "config": str(settings.config),
        }
        return JSONResponse(body)

    async def ready(_: Request) -> Response:
        """Readiness (Kubernetes, compose healthchecks): 503 while Triton cannot serve the model, so a router whose
        classifier is gone leaves the Service's endpoints. `/health` stays 200 when degraded (VSR's contract)."""
        triton_ok = await running().signals.ready()
        body = {"ready": triton_ok, "triton": "ready" if triton_ok else "unavailable"}
        return JSONResponse(body, status_code=200 if triton_ok else 503)

    async def info_models(_: Request) -> Response:
        signals = running().signals
        m = signals.manifest
        return JSONResponse(
            {
                "triton_model": signals.model_name,
                "build_key": m.build_key,
                "max_seq_length": signals.max_seq_length,
                "models": [
                    {"name": "intent", "type": "sequence_classification", "labels": list(m.intent_labels)},
                    {
                        "name": "jailbreak",
                        "type": "sequence_classification",
                        "labels": list(m.jailbreak_labels),
                    },
                    {"name": "pii", "type": "token_classification", "labels": list(m.pii_labels)},
                    {"name": "embedding", "type": "sentence_embedding", "dimension": m.embedding_dim},
                ],
            }
        )

    async def config(request: Request) -> Response:
        require_admin(request)
        return Response(json.dumps(store.current.redacted(), default=str), media_type="application/json")

    async def reload_config(request: Request) -> Response:
        """Re-read the config file now (it is also watched); a bad file is a 400 and the running config stays."""
        require_admin(request)
        try:
            changed = store.reload_checked()  # on the loop: the reload callback schedules a task on it
        except ConfigError as e:
            raise InvalidRequest(f"{e.message}\nthe running config is kept", "config") from e
        return JSONResponse({"reloaded": changed, "config": str(store.path)})

    async def openapi(_: Request) -> Response:
        return JSONResponse(api.openapi_document())

    async def chat(request: Request) -> Response:
        return await running().proxy(request)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            Route("/v1/models", chat, methods=["GET"]),
            Route("/models", chat, methods=["GET"]),
            Route("/v1/models/{model:path}", chat, methods=["GET"]),
            Route("/models/{model:path}", chat, methods=["GET"]),
            Route("/info/models", info_models),
            Route("/config", config),
            Route("/config/reload", reload_config, methods=["POST"]),
            Route("/openapi.json", openapi),
            Route("/v1/chat/completions", chat, methods=_ALL_METHODS),  # the router answers 405 to all but POST
            *api.routes(lambda: store.current, lambda: running().signals),
        ],
        lifespan=lifespan,
        exception_handlers={
            RouterError: _router_error,
            AuthFailure: _auth_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
