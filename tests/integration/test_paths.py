"""The router's explicit path table through Envoy (and the direct proxy): prompt paths are served, the model list
is answered, and every other path is a 404 from the router in OpenAI's error shape that no backend ever sees."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.integration


def _seen(stack: RunningStack) -> int:
    total = 0
    for port in stack.backends.values():
        for kind in ("requests", "other_requests"):
            total += len(httpx.get(f"http://127.0.0.1:{port}/_demo/{kind}", timeout=5).json())
    return total


def _error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    error: dict[str, object] = r.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error" and error["code"] == code, error
    return error


UNSERVED = [
    ("POST", "/v1/messages", {"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/embeddings", {"model": "m", "input": "hi"}),
    ("GET", "/v1/files", None),
    ("POST", "/v1/chat/completions/", {"model": "MoM", "messages": [{"role": "user", "content": "hi"}]}),
    ("GET", "/", None),
    ("GET", "/health", None),
]


def test_unserved_paths_are_a_404_from_the_router_and_reach_no_backend(stack: RunningStack) -> None:
    before = _seen(stack)
    with httpx.Client(base_url=stack.envoy_url, timeout=30) as client:
        for method, path, body in UNSERVED:
            r = client.request(method, path, json=body)
            error = _error(r, 404, "not_found")
            assert "/v1/chat/completions" in str(error["message"])  # it says what is served
            assert "x-vsr-selected-model" not in r.headers
    assert _seen(stack) == before


@pytest.mark.parametrize("base", ["envoy", "router"])
def test_a_wrong_method_on_a_served_path_is_a_405(stack: RunningStack, base: str) -> None:
    url = stack.envoy_url if base == "envoy" else stack.router_url
    for method in ("GET", "PUT", "DELETE"):
        r = httpx.request(method, f"{url}/v1/chat/completions", timeout=30)
        _error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "POST"
    if base == "envoy":  # the direct proxy serves the chat path only
        for path in ("/v1/completions", "/v1/responses"):
            _error(httpx.get(f"{url}{path}", timeout=30), 405, "method_not_allowed")
        r = httpx.post(f"{url}/v1/models", json={}, timeout=30)
        _error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("base", ["envoy", "router"])
def test_models_are_answered_from_the_config(stack: RunningStack, base: str) -> None:
    url = stack.envoy_url if base == "envoy" else stack.router_url
    listed = httpx.get(f"{url}/v1/models", timeout=30).json()
    ids = [m["id"] for m in listed["data"]]
    assert listed["object"] == "list" and "MoM" in ids and len(ids) > 1
    for model in ids:
        r = httpx.get(f"{url}/v1/models/{model}", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["id"] == model and r.json()["object"] == "model"
    error = _error(httpx.get(f"{url}/v1/models/no-such-model", timeout=30), 404, "model_not_found")
    assert error["param"] == "model"
