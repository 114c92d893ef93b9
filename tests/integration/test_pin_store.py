"""The conversation pin store against a real Valkey: round trip with TTL, and the never-raises contract when Redis
is not there (the turn is routed statelessly, within the lookup deadline)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from local_stack.components import free_port
from router_service.clients.pins import PREFIX, PinStore
from router_service.core.conversation import Pin
from tests.integration.conftest import RedisServer

pytestmark = pytest.mark.integration


def test_round_trip_with_ttl(redis_server: RedisServer) -> None:
    async def main() -> None:
        store = PinStore(redis_server.url, timeout_s=0.5)
        try:
            assert (await store.lookup("k-none")).pin is None
            store.spawn_save("k1", Pin("qwen3-32b", "math"), ttl_seconds=120)
            await asyncio.sleep(0.2)
            found = await store.lookup("k1")
            assert found.available and found.pin == Pin("qwen3-32b", "math")
            store.spawn_save("k2", Pin("qwen3-1.7b", None), ttl_seconds=120)
        finally:
            await store.close()  # waits for pending saves

    asyncio.run(main())
    r = redis.Redis(port=redis_server.port)
    assert 0 < r.ttl(PREFIX + "k1") <= 120  # type: ignore[operator]
    assert r.get(PREFIX + "k2") == b'{"model": "qwen3-1.7b", "category": null}'


def test_an_unreadable_pin_is_no_pin(redis_server: RedisServer) -> None:
    redis.Redis(port=redis_server.port).set(PREFIX + "bad", b"not json")

    async def main() -> None:
        store = PinStore(redis_server.url, timeout_s=0.5)
        try:
            found = await store.lookup("bad")
            assert found.available and found.pin is None
        finally:
            await store.close()

    asyncio.run(main())


def test_no_redis_means_unavailable_within_the_deadline() -> None:
    async def main() -> None:
        store = PinStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.05)
        try:
            started = time.perf_counter()
            found = await store.lookup("k")
            assert not found.available and found.pin is None
            assert time.perf_counter() - started < 1.0
            store.spawn_save("k", Pin("m", None), ttl_seconds=10)  # counted, never raised
        finally:
            await store.close()

    asyncio.run(main())
