"""Process settings of the cache service: defaults < environment (`CACHE_*`) < command line.

Every field is documented in docs/cache.md. The HNSW defaults come from benchmarks/cache (see its sweep).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["ENV_PREFIX", "CacheSettings"]

ENV_PREFIX = "CACHE_"


@dataclass(frozen=True, slots=True)
class CacheSettings:
    host: str = "127.0.0.1"
    """Address the HTTP service binds."""
    port: int = 8090
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis/Valkey with the query engine (FT.* commands)."""
    index_name: str = "llm_cache"
    key_prefix: str = "llmcache:"
    """Every key the service writes starts with this: entries `<prefix>e:<id>`, LRU set `<prefix>lru`."""
    embedding_dim: int = 384
    """Dimension of the router's embeddings (all-MiniLM-L6-v2: 384). A change re-creates the index."""
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    ef_runtime: int = 48
    """HNSW search breadth per lookup (EF_RUNTIME): higher = better recall, slower."""
    exact_search_max: int = 1000
    """Scopes with at most this many entries are searched exactly (brute force over the scope, < 1 ms);
    larger ones through HNSW."""
    lookup_script: bool = True
    """One Redis round trip per lookup (a server-side script: exact read, KNN search, refresh of a hit). False:
    the exact read and the search as two round trips and the refresh as a third after the response (for Redis
    deployments that forbid scripts; ~0.3-0.5 ms slower)."""
    default_threshold: float = 0.8
    """Cosine SIMILARITY in [0, 1] a lookup needs to hit when the request names none; higher is stricter."""
    ttl_seconds: int = 3600
    """Default time to live of an entry, refreshed on every hit."""
    max_ttl_seconds: int = 7 * 24 * 3600
    """Upper bound for a per-entry TTL a store may ask for."""
    max_entries: int = 100_000
    """Size bound: beyond it the least recently used entries are evicted."""
    eviction_batch: int = 0
    """Evict once the count exceeds max_entries + this many (amortised); 0 = max(1, max_entries // 100)."""
    lookup_timeout_s: float = 0.05
    """The service's own deadline for one lookup against Redis (the router's client gives up sooner)."""
    store_timeout_s: float = 1.0
    redis_socket_timeout_s: float = 1.0
    redis_max_connections: int = 64
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body accepted (413 above)."""
    max_prompt_chars: int = 32_768
    janitor_interval_s: float = 5.0
    """How often the service checks the index (re-creating it after a Redis restart) and trims the LRU set."""
    log_level: str = "info"
    admin_token: str = ""
    """Token the store and invalidate endpoints require (`Authorization: Bearer`). Empty: the
    SEMANTIC_ROUTER_ADMIN_TOKEN variable, else the run directory's `admin_token` file (created when missing)."""
    run_dir: str = ""
    """Where the generated admin token lives; empty: SEMANTIC_ROUTER_RUN_DIR, else ./.run."""

    def __post_init__(self) -> None:
        problems: list[str] = []

        def need(ok: bool, msg: str) -> None:
            if not ok:
                problems.append(msg)

        need(0 < self.port < 65536, f"port must be 1..65535, got {self.port}")
        need(
            self.redis_url.startswith(("redis://", "rediss://", "unix://")),
            "redis_url must be a redis:// URL",
        )
        need(bool(self.index_name) and " " not in self.index_name, "index_name must be a non-empty word")
        need(bool(self.key_prefix), "key_prefix must not be empty")
        need(1 <= self.embedding_dim <= 8192, f"embedding_dim must be 1..8192, got {self.embedding_dim}")
        need(2 <= self.hnsw_m <= 512, f"hnsw_m must be 2..512, got {self.hnsw_m}")
        need(1 <= self.hnsw_ef_construction <= 4096, "hnsw_ef_construction must be 1..4096")
        need(1 <= self.ef_runtime <= 4096, f"ef_runtime must be 1..4096, got {self.ef_runtime}")
        need(self.exact_search_max >= 0, "exact_search_max must be >= 0")
        need(0.0 <= self.default_threshold <= 1.0, "default_threshold is a cosine similarity in [0, 1]")
        need(1 <= self.ttl_seconds <= self.max_ttl_seconds, "ttl_seconds must be 1..max_ttl_seconds")
        need(self.max_entries >= 1, "max_entries must be >= 1")
        need(self.eviction_batch >= 0, "eviction_batch must be >= 0")
        for name in ("lookup_timeout_s", "store_timeout_s", "redis_socket_timeout_s", "janitor_interval_s"):
            need(getattr(self, name) > 0, f"{name} must be > 0")
        need(self.redis_max_connections >= 1, "redis_max_connections must be >= 1")
        need(self.max_body_bytes >= 1024, "max_body_bytes must be >= 1024")
        need(self.max_prompt_chars >= 1, "max_prompt_chars must be >= 1")
        if problems:
            raise ValueError("invalid cache settings: " + "; ".join(problems))

    @property
    def entry_prefix(self) -> str:
        return f"{self.key_prefix}e:"

    @property
    def lru_key(self) -> str:
        return f"{self.key_prefix}lru"

    @property
    def effective_eviction_batch(self) -> int:
        return self.eviction_batch or max(1, self.max_entries // 100)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> CacheSettings:
        """Defaults, then `CACHE_<FIELD>` variables, then `overrides` (the command line); None means unset."""
        env = os.environ if environ is None else environ
        defaults = cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _cast(f.name, raw, type(getattr(defaults, f.name)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> CacheSettings:
        return dataclasses.replace(self, **changes)


def _cast(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        return kind(raw)
    except ValueError as e:
        raise ValueError(f"invalid cache settings: {ENV_PREFIX}{name.upper()}={raw!r} is not a {kind.__name__}") from e
