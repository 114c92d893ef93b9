"""The router's readiness: `/ready` is 503 while Triton cannot serve the model and 200 once it can, while `/health`
stays 200 either way (VSR's contract: it reports `degraded`)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from router_service import app as app_module
from router_service.settings import parse_settings

ROOT = Path(__file__).resolve().parents[2]


class FakeSignals:
    ready_now = False

    def __init__(self, *_: Any, **__: Any) -> None:
        self.model_name = "signals"

    async def start(self) -> None:
        return None

    async def ready(self) -> bool:
        return FakeSignals.ready_now

    async def close(self) -> None:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ready_follows_triton_and_health_stays_200(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(app_module, "SignalClient", FakeSignals)
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "tests" / "fixtures" / "vsr-classic" / "config.e2e.yaml").read_text())
    settings = parse_settings(
        ["--config", str(config), "--host", "127.0.0.1", "--grpc-port", str(_free_port()), "--run-dir", str(tmp_path)]
    )
    with TestClient(app_module.create_app(settings)) as client:
        FakeSignals.ready_now = False
        down = client.get("/ready")
        assert down.status_code == 503 and down.json() == {"ready": False, "triton": "unavailable"}
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        FakeSignals.ready_now = True
        up = client.get("/ready")
        assert up.status_code == 200 and up.json() == {"ready": True, "triton": "ready"}
