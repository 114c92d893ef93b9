"""`python -m cache_service --port 8090 --redis-url redis://127.0.0.1:6379/0` (flags override CACHE_* env)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn

from cache_service.app import create_app
from cache_service.settings import CacheSettings

# flag -> (settings field, type); every other field is set through its CACHE_<FIELD> variable
_FLAGS: dict[str, tuple[str, type]] = {
    "--host": ("host", str),
    "--port": ("port", int),
    "--redis-url": ("redis_url", str),
    "--index-name": ("index_name", str),
    "--key-prefix": ("key_prefix", str),
    "--embedding-dim": ("embedding_dim", int),
    "--default-threshold": ("default_threshold", float),
    "--ttl-seconds": ("ttl_seconds", int),
    "--max-entries": ("max_entries", int),
    "--hnsw-m": ("hnsw_m", int),
    "--hnsw-ef-construction": ("hnsw_ef_construction", int),
    "--ef-runtime": ("ef_runtime", int),
    "--exact-search-max": ("exact_search_max", int),
    "--lookup-timeout-s": ("lookup_timeout_s", float),
    "--janitor-interval-s": ("janitor_interval_s", float),
    "--log-level": ("log_level", str),
    "--run-dir": ("run_dir", str),
}


def parse_settings(argv: Sequence[str] | None = None) -> CacheSettings:
    p = argparse.ArgumentParser(prog="python -m cache_service", description="Semantic cache service over Redis")
    for flag, (name, kind) in _FLAGS.items():
        p.add_argument(flag, dest=name, type=kind, default=None, help=f"(env CACHE_{name.upper()})")
    args = p.parse_args(argv)
    try:
        return CacheSettings.from_env(**vars(args))
    except ValueError as e:
        p.error(str(e))
        raise  # unreachable: p.error exits


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        # the router keeps its lookup connections open between requests: a quiet minute need not cost a reconnect
        timeout_keep_alive=60,
    )


if __name__ == "__main__":
    main()
