"""Passive health of the backend endpoints: the router's own circuit breaker, shared by both transports.

An endpoint that failed before its first byte `failure_threshold` times in a row is skipped for `cooldown_s`:
requests go straight to the decision's next candidate whose endpoint is healthy. After the cooldown one request
tries it again (half-open); a success closes the breaker, a failure re-opens it.

Only what says the endpoint is unwell counts: a refused, reset or timed-out connection, a 502, 503 or 504, and a
500 (or another 5xx) that repeats across different requests. A 5xx of that last kind counts once per distinct
request body in a failure streak: one malformed request that makes a backend fail, sent again and again, cannot
eject the endpoint and move other traffic to another model; the same failure for different requests does. Any
answer below 500 (a 4xx is the backend judging the request) closes the streak.

Why the router and not Envoy's outlier detection: Envoy reaches the backends through an ORIGINAL_DST cluster, whose
only host for a request is the one the router names in `x-vsr-destination-endpoint`. Outlier detection could eject
that host, but then Envoy has no other host to pick and answers 503; only the router knows the next candidate
model (and that its body needs a different `model`). So the router keeps the health and chooses around it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from router_service import metrics

__all__ = ["UNWELL_STATUSES", "EndpointHealth"]

UNWELL_STATUSES = frozenset({502, 503, 504})
"""Statuses that say the endpoint (or the way to it) is unwell, whatever the request."""
MAX_REMEMBERED_REQUESTS = 256
"""Request digests kept per endpoint in a failure streak (memory bound)."""


@dataclass
class _State:
    failures: int = 0
    open_until: float | None = None
    failed_requests: set[str] = field(default_factory=set)
    """Digests of the request bodies whose 500s were counted in the current streak."""


class EndpointHealth:
    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 10.0,
        max_endpoints: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.max_endpoints = max_endpoints
        self._clock = clock
        self._states: dict[str, _State] = {}

    def healthy(self, endpoint: str) -> bool:
        """False while the endpoint's breaker is open; a closed or half-open breaker lets the request through."""
        state = self._states.get(endpoint)
        if state is None or state.open_until is None:
            return True
        if self._clock() >= state.open_until:
            state.open_until = self._clock() + self.cooldown_s  # half-open: this request probes, others wait
            return True
        return False

    def record_success(self, endpoint: str) -> None:
        """The endpoint answered below 500: the failure streak ends."""
        state = self._states.get(endpoint)
        if state is not None and (state.failures or state.open_until is not None):
            state.failures, state.open_until = 0, None
            state.failed_requests.clear()
            metrics.ENDPOINT_EJECTED.labels(endpoint=endpoint).set(0)

    def record_status(self, endpoint: str, status: int, body: Mapping[str, Any] | None) -> None:
        """The endpoint answered `status` to a request with `body` (before its first byte reached the client)."""
        if status < 500:
            self.record_success(endpoint)
        elif status in UNWELL_STATUSES:
            self.record_failure(endpoint)
        else:
            state = self._state(endpoint)
            digest = _digest(body)
            if digest not in state.failed_requests:  # the same request failing again says nothing new
                if len(state.failed_requests) >= MAX_REMEMBERED_REQUESTS:
                    state.failed_requests.clear()
                state.failed_requests.add(digest)
                self.record_failure(endpoint)

    def record_failure(self, endpoint: str) -> None:
        """A failure that says the endpoint is unwell: no connection, a timeout, a 502/503/504."""
        state = self._state(endpoint)
        state.failures += 1
        if state.open_until is not None or state.failures >= self.failure_threshold:
            state.open_until = self._clock() + self.cooldown_s
            metrics.ENDPOINT_EJECTED.labels(endpoint=endpoint).set(1)

    def _state(self, endpoint: str) -> _State:
        state = self._states.get(endpoint)
        if state is None:
            if len(self._states) >= self.max_endpoints:
                self._states.pop(next(iter(self._states)))
            state = self._states[endpoint] = _State()
        return state


def _digest(body: Mapping[str, Any] | None) -> str:
    """A request body's identity (computed only for a failed request): the same JSON gives the same digest."""
    raw = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "replace")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()
