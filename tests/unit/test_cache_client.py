"""CacheClient's failure handling against real sockets: nothing listening, and a server that never answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from cache_service.client import CacheClient, CacheOutcome, CircuitBreaker
from local_stack.components import free_port

EMB = np.ones(384, dtype=np.float32) / np.sqrt(384)
KW = {"prompt": "hi", "embedding": EMB, "model": "m", "fingerprint": "f", "tenant": None}


def test_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    b = CircuitBreaker(failure_threshold=3, cooldown_s=1.0, clock=lambda: now[0])
    for _ in range(2):
        b.record_failure()
    assert b.allow() and not b.is_open
    b.record_failure()
    assert b.is_open and not b.allow()
    now[0] = 1.01
    assert b.allow()  # the probe
    assert not b.allow()  # one probe per cool-down
    b.record_failure()
    assert not b.allow()
    now[0] = 2.5
    assert b.allow()
    b.record_success()
    assert not b.is_open and b.allow()


async def test_refused_connection_is_a_fast_none_then_circuit_open() -> None:
    client = CacheClient(f"http://127.0.0.1:{free_port()}", failure_threshold=3, cooldown_s=60)
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            assert await client.lookup(**KW) is None
            assert time.perf_counter() - t0 < 0.2
        assert client.last_outcome in (CacheOutcome.ERROR, CacheOutcome.TIMEOUT)
        assert client.breaker.is_open
        t0 = time.perf_counter()
        assert await client.lookup(**KW) is None
        assert client.outcomes[CacheOutcome.CIRCUIT_OPEN] == 1
        assert time.perf_counter() - t0 < 0.005
        assert await client.store(**KW, response={}) is False
        assert client.outcomes[CacheOutcome.CIRCUIT_OPEN] == 2
    finally:
        await client.close()


@pytest.fixture
async def black_hole() -> AsyncIterator[int]:
    """A TCP server that accepts connections and reads requests but never answers."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port
    for w in held:
        w.close()
    server.close()
    await server.wait_closed()


async def test_slow_service_lookup_gives_up_within_budget(black_hole: int) -> None:
    client = CacheClient(f"http://127.0.0.1:{black_hole}", timeout_s=0.02, failure_threshold=100)
    try:
        for _ in range(5):
            t0 = time.perf_counter()
            assert await client.lookup(**KW) is None
            elapsed = time.perf_counter() - t0
            assert client.last_outcome is CacheOutcome.TIMEOUT
            assert elapsed < 0.1, elapsed  # budget 20 ms; generous bound for a loaded CI machine
    finally:
        await client.close()


async def test_stores_are_bounded(black_hole: int) -> None:
    client = CacheClient(
        f"http://127.0.0.1:{black_hole}", store_timeout_s=0.3, max_pending_stores=4, failure_threshold=100
    )
    try:
        spawned = [client.spawn_store(**KW, response={"x": 1}) for _ in range(10)]
        assert spawned.count(True) == 4
        assert client.outcomes[CacheOutcome.DROPPED] == 6
        results = await asyncio.gather(*[client.store(**KW, response={}) for _ in range(3)])
        assert results == [False, False, False]  # the 4 slots are still taken
        await asyncio.sleep(0.5)
        assert client.outcomes[CacheOutcome.TIMEOUT] == 4
    finally:
        await client.close()


async def test_close_cancels_background_stores(black_hole: int) -> None:
    client = CacheClient(f"http://127.0.0.1:{black_hole}", store_timeout_s=30)
    assert client.spawn_store(**KW, response={})
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    await client.close()
    assert time.perf_counter() - t0 < 1.0


MISS = b'{"hit":false,"similarity":null,"took_ms":0.1}'


async def _answering_server(close_after: int) -> tuple[asyncio.Server, list[int]]:
    """An HTTP server answering every request with a miss, closing each connection after `close_after` answers
    (as a server whose keep-alive timeout passed would); returns the server and a per-connection answer count."""
    answered: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered.append(0)
        n = len(answered) - 1
        try:
            while answered[n] < close_after:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(MISS)
                )
                writer.write(MISS)
                answered[n] += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, answered


async def test_lookups_reuse_one_connection() -> None:
    server, answered = await _answering_server(close_after=1_000)
    client = CacheClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout_s=1.0)
    try:
        for _ in range(5):
            assert await client.lookup(**KW) is None
            assert client.last_outcome is CacheOutcome.MISS
        assert answered == [5]
    finally:
        await client.close()
        server.close()


async def test_a_connection_closed_by_the_server_is_replaced() -> None:
    server, answered = await _answering_server(close_after=1)
    client = CacheClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout_s=1.0)
    try:
        for _ in range(3):
            assert await client.lookup(**KW) is None
            assert client.last_outcome is CacheOutcome.MISS, client.outcomes
            await asyncio.sleep(0.05)
        assert answered == [1, 1, 1]
    finally:
        await client.close()
        server.close()
