"""Response-phase bookkeeping shared by ExtProc and the proxy: usage, cost, latency metrics, and the cache store."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from cache_service.client import CacheClient
from router_service import metrics
from router_service.config import RouterConfig
from router_service.core.reply import CacheScope
from wire.sse import assemble_stream, is_cacheable

__all__ = ["MAX_CAPTURE_BYTES", "ResponseTracker"]

log = logging.getLogger(__name__)

# Responses larger than this are passed through but neither cached nor parsed for usage (memory bound).
MAX_CAPTURE_BYTES = 4 * 1024 * 1024


@dataclass
class ResponseTracker:
    """Follows one upstream response, chunk by chunk, then records it."""

    model: str
    sent_at: float = field(default_factory=time.perf_counter)
    status: int = 0
    sse: bool = False
    first_chunk_at: float | None = None
    _buf: bytearray = field(default_factory=bytearray)
    _overflow: bool = False
    _chunks: int = 0

    def on_headers(self, status: int, content_type: str) -> None:
        self.status = status
        self.sse = content_type.startswith("text/event-stream")

    def on_chunk(self, data: bytes) -> None:
        if not data:
            return
        if self.first_chunk_at is None:
            self.first_chunk_at = time.perf_counter()
        self._chunks += data.count(b"data:") if self.sse else 1
        if self._overflow:
            return
        if len(self._buf) + len(data) > MAX_CAPTURE_BYTES:
            self._overflow = True
            self._buf.clear()
            return
        self._buf += data

    def completion(self) -> dict[str, Any] | None:
        """The complete chat.completion, or None (error, partial stream, too large, not JSON)."""
        if self.status != 200 or self._overflow or not self._buf:
            return None
        raw = bytes(self._buf)
        if self.sse:
            return assemble_stream(raw)
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        if not isinstance(parsed, dict) or parsed.get("object") != "chat.completion" or not parsed.get("choices"):
            return None
        return parsed

    def finish(self, cfg: RouterConfig, cache: CacheClient | None, scope: CacheScope | None) -> None:
        """Record metrics and, for a complete successful response that is not a refusal, store it in the cache (never
        blocking)."""
        done = time.perf_counter()
        model = metrics.model_label(cfg, self.model)
        if self.status >= 400:
            metrics.REQUEST_ERRORS.labels(model=model, reason=f"upstream_{self.status}").inc()
        metrics.COMPLETION_LATENCY.labels(model=model).observe(done - self.sent_at)
        completion = self.completion()
        if completion is None:
            return
        usage = completion.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        metrics.PROMPT_TOKENS.labels(model=model).inc(prompt_tokens)
        metrics.COMPLETION_TOKENS.labels(model=model).inc(completion_tokens)
        metrics.MODEL_TOKENS.labels(model=model).inc(prompt_tokens + completion_tokens)
        if usage:
            metrics.PROMPT_TOKENS_PER_REQUEST.labels(model=model).observe(prompt_tokens)
            metrics.COMPLETION_TOKENS_PER_REQUEST.labels(model=model).observe(completion_tokens)
        if self.first_chunk_at is not None:
            metrics.TTFT.labels(model=model).observe(self.first_chunk_at - self.sent_at)
            tokens = completion_tokens or self._chunks
            if self.sse and tokens > 1:
                metrics.TPOT.labels(model=model).observe((done - self.first_chunk_at) / (tokens - 1))
        pricing = cfg.pricing_for(self.model)
        if pricing is not None:
            cost = (prompt_tokens * pricing.prompt_per_1m + completion_tokens * pricing.completion_per_1m) / 1e6
            metrics.MODEL_COST.labels(model=model, currency=pricing.currency).inc(cost)
        if cache is not None and scope is not None and is_cacheable(completion):
            cache.spawn_store(
                prompt=scope.prompt,
                embedding=scope.embedding,
                model=scope.model,
                fingerprint=scope.fingerprint,
                tenant=scope.tenant,
                response=completion,
                ttl_seconds=cfg.semantic_cache.ttl_seconds or None,
            )
