"""Failover through Envoy (the router fetches the next candidate when the chosen backend fails before its first
byte) and the router's passive health (an endpoint that keeps failing is skipped for a while)."""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

from local_stack.components import free_port
from local_stack.demo_backend import FAIL_MARKER
from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.integration


@pytest.fixture
def config_edit(stack: RunningStack) -> Iterator[Callable[[Callable[[dict[str, Any]], object]], None]]:
    original = stack.config_path.read_text()

    def apply(mutate: Callable[[dict[str, Any]], object]) -> None:
        raw = yaml.safe_load(original)
        mutate(raw)
        stack.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        r = httpx.post(f"{stack.router_url}/config/reload", headers=stack.admin_headers, timeout=10)
        assert r.status_code == 200, r.text

    yield apply
    stack.config_path.write_text(original)
    httpx.post(f"{stack.router_url}/config/reload", headers=stack.admin_headers, timeout=10)


def _all_pii_allowed(raw: dict[str, Any]) -> None:
    # a (true or false) PII finding must not shorten the candidate chain in these tests
    for model in raw["model_config"].values():
        model["pii_policy"] = {"allow_by_default": True}


def _history_prompt() -> str:
    tag = "".join(random.choices(string.ascii_lowercase, k=8))
    return f"Why did the Roman Republic turn into an empire? Explain the main causes, {tag}."


def _endpoint_of(stack: RunningStack, prompt: str) -> str:
    [name] = [
        name
        for name in stack.backends
        if any(
            (seen["body"].get("messages") or [{}])[-1].get("content") == prompt  # type: ignore[union-attr]
            for seen in stack.backend_requests(name)
        )
    ]
    return name


HEADERS = {"x-vsr-cache-control": "no-cache, no-store"}


def test_envoy_fails_over_on_a_5xx_before_the_first_byte(stack: RunningStack, config_edit: Any) -> None:
    config_edit(_all_pii_allowed)
    prompt = _history_prompt()
    body = {"model": "MoM", "messages": [{"role": "user", "content": prompt}]}
    first = httpx.post(f"{stack.envoy_url}/v1/chat/completions", json=body, headers=HEADERS, timeout=30)
    assert first.status_code == 200, first.text
    chosen, endpoint = first.headers["x-vsr-selected-model"], _endpoint_of(stack, prompt)
    httpx.post(f"http://127.0.0.1:{stack.backends[endpoint]}/_demo/fail_next", params={"n": 1}, timeout=5)
    again = httpx.post(f"{stack.envoy_url}/v1/chat/completions", json=body, headers=HEADERS, timeout=30)
    assert again.status_code == 200, again.text
    assert again.headers["x-vsr-failover"] == "true"
    assert again.headers["x-vsr-selected-model"] == again.json()["model"] != chosen
    assert again.headers["x-vsr-selected-category"] == first.headers["x-vsr-selected-category"]


def test_envoy_fails_over_when_the_backend_is_down_and_then_skips_it(stack: RunningStack, config_edit: Any) -> None:
    prompt = _history_prompt()
    body = {"model": "MoM", "messages": [{"role": "user", "content": prompt}]}
    first = httpx.post(f"{stack.envoy_url}/v1/chat/completions", json=body, headers=HEADERS, timeout=30)
    assert first.status_code == 200, first.text
    chosen, endpoint = first.headers["x-vsr-selected-model"], _endpoint_of(stack, prompt)
    dead = free_port()  # nothing listens there: connection refused

    def kill_endpoint(raw: dict[str, Any]) -> None:
        _all_pii_allowed(raw)
        for e in raw["vllm_endpoints"]:
            if e["name"] == endpoint:
                e["port"] = dead

    config_edit(kill_endpoint)
    answers = [
        httpx.post(f"{stack.envoy_url}/v1/chat/completions", json=body, headers=HEADERS, timeout=30) for _ in range(5)
    ]
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.headers["x-vsr-failover"] == "true"
        assert r.headers["x-vsr-selected-model"] == r.json()["model"] != chosen  # the candidate's own answer
        assert r.json()["object"] == "chat.completion"
    metrics = httpx.get(f"http://127.0.0.1:{stack.ports.router_metrics}/metrics", timeout=5).text
    ejected = f'semantic_router_endpoint_ejected{{endpoint="127.0.0.1:{dead}"}} 1.0'
    assert ejected in metrics  # after 3 failures in a row the dead endpoint is skipped, not tried each time


@pytest.mark.parametrize("base", ["envoy", "router"])
def test_a_request_that_fails_its_backend_cannot_move_other_traffic(
    stack: RunningStack, config_edit: Any, base: str
) -> None:
    """One request whose content makes the backend answer 500, sent many times, does not eject the endpoint: a
    plain question of the same category still goes to its own model, with no failover."""
    config_edit(_all_pii_allowed)
    url = stack.envoy_url if base == "envoy" else stack.router_url
    prompt = _history_prompt()
    plain = {"model": "MoM", "messages": [{"role": "user", "content": prompt}]}
    first = httpx.post(f"{url}/v1/chat/completions", json=plain, headers=HEADERS, timeout=30)
    assert first.status_code == 200 and "x-vsr-failover" not in first.headers, first.text
    chosen = first.headers["x-vsr-selected-model"]
    bad = {"model": chosen, "messages": [{"role": "user", "content": f"{prompt} {FAIL_MARKER}"}]}
    for _ in range(6):  # twice the breaker's threshold
        r = httpx.post(f"{url}/v1/chat/completions", json=bad, headers=HEADERS, timeout=30)
        assert r.status_code in (200, 500, 502), r.text  # answered by a candidate that serves it, or refused
    for _ in range(3):
        r = httpx.post(f"{url}/v1/chat/completions", json=plain, headers=HEADERS, timeout=30)
        assert r.status_code == 200, r.text
        assert "x-vsr-failover" not in r.headers
        assert r.headers["x-vsr-selected-model"] == chosen
