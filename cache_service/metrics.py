"""Prometheus metrics of the cache service (VSR's names), on a registry owned by one app instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CacheMetrics"]

# Lookups are sub-millisecond: the default buckets (5 ms and up) would put them all in one.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 2.5)


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hits = Counter("llm_cache_hits_total", "Semantic cache hits", registry=r)
        self.misses = Counter("llm_cache_misses_total", "Semantic cache misses", registry=r)
        self.duration = Histogram(
            "llm_cache_operation_duration_seconds",
            "Cache operation latency inside the cache service",
            ["operation"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.entries = Gauge("llm_cache_entries_total", "Entries in the semantic cache index", registry=r)
        self.hit_kinds = Counter("llm_cache_hit_kind_total", "Hits by path (exact, semantic)", ["kind"], registry=r)
        self.errors = Counter(
            "llm_cache_errors_total",
            "Cache operations that failed (Redis down, slow, refused)",
            ["operation", "code"],
            registry=r,
        )
        self.evictions = Counter("llm_cache_evictions_total", "Entries evicted by the size bound", registry=r)
        self.stores = Counter("llm_cache_stores_total", "Entries stored", registry=r)
        self.index_creations = Counter(
            "llm_cache_index_creations_total",
            "Index created or re-created (start, schema change, empty Redis)",
            registry=r,
        )
        for op in ("lookup", "exact", "search", "store", "touch", "invalidate"):
            self.duration.labels(operation=op)
        for kind in ("exact", "semantic"):
            self.hit_kinds.labels(kind=kind)

    def render(self) -> bytes:
        return generate_latest(self.registry)
