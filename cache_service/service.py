"""The cache's behaviour, free of HTTP: lookup (exact fast path, then KNN in scope), store, invalidate,
stats, and the janitor that keeps the index present after a Redis restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cache_service.codec import decode_embedding, entry_id
from cache_service.errors import CacheError, IndexMissingError, InvalidRequestError, redis_errors
from cache_service.index import IndexSpec, IndexStatus, ensure_index
from cache_service.metrics import CacheMetrics
from cache_service.models import InvalidateRequest, LookupRequest, StoreRequest
from cache_service.repository import CacheRepository, Entry, NewEntry, Scope
from cache_service.settings import CacheSettings
from wire.sse import is_refusal

__all__ = ["CacheService", "LookupResult"]

log = logging.getLogger(__name__)
_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class LookupResult:
    entry: Entry | None
    similarity: float | None
    exact: bool
    took_ms: float
    touched: bool = False
    """A hit's TTL and LRU score were already refreshed (in the lookup's own Redis round trip)."""

    @property
    def hit(self) -> bool:
        return self.entry is not None


def _to_json(obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (valid in JSON escapes, not in UTF-8): keep them escaped
        text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text


class CacheService:
    """Owns the Redis client (created in `start`, i.e. in the app's lifespan) and the janitor task."""

    def __init__(self, settings: CacheSettings, metrics: CacheMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or CacheMetrics()
        self.spec = IndexSpec.from_settings(settings)
        self._redis: aioredis.Redis | None = None
        self._repo: CacheRepository | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._stopping = False
        self._wakeup = asyncio.Event()
        self.redis_ok = False
        self.index_ready = False
        self._migrated = False
        self.last_error: str | None = None
        # bound once: labels() per call is a dict lookup under a lock
        self._m_lookup = self.metrics.duration.labels(operation="lookup")
        self._m_exact = self.metrics.duration.labels(operation="exact")
        self._m_search = self.metrics.duration.labels(operation="search")
        self._m_exact_hits = self.metrics.hit_kinds.labels(kind="exact")
        self._m_semantic_hits = self.metrics.hit_kinds.labels(kind="semantic")
        self.counts: dict[str, int] = dict.fromkeys(
            ("lookups", "hits", "exact_hits", "misses", "stores", "evicted", "errors"), 0
        )

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self._redis = aioredis.Redis.from_url(
            s.redis_url,
            protocol=2,
            socket_timeout=s.redis_socket_timeout_s,
            socket_connect_timeout=min(s.redis_socket_timeout_s, 0.5),
            max_connections=s.redis_max_connections,
            # One immediate retry re-dials a connection that died with a Redis restart; never back off.
            retry=Retry(NoBackoff(), 1),
        )
        self._repo = CacheRepository(self._redis, s)
        self._stopping = False
        await self._check_index(migrate=True)  # best effort: a down Redis at start is retried by the janitor
        self._janitor = asyncio.create_task(self._janitor_loop(), name="cache-janitor")

    async def stop(self) -> None:
        self._stopping = True
        janitor, self._janitor = self._janitor, None
        if janitor is not None:
            # A cancel can be lost: redis-py sends with asyncio.wait_for, which on Python 3.11 swallows a cancel
            # that lands as the send completes (the janitor then ran on and shutdown hung, seen in CI). The loop
            # therefore also ends on `_stopping` once that Redis call returns, and the wait is bounded.
            janitor.cancel()
            await asyncio.wait({janitor}, timeout=_STOP_TIMEOUT_S)
            if not janitor.done():
                log.warning("cache: the janitor did not stop within %.0f s; leaving it", _STOP_TIMEOUT_S)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    @property
    def repo(self) -> CacheRepository:
        if self._repo is None:
            raise RuntimeError("CacheService.start() was not called")
        return self._repo

    # -- operations --------------------------------------------------------------------------------------

    def _vector(self, embedding: str | list[float]) -> npt.NDArray[np.float32]:
        dim = self.settings.embedding_dim
        try:
            if isinstance(embedding, str):
                return decode_embedding(embedding, dim)
            vec = np.asarray(embedding, dtype=np.float32)
            if vec.shape != (dim,):
                raise ValueError(f"embedding has {vec.size} values, the index expects {dim}")
            if not np.all(np.isfinite(vec)) or not np.any(vec):
                raise ValueError("embedding must be finite and non-zero")
            return vec
        except ValueError as e:
            raise InvalidRequestError(f"embedding: {e}", code="invalid_embedding") from e

    def _check_prompt(self, prompt: str) -> None:
        if len(prompt) > self.settings.max_prompt_chars:
            raise InvalidRequestError(
                f"prompt: longer than {self.settings.max_prompt_chars} characters", code="prompt_too_long"
            )

    def _failed(self, operation: str, err: CacheError) -> None:
        if isinstance(err, InvalidRequestError):
            return
        self.redis_ok = False
        self.counts["errors"] += 1
        self.last_error = err.message
        self.metrics.errors.labels(operation=operation, code=err.code).inc()
        if isinstance(err, IndexMissingError):
            self.index_ready = False
            self._wakeup.set()  # the janitor re-creates it now rather than at its next tick

    async def lookup(self, req: LookupRequest) -> LookupResult:
        """The exact-match fast path, else the KNN search in scope. A hit's TTL and LRU score are refreshed in
        the same Redis round trip (`lookup_script`) or, on the two-round-trip path, by `touch` after the
        response (`result.touched` is then False)."""
        self._check_prompt(req.prompt)
        vec = self._vector(req.embedding)
        s = self.settings
        eid = entry_id(req.prompt, model=req.model, fingerprint=req.fingerprint, tenant=req.tenant)
        threshold = s.default_threshold if req.threshold is None else req.threshold
        ef = req.ef_runtime or s.ef_runtime
        t0 = time.perf_counter()
        try:
            with redis_errors("lookup"):
                async with asyncio.timeout(s.lookup_timeout_s):
                    if s.lookup_script:
                        found = await self.repo.lookup(
                            eid,
                            vec.astype("<f4", copy=False).tobytes(),
                            Scope(req.model, req.fingerprint, req.tenant),
                            threshold=threshold,
                            ef_runtime=ef,
                        )
                        sim = found.similarity
                        hit = found.entry is not None and sim is not None and (found.exact or sim >= threshold)
                        result = LookupResult(found.entry if hit else None, found.similarity, found.exact, 0.0, True)
                    else:
                        result = await self._lookup_two_trips(eid, vec, req, threshold, ef, t0)
        except CacheError as e:
            self._failed("lookup", e)
            raise
        took = time.perf_counter() - t0
        if not self.redis_ok:  # back after an outage: let the janitor check the index right away
            self.redis_ok = True
            self._wakeup.set()
        self._m_lookup.observe(took)
        self.counts["lookups"] += 1
        if result.hit:
            self.counts["hits"] += 1
            self.counts["exact_hits"] += result.exact
            self.metrics.hits.inc()
            (self._m_exact_hits if result.exact else self._m_semantic_hits).inc()
        else:
            self.counts["misses"] += 1
            self.metrics.misses.inc()
        return LookupResult(result.entry, result.similarity, result.exact, took * 1000, result.touched)

    async def _lookup_two_trips(
        self, eid: str, vec: npt.NDArray[np.float32], req: LookupRequest, threshold: float, ef: int, t0: float
    ) -> LookupResult:
        probe = await self.repo.probe(eid)
        t1 = time.perf_counter()
        self._m_exact.observe(t1 - t0)
        if probe.entry is not None:
            return LookupResult(probe.entry, 1.0, True, 0.0, False)
        if probe.scope_size == 0:  # nothing stored in this scope: no search needed
            return LookupResult(None, None, False, 0.0, False)
        found = await self.repo.search(
            vec,
            Scope(req.model, req.fingerprint, req.tenant),
            ef_runtime=ef,
            exhaustive=self.repo.exhaustive(probe.scope_size, probe.total),
        )
        self._m_search.observe(time.perf_counter() - t1)
        hit = found.similarity is not None and found.similarity >= threshold
        return LookupResult(found.entry if hit else None, found.similarity, False, 0.0, False)

    async def touch(self, entry: Entry) -> None:
        """Refresh TTL and LRU position after a hit; runs after the response went out; failures are logged."""
        t0 = time.perf_counter()
        try:
            with redis_errors("touch"):
                async with asyncio.timeout(self.settings.store_timeout_s):
                    await self.repo.touch(entry.entry_id, entry.ttl)
        except CacheError as e:
            self._failed("touch", e)
            log.debug("refresh after hit failed: %s", e)
            return
        self.metrics.duration.labels(operation="touch").observe(time.perf_counter() - t0)

    async def store(self, req: StoreRequest) -> tuple[str, int]:
        """Returns (entry id, entries evicted). A refusal (content_filter finish, `refusal` message) is rejected."""
        self._check_prompt(req.prompt)
        if is_refusal(req.response):
            raise InvalidRequestError("response: a refusal (content_filter) is never cached", code="not_cacheable")
        vec = self._vector(req.embedding)
        s = self.settings
        ttl = req.ttl_seconds or s.ttl_seconds
        if ttl > s.max_ttl_seconds:
            raise InvalidRequestError(f"ttl_seconds: at most {s.max_ttl_seconds}", code="invalid_field")
        scope = Scope(req.model, req.fingerprint, req.tenant)
        eid = entry_id(req.prompt, model=req.model, fingerprint=req.fingerprint, tenant=req.tenant)
        response_json = _to_json(req.response)
        t0 = time.perf_counter()
        try:
            with redis_errors("store"):
                async with asyncio.timeout(s.store_timeout_s):
                    evicted = await self.repo.store(NewEntry(eid, req.prompt, response_json, vec, scope, ttl))
        except CacheError as e:
            self._failed("store", e)
            raise
        self.metrics.duration.labels(operation="store").observe(time.perf_counter() - t0)
        self.metrics.stores.inc()
        self.counts["stores"] += 1
        if evicted:
            self.counts["evicted"] += evicted
            self.metrics.evictions.inc(evicted)
        return eid, evicted

    async def invalidate(self, req: InvalidateRequest) -> int:
        t0 = time.perf_counter()
        try:
            with redis_errors("invalidate"):
                async with asyncio.timeout(max(self.settings.store_timeout_s, 30.0)):
                    deleted = await self._invalidate(req)
        except CacheError as e:
            self._failed("invalidate", e)
            raise
        self.metrics.duration.labels(operation="invalidate").observe(time.perf_counter() - t0)
        return deleted

    async def _invalidate(self, req: InvalidateRequest) -> int:
        if req.entry_id is not None:
            return await self.repo.delete_ids([req.entry_id])
        if req.prompt is not None:
            if req.model is None or req.fingerprint is None:
                raise InvalidRequestError("prompt needs model and fingerprint", code="invalid_field")
            eid = entry_id(req.prompt, model=req.model, fingerprint=req.fingerprint, tenant=req.tenant)
            return await self.repo.delete_ids([eid])
        if req.all:
            return await self.repo.invalidate(model=None, fingerprint=None, tenant=None, everything=True)
        if req.model is None and req.fingerprint is None and req.tenant is None:
            raise InvalidRequestError(
                "name what to invalidate: entry_id, prompt+model+fingerprint, model/fingerprint/tenant, all",
                code="invalid_field",
            )
        return await self.repo.invalidate(model=req.model, fingerprint=req.fingerprint, tenant=req.tenant)

    async def stats(self) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {
            "redis": "ok" if self.redis_ok else "unavailable",
            "index": {
                "name": s.index_name,
                "ready": self.index_ready,
                "dim": s.embedding_dim,
                "algorithm": "HNSW",
                "distance_metric": "COSINE",
                "m": s.hnsw_m,
                "ef_construction": s.hnsw_ef_construction,
                "ef_runtime": s.ef_runtime,
                "exact_search_max": s.exact_search_max,
            },
            "default_threshold": s.default_threshold,
            "ttl_seconds": s.ttl_seconds,
            "max_entries": s.max_entries,
            "counters": dict(self.counts),
            "entries": None,
            "lru_size": None,
        }
        try:
            with redis_errors("stats"):
                async with asyncio.timeout(1.0):
                    entries, lru = await self.repo.count()
            out["entries"], out["lru_size"] = entries, lru
            self.metrics.entries.set(entries)
        except CacheError as e:
            self._failed("stats", e)
            out["error"] = e.message
        return out

    # -- background --------------------------------------------------------------------------------------

    async def _check_index(self, *, migrate: bool = False) -> None:
        """Ensure the index exists (migrating it if this is the first check that reached Redis), update the
        entries gauge, trim the LRU set; never raises."""
        was_ok = self.redis_ok
        try:
            with redis_errors("janitor"):
                async with asyncio.timeout(max(5.0, self.settings.store_timeout_s)):
                    status = await ensure_index(
                        self._redis_client(),
                        self.spec,
                        self.settings.lru_key,
                        migrate=migrate or not self._migrated,
                    )
                    self._migrated = True
                    if status is not IndexStatus.EXISTS:
                        self.metrics.index_creations.inc()
                    self.index_ready = True
                    entries, _ = await self.repo.count()
                    self.metrics.entries.set(entries)
                    await self.repo.prune()
        except CacheError as e:
            self.redis_ok = False
            self.last_error = e.message
            if was_ok or self._janitor is None:
                log.warning("cache: Redis unavailable (%s); lookups miss until it is back", e.message)
            return
        if not was_ok:
            log.info("cache: Redis reachable at %s, index %r ready", self.settings.redis_url, self.spec.name)
        self.redis_ok = True

    def _redis_client(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("CacheService.start() was not called")
        return self._redis

    async def _janitor_loop(self) -> None:
        interval = self.settings.janitor_interval_s
        while not self._stopping:
            # While Redis is away, look again every second at most (and at least): recovery is quick, no spin.
            wait = interval if self.redis_ok and self.index_ready else min(interval, 1.0)
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancel that lands just as the
            # event is set.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()
            self._wakeup.clear()
            await self._check_index()
            await asyncio.sleep(0.05)  # a burst of wake-ups costs at most 20 checks a second
