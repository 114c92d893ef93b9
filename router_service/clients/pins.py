"""The conversation pin store: one Redis key per conversation (`vsr:pin:<key>`, a small JSON value with a TTL).

Contract: never raises into the request path. A lookup that fails or runs past its deadline reports the store
unavailable (the request is routed statelessly and says so); a failed save is counted and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from router_service import metrics
from router_service.core.conversation import Pin, PinLookup

__all__ = ["PinStore"]

log = logging.getLogger(__name__)

PREFIX = "vsr:pin:"
_MAX_PENDING_SAVES = 1024


class PinStore:
    """Create in the app lifespan; `await close()` at shutdown."""

    def __init__(self, url: str, *, timeout_s: float = 0.05) -> None:
        self.timeout_s = timeout_s
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, max_connections=64
        )
        self._saves: set[asyncio.Task[None]] = set()

    async def lookup(self, key: str) -> PinLookup:
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self._redis.get(PREFIX + key)
        except (RedisError, OSError, TimeoutError) as e:
            metrics.PIN_STORE_ERRORS.labels(operation="lookup").inc()
            log.warning("conversation pin lookup failed: %s", type(e).__name__)
            return PinLookup(None, available=False)
        if raw is None:
            return PinLookup(None)
        try:
            data = json.loads(raw)
            return PinLookup(Pin(str(data["model"]), data.get("category")))
        except (ValueError, KeyError, TypeError):
            return PinLookup(None)  # an unreadable pin is replaced by this turn's

    def spawn_save(self, key: str, pin: Pin, ttl_seconds: int) -> None:
        """Store (or refresh) a pin in the background: the response does not wait for it. Bounded."""
        if len(self._saves) >= _MAX_PENDING_SAVES:
            metrics.PIN_STORE_ERRORS.labels(operation="save_dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._save(key, pin, ttl_seconds))
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)

    async def _save(self, key: str, pin: Pin, ttl_seconds: int) -> None:
        value = json.dumps({"model": pin.model, "category": pin.category})
        try:
            async with asyncio.timeout(max(self.timeout_s, 0.5)):
                await self._redis.set(PREFIX + key, value, ex=ttl_seconds)
        except (RedisError, OSError, TimeoutError) as e:
            metrics.PIN_STORE_ERRORS.labels(operation="save").inc()
            log.warning("conversation pin save failed: %s", type(e).__name__)

    async def close(self) -> None:
        if self._saves:
            await asyncio.wait(self._saves, timeout=2.0)
        await self._redis.aclose()
