"""The Redis Query Engine index: its schema, creating or migrating it at start and after a Redis restart."""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from cache_service._redis import execute
from cache_service.errors import redis_errors
from cache_service.settings import CacheSettings

__all__ = ["TAG_SEPARATOR", "IndexSpec", "IndexStatus", "ensure_index", "index_info"]

log = logging.getLogger(__name__)

# Model names and tenants may hold commas or spaces: a control character separates tag values instead
# (the API rejects control characters in them), and values are passed as query PARAMS, never spliced in.
TAG_SEPARATOR = "\x1f"
TAG_FIELDS = ("model", "fp", "tenant")
VECTOR_FIELD = "vec"


class IndexStatus(enum.StrEnum):
    EXISTS = "exists"
    CREATED = "created"
    RECREATED = "recreated"


@dataclass(frozen=True, slots=True)
class IndexSpec:
    name: str
    prefix: str
    dim: int
    m: int
    ef_construction: int

    @classmethod
    def from_settings(cls, s: CacheSettings) -> IndexSpec:
        return cls(s.index_name, s.entry_prefix, s.embedding_dim, s.hnsw_m, s.hnsw_ef_construction)

    def create_args(self) -> list[str | int]:
        args: list[str | int] = ["FT.CREATE", self.name, "ON", "HASH", "PREFIX", 1, self.prefix, "SCHEMA"]
        for tag in TAG_FIELDS:
            args += [tag, "TAG", "SEPARATOR", TAG_SEPARATOR, "CASESENSITIVE"]
        args += [VECTOR_FIELD, "VECTOR", "HNSW", 10, "TYPE", "FLOAT32", "DIM", self.dim]
        args += ["DISTANCE_METRIC", "COSINE", "M", self.m, "EF_CONSTRUCTION", self.ef_construction]
        return args

    def signature(self) -> dict[str, Any]:
        """What FT.INFO must report for the live index to count as this one."""
        sig: dict[str, Any] = {"prefixes": [self.prefix]}
        for tag in TAG_FIELDS:
            sig[tag] = ("TAG", TAG_SEPARATOR, True)
        sig[VECTOR_FIELD] = ("VECTOR", "HNSW", "FLOAT32", self.dim, "COSINE", self.m, self.ef_construction)
        return sig


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return {_s(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _after(items: Sequence[Any], key: str) -> Any:
    """The value following `key` in an FT.INFO attribute list (which mixes pairs and bare flags)."""
    for i, item in enumerate(items[:-1]):
        if _s(item) == key:
            return items[i + 1]
    return None


def live_signature(info: dict[str, Any]) -> dict[str, Any]:
    definition = _pairs(info.get("index_definition", []))
    sig: dict[str, Any] = {"prefixes": [_s(p) for p in definition.get("prefixes", [])]}
    for attr in info.get("attributes", []):
        name, kind = _s(_after(attr, "attribute")), _s(_after(attr, "type"))
        if kind == "TAG":
            sig[name] = ("TAG", _s(_after(attr, "SEPARATOR")), any(_s(a) == "CASESENSITIVE" for a in attr))
        elif kind == "VECTOR":
            sig[name] = (
                "VECTOR",
                _s(_after(attr, "algorithm")),
                _s(_after(attr, "data_type")),
                int(_after(attr, "dim") or 0),
                _s(_after(attr, "distance_metric")),
                int(_after(attr, "M") or 0),
                int(_after(attr, "ef_construction") or 0),
            )
        else:
            sig[name] = (kind,)
    return sig


async def index_info(client: aioredis.Redis, name: str) -> dict[str, Any] | None:
    """FT.INFO as a dict, or None when the index does not exist."""
    with redis_errors("FT.INFO"):
        try:
            raw = await execute(client, "FT.INFO", name)
        except redis.exceptions.ResponseError as e:
            text = str(e).lower()
            if "unknown index name" in text or "no such index" in text or "not found" in text:
                return None
            raise
    return _pairs(raw)


async def ensure_index(client: aioredis.Redis, spec: IndexSpec, lru_key: str, *, migrate: bool = True) -> IndexStatus:
    """Create the index, or (with `migrate`) re-create it when the live one has another schema (logged).

    A different vector dimension or type makes the stored entries useless, so they are deleted with the
    index; for other changes (M, EF_CONSTRUCTION) the entries stay and Redis re-indexes them in the
    background. The service migrates at start only; its periodic check just re-creates a missing index,
    so two replicas started with different settings cannot take turns dropping each other's index.
    """
    info = await index_info(client, spec.name)
    if info is not None:
        live = live_signature(info)
        wanted = spec.signature()
        if live == wanted or not migrate:
            return IndexStatus.EXISTS
        old_vec = live.get(VECTOR_FIELD)
        drop_docs = not (isinstance(old_vec, tuple) and old_vec[2:4] == wanted[VECTOR_FIELD][2:4])
        drop_docs = drop_docs or live.get("prefixes") != wanted["prefixes"]
        log.warning(
            "cache index %r has another schema (live %s, wanted %s): re-creating it%s",
            spec.name,
            live,
            wanted,
            ", deleting its entries" if drop_docs else "",
        )
        with redis_errors("FT.DROPINDEX"):
            if drop_docs:
                await execute(client, "FT.DROPINDEX", spec.name, "DD")
                await client.delete(lru_key)
            else:
                await execute(client, "FT.DROPINDEX", spec.name)
        status = IndexStatus.RECREATED
    else:
        status = IndexStatus.CREATED
    with redis_errors("FT.CREATE"):
        try:
            await execute(client, *spec.create_args())
        except redis.exceptions.ResponseError as e:
            if "already exists" not in str(e).lower():  # another replica won the race
                raise
            return IndexStatus.EXISTS
    log.info(
        "cache index %r %s (dim %d, HNSW M=%d EF_CONSTRUCTION=%d)",
        spec.name,
        status.value,
        spec.dim,
        spec.m,
        spec.ef_construction,
    )
    return status
