"""`python -m router_service`: HTTP API + proxy and ExtProc gRPC in one event loop; metrics on their own port."""

from __future__ import annotations

import logging

import uvicorn
from prometheus_client import start_http_server

from router_service import metrics
from router_service.app import create_app
from router_service.settings import parse_settings

QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "grpc")
"""Libraries whose INFO lines are one per call (httpx logs every request, the cache-entries poll every 5 s)."""


def configure_logging() -> None:
    """INFO for the router's own events (one `decision` line per routed request, config reloads); the libraries it
    calls through only from WARNING, so polling and per-call lines do not bury them."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def main() -> None:
    settings = parse_settings()
    configure_logging()
    # prometheus_client's own server runs in a daemon thread: scrapes never touch the event loop.
    start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.REGISTRY)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
