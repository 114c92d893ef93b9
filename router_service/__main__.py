"""`python -m router_service`: HTTP API + proxy, metrics and ExtProc gRPC in one process and one event loop."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from router_service.app import create_app, metrics_app
from router_service.settings import parse_settings


async def _serve() -> None:
    settings = parse_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host=settings.host, port=settings.port, log_level="warning",
            access_log=False, timeout_graceful_shutdown=5,
        )
    )
    side = uvicorn.Server(
        uvicorn.Config(metrics_app(), host=settings.host, port=settings.metrics_port, log_level="warning",
                       access_log=False, lifespan="off")
    )
    side.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    metrics_task = asyncio.create_task(side.serve())
    try:
        await main.serve()
    finally:
        side.should_exit = True
        await metrics_task


def main() -> None:
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
