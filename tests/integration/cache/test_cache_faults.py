"""Faults: Redis killed, frozen and restarted under a running `python -m cache_service` process. Lookups give
up fast and return None (no error reaches the caller), stores never block, and the cache works again once
Redis is back, with its index re-created in the empty Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from cache_service.auth import ENV_VAR as ADMIN_TOKEN_ENV
from cache_service.client import CacheClient, CacheOutcome
from local_stack.components import ManagedProcess, free_port, wait_http_ok
from tests.integration.cache.conftest import TEST_ADMIN_TOKEN
from tests.integration.conftest import RedisServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
# Generous: the budget is 20 ms (measured in benchmarks/cache); what this bounds is "gives up instead of waiting for
# Redis" (its socket timeout is 1 s, a frozen Redis never answers). CI machines are noisy: one lookup was seen to take
# 0.28 s there because the test process itself was not scheduled.
BOUND_S = 0.5
INDEX = "fault_cache"


@pytest.fixture
def cache_process(private_redis: RedisServer, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "cache_service",
        "--port",
        str(port),
        "--redis-url",
        private_redis.url,
        "--index-name",
        INDEX,
        "--janitor-interval-s",
        "0.5",
        "--lookup-timeout-s",
        "1.0",  # the service's own Redis budget; the client's 20 ms budget is the one under test
        "--log-level",
        "warning",
    ]
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess(
        "cache",
        argv,
        tmp_path / "cache.log",
        env={**os.environ, ADMIN_TOKEN_ENV: TEST_ADMIN_TOKEN},
        cwd=ROOT,
        ready=lambda: wait_http_ok(f"{url}/health", 0.2),
    ).start()
    proc.wait_ready(60)
    yield url
    proc.stop()


def _vec(seed: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


V = _vec(0)
SCOPE: dict[str, Any] = {"model": "m", "fingerprint": "f", "tenant": None}
RESPONSE = {"object": "chat.completion", "choices": [{"index": 0, "message": {"content": "x"}}]}


def _patient(url: str) -> CacheClient:
    """A client with generous budgets, for the phases that wait for a healthy cache (a noisy machine must not turn
    them into timeouts); the fault phases use the router's 20 ms budget."""
    return CacheClient(
        url, timeout_s=2.0, store_timeout_s=5.0, failure_threshold=1_000_000, admin_token=TEST_ADMIN_TOKEN
    )


def _fast(url: str) -> CacheClient:
    return CacheClient(url, timeout_s=0.02, failure_threshold=3, cooldown_s=0.3, admin_token=TEST_ADMIN_TOKEN)


async def _until_hit(client: CacheClient, deadline_s: float) -> float:
    """Retry semantic lookups (storing again on a miss) until one hits; returns the seconds it took.
    The lookup's prompt differs from the stored one, so only the vector index can answer it."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        hit = await client.lookup(prompt="q, put differently", embedding=V, **SCOPE)
        if hit is not None:
            assert not hit.exact
            return time.monotonic() - t0
        if client.last_outcome is CacheOutcome.MISS:
            await client.store(prompt="q", embedding=V, response=RESPONSE, **SCOPE)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no hit within {deadline_s}s; outcomes {dict(client.outcomes)}")


async def _timed_lookups(client: CacheClient, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert await client.lookup(prompt="q", embedding=V, **SCOPE) is None
        times.append(time.perf_counter() - t0)
    return times


async def test_redis_killed_then_restarted(private_redis: RedisServer, cache_process: str) -> None:
    async with _patient(cache_process) as patient, _fast(cache_process) as client:
        await _until_hit(patient, 30)

        private_redis.stop()
        times = await _timed_lookups(client, 10)
        assert max(times) < BOUND_S, times
        assert client.outcomes[CacheOutcome.CIRCUIT_OPEN] >= 5  # the breaker took over after 3 failures
        assert sorted(times)[5] < 0.005  # an open breaker costs ~0 ms
        t0 = time.perf_counter()
        assert await client.store(prompt="q2", embedding=V, response=RESPONSE, **SCOPE) is False
        assert time.perf_counter() - t0 < BOUND_S
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"{cache_process}/health")).json()
            assert health["status"] == "degraded" and health["redis"] == "unavailable"
            lookup = {"prompt": "q", "embedding": V.tolist(), **SCOPE}
            r = await http.post(f"{cache_process}/v1/cache/lookup", json=lookup)
            assert r.status_code == 503 and r.json()["error"]["code"].startswith("cache_")

        private_redis.start()  # empty: no persistence
        took = await _until_hit(patient, 15)
        assert took < 10
        sync = redis.Redis(port=private_redis.port, protocol=2)
        assert INDEX.encode() in sync.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
        sync.close()


async def test_redis_frozen_then_resumed(private_redis: RedisServer, cache_process: str) -> None:
    async with _patient(cache_process) as patient, _fast(cache_process) as client:
        await _until_hit(patient, 30)
        pid = private_redis.process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            times = await _timed_lookups(client, 8)
            assert max(times) < BOUND_S, times
            assert client.outcomes[CacheOutcome.TIMEOUT] + client.outcomes[CacheOutcome.UNAVAILABLE] >= 3
            t0 = time.perf_counter()
            await client.store(prompt="q3", embedding=V, response=RESPONSE, **SCOPE)
            assert time.perf_counter() - t0 < 1.5  # the store's own budget; it runs in the background anyway
        finally:
            os.kill(pid, signal.SIGCONT)
        took = await _until_hit(patient, 10)
        assert took < 5
