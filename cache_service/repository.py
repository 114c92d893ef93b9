"""Cache entries in Redis: exact get, KNN search within a scope, store with TTL, LRU eviction, invalidation.

Layout (prefix from settings, default `llmcache:`):
  `<prefix>e:<id>`     HASH  prompt, response (JSON), model, fp, tenant (TAG values), vec (float32),
                             created_at, ttl; the key expires after `ttl` seconds (refreshed on hit)
  `<prefix>lru`        ZSET  id -> last access time (store or hit); the oldest are evicted beyond max_entries
  `<prefix>s:<scope>`  ZSET  ids of one scope; its size picks the search strategy (see `search`)
The id is the scope id followed by a hash of the normalised prompt, so an exact repeat is one HMGET and an
id names its scope set. Members of expired entries linger in the sets until the janitor's `prune` (or an
eviction) removes them; they only make the counts a little high.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from cache_service._redis import execute
from cache_service.codec import SCOPE_ID_LEN, tenant_tag
from cache_service.errors import redis_errors
from cache_service.index import VECTOR_FIELD
from cache_service.settings import CacheSettings

__all__ = ["CacheRepository", "Entry", "Lookup", "NewEntry", "Probe", "Scope", "SearchResult"]

_FIELDS = ("prompt", "response", "model", "tenant", "created_at", "ttl")
_PAGE = 500
_FILTER = "(@model:{$model} @fp:{$fp} @tenant:{$tenant})"
# The engine's own choice between the two hybrid modes is poor on this build: below ~30k entries it picks
# ad-hoc brute force even when the filter matches everything (3 ms at 10k, 9 ms at 20k, where HNSW takes
# 0.3-0.9 ms). The scope size is known (one ZCARD in the exact-match round trip), so the choice is ours.
_KNN_HNSW = f"{_FILTER}=>[KNN $k @{VECTOR_FIELD} $vec HYBRID_POLICY BATCHES EF_RUNTIME $ef AS dist]"
_KNN_EXACT = f"{_FILTER}=>[KNN $k @{VECTOR_FIELD} $vec HYBRID_POLICY ADHOC_BF AS dist]"

# The whole lookup in one Redis round trip: the exact-match read, then (on a miss) the scope sizes, the choice
# of strategy (`CacheRepository.exhaustive`, the same rule) and the KNN search, then the refresh of a hit (TTL
# and LRU score; never a write to the hash, which would re-index its vector). Two round trips and a third for
# the refresh cost ~0.3-0.5 ms more per lookup through redis-py; the script adds ~20 us of Redis time.
# KEYS: entry key, scope set, LRU set.
# ARGV: index, entry id, now, default ttl, threshold, exact_search_max, ef_runtime, model, fp, tenant tag, vec.
# Reply: {1, values of _FIELDS} exact hit | {0} empty scope | {2, key, {field, value, ...}, exhaustive} searched
# (key false: nothing found).
_LOOKUP_LUA = (
    """
local fields = {'prompt', 'response', 'model', 'tenant', 'created_at', 'ttl'}
local function refresh(key, id, ttl)
  ttl = tonumber(ttl) or 0
  if ttl <= 0 then ttl = tonumber(ARGV[4]) end
  redis.call('EXPIRE', key, ttl)
  redis.call('ZADD', KEYS[3], 'XX', ARGV[3], id)
end
local v = redis.call('HMGET', KEYS[1], unpack(fields))
if v[1] and v[2] then
  refresh(KEYS[1], ARGV[2], v[6])
  return {1, v}
end
local n = redis.call('ZCARD', KEYS[2])
if n == 0 then return {0} end
local limit = tonumber(ARGV[6])
local exhaustive = n <= limit or (n <= 8 * limit and n * 100 < redis.call('ZCARD', KEYS[3]))
local r
local tail = {'SORTBY', 'dist', 'ASC', 'RETURN', 7, 'dist', 'prompt', 'response', 'model', 'tenant',
  'created_at', 'ttl', 'LIMIT', 0, 1, 'DIALECT', 2}
if exhaustive then
  r = redis.call('FT.SEARCH', ARGV[1], '"""
    + _KNN_EXACT
    + """', 'PARAMS', 10, 'model', ARGV[8],
    'fp', ARGV[9], 'tenant', ARGV[10], 'k', 1, 'vec', ARGV[11], unpack(tail))
else
  r = redis.call('FT.SEARCH', ARGV[1], '"""
    + _KNN_HNSW
    + """', 'PARAMS', 12, 'model', ARGV[8],
    'fp', ARGV[9], 'tenant', ARGV[10], 'k', 1, 'vec', ARGV[11], 'ef', ARGV[7], unpack(tail))
end
local ex = exhaustive and 1 or 0
local key, flat = r[2], r[3]
if not key then return {2, false, {}, ex} end
local got = {}
for i = 1, #flat - 1, 2 do got[flat[i]] = flat[i + 1] end
if got['dist'] and got['prompt'] and got['response'] and 1.0 - tonumber(got['dist']) >= tonumber(ARGV[5]) then
  refresh(key, string.sub(key, string.len(KEYS[1]) - string.len(ARGV[2]) + 1), got['ttl'])
end
return {2, key, flat, ex}
"""
)


@dataclass(frozen=True, slots=True)
class Scope:
    model: str
    fingerprint: str
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class NewEntry:
    entry_id: str
    prompt: str
    response_json: str
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
class Probe:
    """The exact-match round trip: the entry under the exact key, and how many entries the scope holds."""

    entry: Entry | None
    scope_size: int
    total: int


@dataclass(frozen=True, slots=True)
class Lookup:
    """One lookup's answer from Redis: an exact hit, or the nearest entry in scope (searched only when the scope
    is not empty), with whether a hit's TTL and LRU score were refreshed in the same round trip."""

    entry: Entry | None
    similarity: float | None
    exact: bool
    searched: bool
    refreshed: bool


@dataclass(frozen=True, slots=True)
class SearchResult:
    entry: Entry | None
    similarity: float | None
    """Cosine similarity of the nearest entry in scope (None: nothing in scope)."""
    exhaustive: bool = False
    """Searched by brute force over the scope (exact) rather than through HNSW."""


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
        self._lookup_script = client.register_script(_LOOKUP_LUA)

    def key(self, entry_id: str) -> str:
        return f"{self._s.entry_prefix}{entry_id}"

    def scope_key(self, entry_id: str) -> str:
        """The scope set of an entry (or of a scope id: an entry id starts with it)."""
        return f"{self._s.key_prefix}s:{entry_id[:SCOPE_ID_LEN]}"

    # -- lookups -----------------------------------------------------------------------------------------

    async def probe(self, entry_id: str) -> Probe:
        """The exact-match fast path, and the scope's size, in one round trip."""
        with redis_errors("probe"):
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.hmget(self.key(entry_id), list(_FIELDS))
                pipe.zcard(self.scope_key(entry_id))
                pipe.zcard(self._s.lru_key)
                values, scope_size, total = await pipe.execute()
        return Probe(_entry(entry_id, values), int(scope_size), int(total))

    async def lookup(self, entry_id: str, vector: bytes, scope: Scope, *, threshold: float, ef_runtime: int) -> Lookup:
        """The exact-match fast path, else the KNN search in scope, and the refresh of a hit: one round trip
        (a server-side script; redis-py re-loads it by itself after a Redis restart)."""
        s = self._s
        key = self.key(entry_id)
        args: list[EncodableT] = [
            s.index_name,
            entry_id,
            repr(time.time()),
            s.ttl_seconds,
            repr(float(threshold)),
            s.exact_search_max,
            ef_runtime,
            scope.model,
            scope.fingerprint,
            tenant_tag(scope.tenant),
            vector,
        ]
        with redis_errors("lookup"):
            reply = await self._lookup_script(keys=[key, self.scope_key(entry_id), s.lru_key], args=args)
        kind = int(reply[0])
        if kind == 1:
            return Lookup(_entry(entry_id, reply[1]), 1.0, True, False, True)
        if kind == 0:
            return Lookup(None, None, False, False, False)
        found_key, flat = reply[1], reply[2]
        if found_key is None:
            return Lookup(None, None, False, True, False)
        got = {_s(flat[j]): flat[j + 1] for j in range(0, len(flat) - 1, 2)}
        if "dist" not in got:
            return Lookup(None, None, False, True, False)
        similarity = 1.0 - float(got["dist"])
        entry = _entry(_s(found_key)[len(s.entry_prefix) :], [got.get(f) for f in _FIELDS])
        refreshed = entry is not None and similarity >= threshold
        return Lookup(entry, similarity, False, True, refreshed)

    def exhaustive(self, scope_size: int, total: int) -> bool:
        """Brute force over a small scope (exact, cheap); HNSW for a large one. A scope that is a small
        share of a large index also goes brute force: HNSW batches would walk most of the graph for it."""
        limit = self._s.exact_search_max
        return scope_size <= limit or (scope_size <= 8 * limit and scope_size * 100 < total)

    async def search(
        self, vector: npt.NDArray[np.float32], scope: Scope, *, ef_runtime: int, exhaustive: bool, k: int = 1
    ) -> SearchResult:
        """Nearest entry in scope: a hybrid query, TAG pre-filter + KNN."""
        params: dict[str, Any] = {
            "model": scope.model,
            "fp": scope.fingerprint,
            "tenant": tenant_tag(scope.tenant),
            "k": k,
            "vec": vector.astype("<f4", copy=False).tobytes(),
        }
        if not exhaustive:
            params["ef"] = ef_runtime
        query = _KNN_EXACT if exhaustive else _KNN_HNSW
        args: list[Any] = ["FT.SEARCH", self._s.index_name, query, "PARAMS", 2 * len(params)]
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
            entry = _entry(key[prefix_len:], [got.get(f) for f in _FIELDS])
            return SearchResult(entry, 1.0 - float(got["dist"]), exhaustive)
        return SearchResult(None, None, exhaustive)

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

    # -- writes ------------------------------------------------------------------------------------------

    def _write(self, pipe: Any, entry: NewEntry, now: float) -> None:
        mapping: dict[FieldT, EncodableT] = {
            "prompt": entry.prompt,
            "response": entry.response_json,
            "model": entry.scope.model,
            "fp": entry.scope.fingerprint,
            "tenant": tenant_tag(entry.scope.tenant),
            VECTOR_FIELD: entry.vector.astype("<f4", copy=False).tobytes(),
            "created_at": repr(now),
            "ttl": entry.ttl,
        }
        key = self.key(entry.entry_id)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, entry.ttl)
        pipe.zadd(self._s.lru_key, {entry.entry_id: now})
        pipe.zadd(self.scope_key(entry.entry_id), {entry.entry_id: now})

    async def store(self, entry: NewEntry) -> int:
        """Write (or overwrite) one entry and evict beyond the size bound; returns how many were evicted."""
        with redis_errors("store"):
            async with self._r.pipeline(transaction=False) as pipe:
                self._write(pipe, entry, time.time())
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
                        self._write(pipe, e, now)
                    await pipe.execute()

    async def evict(self, n: int) -> int:
        """Drop the `n` least recently used entries (ZPOPMIN is atomic, so replicas never evict twice)."""
        if n <= 0:
            return 0
        with redis_errors("evict"):
            popped: list[tuple[bytes, float]] = await self._r.zpopmin(self._s.lru_key, n)  # type: ignore[assignment]
            await self._forget([_s(member) for member, _ in popped])
        return len(popped)

    async def _forget(self, entry_ids: Sequence[str]) -> int:
        """Delete entries and their scope-set members (the caller already took them out of the LRU set)."""
        if not entry_ids:
            return 0
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.unlink(*[self.key(i) for i in entry_ids])
            for i in entry_ids:
                pipe.zrem(self.scope_key(i), i)
            results = await pipe.execute()
        return int(results[0])

    async def delete_ids(self, entry_ids: Sequence[str]) -> int:
        if not entry_ids:
            return 0
        with redis_errors("invalidate"):
            await self._r.zrem(self._s.lru_key, *entry_ids)
            return await self._forget(entry_ids)

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
        for _ in range(self._s.max_entries // _PAGE + 10):
            args: list[Any] = ["FT.SEARCH", self._s.index_name, query]
            if params:
                args += ["PARAMS", len(params), *params]
            args += ["NOCONTENT", "LIMIT", 0, _PAGE, "DIALECT", 2]
            with redis_errors("invalidate"):
                reply = await execute(self._r, *args)
            ids = [_s(k)[prefix_len:] for k in reply[1:]]
            if not ids:
                break
            total += await self.delete_ids(ids)
        return total

    # -- housekeeping ------------------------------------------------------------------------------------

    async def count(self) -> tuple[int, int]:
        """(entries in the index, members of the LRU set)."""
        with redis_errors("count"):
            info = await execute(self._r, "FT.INFO", self._s.index_name)
            lru = await self._r.zcard(self._s.lru_key)
        pairs = {_s(info[i]): info[i + 1] for i in range(0, len(info) - 1, 2)}
        return int(pairs.get("num_docs", 0)), int(lru)

    async def prune(self, sample: int = _PAGE, rounds: int = 10) -> int:
        """Take expired entries out of the LRU and scope sets, oldest first, in bounded work per call.

        An entry can only have expired if it was not touched for its TTL, so expired members gather at
        the old end of the LRU set; a sample with no expired member ends the sweep."""
        removed = 0
        cutoff = time.time() - self._s.max_ttl_seconds
        with redis_errors("prune"):
            for _ in range(rounds):
                oldest = [_s(m) for m in await self._r.zrange(self._s.lru_key, 0, sample - 1)]
                if not oldest:
                    break
                async with self._r.pipeline(transaction=False) as pipe:
                    for i in oldest:
                        pipe.exists(self.key(i))
                    exists = await pipe.execute()
                gone = [i for i, e in zip(oldest, exists, strict=True) if not e]
                if not gone:
                    break
                await self._r.zrem(self._s.lru_key, *gone)
                await self._forget(gone)
                removed += len(gone)
            # members older than any TTL allows are gone for sure (bounds the set if entries vanish
            # without expiring, e.g. deleted by hand)
            stale = [_s(m) for m in await self._r.zrangebyscore(self._s.lru_key, "-inf", cutoff, 0, sample)]
            if stale:
                await self._r.zrem(self._s.lru_key, *stale)
                await self._forget(stale)
                removed += len(stale)
        return removed
