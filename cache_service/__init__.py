"""Semantic cache for LLM responses: an HTTP service over the Redis Query Engine (`python -m cache_service`),
and what the router needs to use it (`client`, `scope`, `sse`). See docs/cache.md.

Importing the package loads only the router-side pieces; the service (`app`, `service`, `repository`) imports
redis and starlette when it is itself imported.
"""

from __future__ import annotations

from cache_service.client import CacheClient, CacheHit, CacheOutcome, CircuitBreaker
from cache_service.scope import fingerprint, prompt_text
from wire.sse import assemble_stream, is_cacheable, is_refusal

__all__ = [
    "CacheClient",
    "CacheHit",
    "CacheOutcome",
    "CircuitBreaker",
    "assemble_stream",
    "fingerprint",
    "is_cacheable",
    "is_refusal",
    "prompt_text",
]
