"""Cache entries in Redis: exact get, KNN search within a scope, store with TTL, LRU eviction, invalidation.

Layout (prefix from settings, default `llmcache:`):
  `<prefix>e:<id>`  HASH  prompt, response (JSON), model, fp, tenant (TAG values), vec (float32),
                          created_at, ttl; the key expires after `ttl` seconds (refreshed on hit)
  `<prefix>lru`     ZSET  id -> last access time (store or hit); the oldest are evicted beyond max_entries
The id is a hash of (normalised prompt, scope), so an exact repeat is one HMGET.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from cache_service._redis import execute
from cache_service.codec import tenant_tag
from cache_service.errors import redis_errors
from cache_service.index import VECTOR_FIELD
from cache_service.settings import CacheSettings

__all__ = ["CacheRepository", "Entry", "NewEntry", "Scope", "SearchResult"]

_FIELDS = ("prompt", "response", "model", "tenant", "created_at", "ttl")
_INVALIDATE_PAGE = 500


@dataclass(frozen=True, slots=True)
class Scope:
    model: str
    fingerprint: str
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class NewEntry:
    entry_id: str
    prompt: str
    response: dict[str, Any]
    vector: npt.NDArray[np.float32]
    scope: Scope
    ttl: int


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: str
    prompt: str
    response_json: str
    """The cached chat.completion, as the JSON text it was stored as (passed through without re-parsing)."""
    model: str
    created_at: float
    ttl: int


@dataclass(frozen=True, slots=True)
class SearchResult:
    entry: Entry | None
    similarity: float | None
    """Cosine similarity of the nearest entry in scope (None: nothing in scope)."""


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _entry(entry_id: str, values: Sequence[Any]) -> Entry | None:
    prompt, response, model, _tenant, created_at, ttl = list(values)
    if response is None or prompt is None:  # expired or deleted between the index and the read
        return None
    return Entry(
        entry_id=entry_id,
        prompt=_s(prompt),
        response_json=_s(response),
        model=_s(model or b""),
        created_at=float(created_at or 0.0),
        ttl=int(ttl or 0),
    )


class CacheRepository:
    def __init__(self, client: aioredis.Redis, settings: CacheSettings) -> None:
        self._r = client
        self._s = settings
        self._knn_query = (
            f"(@model:{{$model}} @fp:{{$fp}} @tenant:{{$tenant}})"
            f"=>[KNN $k @{VECTOR_FIELD} $vec EF_RUNTIME $ef AS dist]"
        )

    def key(self, entry_id: str) -> str:
        return f"{self._s.entry_prefix}{entry_id}"

    async def get(self, entry_id: str) -> Entry | None:
        """The exact-match fast path."""
        with redis_errors("HMGET"):
            values = await self._r.hmget(self.key(entry_id), list(_FIELDS))
        return _entry(entry_id, values)

    async def search(
        self, vector: npt.NDArray[np.float32], scope: Scope, *, ef_runtime: int, k: int = 1
    ) -> SearchResult:
        """Nearest entry in scope (hybrid query: TAG pre-filter + HNSW KNN)."""
        params = {
            "model": scope.model,
            "fp": scope.fingerprint,
            "tenant": tenant_tag(scope.tenant),
            "k": k,
            "ef": ef_runtime,
            "vec": vector.astype("<f4", copy=False).tobytes(),
        }
        args: list[Any] = ["FT.SEARCH", self._s.index_name, self._knn_query, "PARAMS", 2 * len(params)]
        for name, value in params.items():
            args += [name, value]
        args += ["SORTBY", "dist", "ASC", "RETURN", 1 + len(_FIELDS), "dist", *_FIELDS]
        args += ["LIMIT", 0, k, "DIALECT", 2]
        with redis_errors("FT.SEARCH"):
            reply = await execute(self._r, *args)
        prefix_len = len(self._s.entry_prefix)
        for i in range(1, len(reply) - 1, 2):
            key, flat = _s(reply[i]), reply[i + 1]
            got = {_s(flat[j]): flat[j + 1] for j in range(0, len(flat) - 1, 2)}
            if "dist" not in got:
                continue
            similarity = 1.0 - float(got["dist"])
            entry = _entry(key[prefix_len:], [got.get(f) for f in _FIELDS])
            return SearchResult(entry, similarity)
        return SearchResult(None, None)

    def _mapping(self, entry: NewEntry, now: float) -> dict[FieldT, EncodableT]:
        return {
            "prompt": entry.prompt,
            "response": json.dumps(entry.response, ensure_ascii=False, separators=(",", ":")),
            "model": entry.scope.model,
            "fp": entry.scope.fingerprint,
            "tenant": tenant_tag(entry.scope.tenant),
            VECTOR_FIELD: entry.vector.astype("<f4", copy=False).tobytes(),
            "created_at": repr(now),
            "ttl": entry.ttl,
        }

    async def store(self, entry: NewEntry) -> int:
        """Write (or overwrite) one entry and evict beyond the size bound; returns how many were evicted."""
        now = time.time()
        key = self.key(entry.entry_id)
        mapping = self._mapping(entry, now)
        ttl, entry_id = entry.ttl, entry.entry_id
        with redis_errors("store"):
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, ttl)
                pipe.zadd(self._s.lru_key, {entry_id: now})
                pipe.zcard(self._s.lru_key)
                results = await pipe.execute()
        count = int(results[-1])
        if count > self._s.max_entries + self._s.effective_eviction_batch - 1:
            return await self.evict(count - self._s.max_entries)
        return 0

    async def store_many(self, entries: Sequence[NewEntry], *, batch: int = 500) -> None:
        """Bulk load (warm-up, benchmarks): pipelined writes, no eviction check until the next `store`."""
        for start in range(0, len(entries), batch):
            now = time.time()
            with redis_errors("store_many"):
                async with self._r.pipeline(transaction=False) as pipe:
                    for e in entries[start : start + batch]:
                        pipe.hset(self.key(e.entry_id), mapping=self._mapping(e, now))
                        pipe.expire(self.key(e.entry_id), e.ttl)
                        pipe.zadd(self._s.lru_key, {e.entry_id: now})
                    await pipe.execute()

    async def evict(self, n: int) -> int:
        """Drop the `n` least recently used entries (ZPOPMIN is atomic, so replicas never evict twice)."""
        if n <= 0:
            return 0
        with redis_errors("evict"):
            popped: list[tuple[bytes, float]] = await self._r.zpopmin(self._s.lru_key, n)  # type: ignore[assignment]
            if not popped:
                return 0
            await self._r.unlink(*[self.key(_s(pair[0])) for pair in popped])
        return len(popped)

    async def touch(self, entry_id: str, ttl: int) -> None:
        """A hit: refresh the TTL and the LRU position.

        Never HSET the entry here: any write to an indexed hash makes the query engine re-index it,
        which for HNSW is a delete and a re-insert of the vector (about a millisecond of Redis time).
        """
        with redis_errors("touch"):
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.expire(self.key(entry_id), ttl or self._s.ttl_seconds)
                pipe.zadd(self._s.lru_key, {entry_id: time.time()}, xx=True)
                await pipe.execute()

    async def delete_ids(self, entry_ids: Sequence[str]) -> int:
        if not entry_ids:
            return 0
        with redis_errors("invalidate"):
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.unlink(*[self.key(i) for i in entry_ids])
                pipe.zrem(self._s.lru_key, *entry_ids)
                deleted, _ = await pipe.execute()
        return int(deleted)

    async def invalidate(
        self, *, model: str | None, fingerprint: str | None, tenant: str | None, everything: bool = False
    ) -> int:
        """Delete every entry matching all given scope parts (or all entries), page by page."""
        clauses: list[str] = []
        params: list[Any] = []
        for name, value in (("model", model), ("fp", fingerprint)):
            if value is not None:
                clauses.append(f"@{name}:{{${name}}}")
                params += [name, value]
        if tenant is not None:
            clauses.append("@tenant:{$tenant}")
            params += ["tenant", tenant_tag(tenant or None)]
        if not clauses and not everything:
            return 0
        query = " ".join(clauses) if clauses else "*"
        prefix_len = len(self._s.entry_prefix)
        total = 0
        # Every page is deleted before the next query, so offset 0 always yields the next page; the cap
        # stops a loop that would not converge (e.g. entries re-stored as fast as they are deleted).
        for _ in range(self._s.max_entries // _INVALIDATE_PAGE + 10):
            args: list[Any] = ["FT.SEARCH", self._s.index_name, query]
            if params:
                args += ["PARAMS", len(params), *params]
            args += ["NOCONTENT", "LIMIT", 0, _INVALIDATE_PAGE, "DIALECT", 2]
            with redis_errors("invalidate"):
                reply = await execute(self._r, *args)
            ids = [_s(k)[prefix_len:] for k in reply[1:]]
            if not ids:
                break
            total += await self.delete_ids(ids)
        return total

    async def count(self) -> tuple[int, int]:
        """(entries in the index, members of the LRU set)."""
        with redis_errors("count"):
            info = await execute(self._r, "FT.INFO", self._s.index_name)
            lru = await self._r.zcard(self._s.lru_key)
        pairs = {_s(info[i]): info[i + 1] for i in range(0, len(info) - 1, 2)}
        return int(pairs.get("num_docs", 0)), int(lru)

    async def prune_lru(self, sample: int = 200) -> int:
        """Remove LRU members whose entry expired (bounded work per call); returns how many."""
        cutoff = time.time() - self._s.max_ttl_seconds
        with redis_errors("prune"):
            removed = int(await self._r.zremrangebyscore(self._s.lru_key, "-inf", cutoff))
            oldest = await self._r.zrange(self._s.lru_key, 0, sample - 1)
            if not oldest:
                return removed
            ids = [_s(m) for m in oldest]
            async with self._r.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.exists(self.key(i))
                exists = await pipe.execute()
            gone = [i for i, e in zip(ids, exists, strict=True) if not e]
            if gone:
                removed += int(await self._r.zrem(self._s.lru_key, *gone))
        return removed

    async def ping(self) -> bool:
        with redis_errors("PING"):
            return bool(await self._r.ping())
