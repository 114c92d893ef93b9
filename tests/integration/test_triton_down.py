"""Triton stopped mid-test: the configured failure policy holds, nothing hangs, and it recovers."""

from __future__ import annotations

import time

import httpx
import pytest
import yaml

from local_stack.components import wait_http_ok
from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.integration


def _chat(stack: RunningStack, model: str = "MoM") -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    r = httpx.post(
        f"{stack.envoy_url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": f"Integrate x^3 dx ({time.time()})"}]},
        timeout=30,
    )
    return r, time.perf_counter() - started


def _reload_until(stack: RunningStack, text: str, jailbreak_policy: str) -> None:
    stack.config_path.write_text(text)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shown = httpx.get(f"{stack.router_url}/config", headers=stack.admin_headers, timeout=5).json()
        if shown["triton_router"]["failure_policy"]["jailbreak"] == jailbreak_policy:
            return
        time.sleep(0.2)
    raise AssertionError("config was not reloaded")


def test_policy_holds_while_triton_is_down(stack: RunningStack) -> None:
    triton = stack.stack.by_name["triton"]
    original = stack.config_path.read_text()
    triton.stop()
    try:
        # Default policy: the jailbreak guard fails CLOSED -> a fast 503 with an OpenAI error body.
        r, elapsed = _chat(stack)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "classifier_unavailable"
        assert elapsed < 5.0
        assert httpx.get(f"{stack.router_url}/health", timeout=5).json()["triton"] == "unavailable"

        # The operator chooses fail-open for every check: traffic flows to default_model, unclassified.
        raw = yaml.safe_load(original)
        raw["triton_router"] = {"failure_policy": {"classification": "open", "jailbreak": "open", "pii": "open"}}
        _reload_until(stack, yaml.safe_dump(raw, sort_keys=False), "open")
        r, elapsed = _chat(stack)
        assert r.status_code == 200, r.text
        assert r.headers["x-vsr-selected-model"] == "qwen3-1.7b"  # default_model
        assert elapsed < 5.0
    finally:
        _reload_until(stack, original, "closed")
        triton.start()
        triton.wait_ready(180)
    assert wait_http_ok(f"http://127.0.0.1:{stack.ports.triton_http}/v2/health/ready", 60)
    deadline = time.monotonic() + 30
    while True:  # recovers: classification is back
        r, _ = _chat(stack)
        if r.status_code == 200 and r.headers.get("x-vsr-selected-category") == "math":
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.5)
