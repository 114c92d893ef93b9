"""Typed shims over redis-py's asyncio client."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

__all__ = ["execute"]


async def execute(client: aioredis.Redis, *args: Any) -> Any:
    """A raw command (FT.* has no typed wrapper in redis.asyncio)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]
