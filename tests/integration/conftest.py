"""Session fixtures that start the REAL components on free loopback ports and tear them down."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from semantic_router.components import ManagedProcess, free_port, valkey_command, wait_tcp


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.stop()

    def start(self) -> None:
        """Restart on the same port (for kill/restart fault tests)."""
        self.process.start()
        self.process.wait_ready(20)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Valkey 9 + RediSearch (vector search), on a free port."""
    port = free_port()
    data = tmp_path_factory.mktemp("valkey")
    proc = ManagedProcess(
        "valkey",
        valkey_command(port, data),
        Path(data) / "valkey.log",
        ready=lambda: wait_tcp(port, 0.1),
    ).start()
    proc.wait_ready(20)
    server = RedisServer(port, proc)
    yield server
    proc.stop()
