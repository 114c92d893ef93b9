"""Per-tenant token buckets for the chat path (`triton_router.rate_limit`).

A bucket holds up to `burst` tokens and refills at `requests_per_second`; a request takes one token or is refused
with the seconds until one is back (the `Retry-After`). Buckets live in a bounded LRU map, so a flood of distinct
tenant values costs at most `max_tenants` entries.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from router_service.config import RateLimitConfig

__all__ = ["TenantRateLimiter"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TenantRateLimiter:
    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, tenant: str) -> float | None:
        """Take one token for `tenant`: None when admitted, else the seconds until a token is available."""
        cfg = self.config
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = _Bucket(float(cfg.burst), now)
            self._buckets[tenant] = bucket
            while len(self._buckets) > cfg.max_tenants:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(tenant)
            bucket.tokens = min(float(cfg.burst), bucket.tokens + (now - bucket.updated) * cfg.requests_per_second)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / cfg.requests_per_second
