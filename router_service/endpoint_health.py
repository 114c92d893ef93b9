"""Passive health of the backend endpoints: the router's own circuit breaker, shared by both transports.

An endpoint that failed before its first byte (refused, reset, timed out, or a 5xx) `failure_threshold` times in a
row is skipped for `cooldown_s`: requests go straight to the decision's next candidate whose endpoint is healthy.
After the cooldown one request tries it again (half-open); a success closes the breaker, a failure re-opens it.

Why the router and not Envoy's outlier detection: Envoy reaches the backends through an ORIGINAL_DST cluster, whose
only host for a request is the one the router names in `x-vsr-destination-endpoint`. Outlier detection could eject
that host, but then Envoy has no other host to pick and answers 503; only the router knows the next candidate
model (and that its body needs a different `model`). So the router keeps the health and chooses around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from router_service import metrics

__all__ = ["EndpointHealth"]


@dataclass
class _State:
    failures: int = 0
    open_until: float | None = None


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
        state = self._states.get(endpoint)
        if state is not None and (state.failures or state.open_until is not None):
            state.failures, state.open_until = 0, None
            metrics.ENDPOINT_EJECTED.labels(endpoint=endpoint).set(0)

    def record_failure(self, endpoint: str) -> None:
        state = self._states.get(endpoint)
        if state is None:
            if len(self._states) >= self.max_endpoints:
                self._states.pop(next(iter(self._states)))
            state = self._states[endpoint] = _State()
        state.failures += 1
        if state.open_until is not None or state.failures >= self.failure_threshold:
            state.open_until = self._clock() + self.cooldown_s
            metrics.ENDPOINT_EJECTED.labels(endpoint=endpoint).set(1)
