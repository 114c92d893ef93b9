"""Process settings (ports, URLs, paths): CLI flags, then SR_* environment variables, then defaults.

The router's behaviour lives in the YAML config (router_service.config); this is only where it listens and what it
talks to."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "parse_settings"]

_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    config: Path
    host: str = "127.0.0.1"
    port: int = 8080
    metrics_port: int = 9190
    grpc_port: int = 50051
    triton_url: str = "127.0.0.1:8001"
    model_repository: Path = _REPO / "model_repository"
    cache_url: str | None = None
    redis_url: str | None = None
    """Redis for conversation pins (`triton_router.conversation`); unset: conversations are routed statelessly."""
    pin_timeout_s: float = 0.05
    triton_timeout_s: float = 3.0
    batch_window_ms: float = 2.0
    max_batch: int = 32
    cache_timeout_s: float = 0.02
    upstream_timeout_s: float = 300.0
    max_body_bytes: int = 10 * 1024 * 1024
    max_pending_rows: int = 128
    """The classification queue's bound (texts queued for or waiting on Triton); past it requests are shed."""
    run_dir: Path | None = None
    """Where the generated admin token lives (cache_service.auth); None: SEMANTIC_ROUTER_RUN_DIR, else ./.run."""


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(f"SR_{name.upper()}", default)


def parse_settings(argv: list[str] | None = None) -> Settings:
    d = Settings(config=_REPO / "deploy" / "config.yaml")
    p = argparse.ArgumentParser(prog="router_service", description="Semantic router: HTTP API, proxy, ExtProc")
    p.add_argument("--config", default=_env("config", str(d.config)))
    p.add_argument("--host", default=_env("host", d.host))
    p.add_argument("--port", type=int, default=int(_env("port", str(d.port)) or d.port))
    p.add_argument("--metrics-port", type=int, default=int(_env("metrics_port", str(d.metrics_port)) or 0))
    p.add_argument("--grpc-port", type=int, default=int(_env("grpc_port", str(d.grpc_port)) or 0))
    p.add_argument("--triton-url", default=_env("triton_url", d.triton_url))
    p.add_argument("--model-repository", default=_env("model_repository", str(d.model_repository)))
    p.add_argument("--cache-url", default=_env("cache_url", None), help="cache_service URL; unset = no cache")
    p.add_argument("--redis-url", default=_env("redis_url", None), help="Redis for conversation pins; unset = none")
    p.add_argument("--pin-timeout-s", type=float, default=float(_env("pin_timeout_s", "0.05") or 0.05))
    p.add_argument("--triton-timeout-s", type=float, default=float(_env("triton_timeout_s", "3.0") or 3.0))
    p.add_argument("--batch-window-ms", type=float, default=float(_env("batch_window_ms", "2.0") or 2.0))
    p.add_argument("--max-batch", type=int, default=int(_env("max_batch", "32") or 32))
    p.add_argument("--cache-timeout-s", type=float, default=float(_env("cache_timeout_s", "0.02") or 0.02))
    p.add_argument("--max-pending-rows", type=int, default=int(_env("max_pending_rows", "128") or 128))
    p.add_argument("--run-dir", default=_env("run_dir", None), help="where the generated admin token is kept")
    a = p.parse_args(argv)
    return Settings(
        config=Path(a.config),
        host=a.host,
        port=a.port,
        metrics_port=a.metrics_port,
        grpc_port=a.grpc_port,
        triton_url=a.triton_url,
        model_repository=Path(a.model_repository),
        cache_url=a.cache_url,
        redis_url=a.redis_url,
        pin_timeout_s=a.pin_timeout_s,
        triton_timeout_s=a.triton_timeout_s,
        batch_window_ms=a.batch_window_ms,
        max_batch=a.max_batch,
        cache_timeout_s=a.cache_timeout_s,
        max_pending_rows=a.max_pending_rows,
        run_dir=Path(a.run_dir) if a.run_dir else None,
    )
