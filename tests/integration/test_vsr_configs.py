"""VSR's own reference configs drive a live stack (endpoints moved to free loopback ports, nothing else changed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_service.config import load_config
from tests.integration.conftest import RunningStack, start_stack

pytestmark = pytest.mark.integration

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "vsr-classic"


@pytest.fixture(scope="module", params=["config.e2e.yaml", "config.yaml"])
def vsr_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    source = REFERENCE / request.param
    if not source.exists():
        pytest.skip(f"{source} not present (shared/ is beside the repository in CI)")
    running = start_stack(tmp_path_factory.mktemp("vsr"), source, with_cache=False)
    try:
        yield running
    finally:
        running.stack.down()


def test_auto_model_routes_by_category(vsr_stack: RunningStack) -> None:
    cfg = load_config(vsr_stack.config_path)
    r = httpx.post(
        f"{vsr_stack.envoy_url}/v1/chat/completions",
        json={
            "model": cfg.auto_model_name,
            "messages": [{"role": "user", "content": "Solve for x: 5x - 3 = 2x + 9. Show the algebra."}],
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-vsr-selected-category"] == "math"
    assert r.headers["x-vsr-selected-model"] == cfg.best_model_for("math")
    assert r.json()["model"] == cfg.best_model_for("math")


def test_models_list(vsr_stack: RunningStack) -> None:
    cfg = load_config(vsr_stack.config_path)
    ids = {m["id"] for m in httpx.get(f"{vsr_stack.envoy_url}/v1/models", timeout=10).json()["data"]}
    assert cfg.auto_model_name in ids and cfg.default_model in ids
