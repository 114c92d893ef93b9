"""The whole request path through real Envoy, ExtProc, Triton and Redis, with the official `openai` client."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from openai import BadRequestError, OpenAI

from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.integration


def _client(stack: RunningStack) -> OpenAI:
    return OpenAI(base_url=f"{stack.envoy_url}/v1", api_key="unused", max_retries=0, timeout=30)


def test_math_prompt_is_routed_to_the_math_model(stack: RunningStack) -> None:
    raw = _client(stack).chat.completions.with_raw_response.create(
        model="MoM",
        # no bare numbers: the PII head of build 5850546073078bbc flags some (e.g. "22" as AGE), which would
        # legitimately move the request off the PII-strict math model (that path is test_routing's PII test)
        messages=[{"role": "user", "content": "What is the derivative of sin(x) times cos(x)? Show each step."}],
    )
    completion = raw.parse()
    assert raw.headers["x-vsr-selected-category"] == "math"
    assert raw.headers["x-vsr-selected-model"] == "qwen3-32b"
    assert raw.headers["x-vsr-selected-reasoning"] == "on"
    assert raw.headers["x-vsr-injected-system-prompt"] == "true"
    assert completion.model == "qwen3-32b"
    assert "demo backend 'large-endpoint'" in (completion.choices[0].message.content or "")
    seen = stack.backend_requests("large-endpoint")[-1]
    body, headers = seen["body"], seen["headers"]
    assert isinstance(body, dict) and isinstance(headers, dict)
    assert body["model"] == "qwen3-32b"
    assert headers["x-selected-model"] == "qwen3-32b"
    assert headers["x-vsr-destination-endpoint"] == f"127.0.0.1:{stack.backends['large-endpoint']}"
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["messages"][0]["role"] == "system"


def test_explicit_model_skips_classification(stack: RunningStack) -> None:
    raw = _client(stack).chat.completions.with_raw_response.create(
        model="qwen2.5-coder-7b",
        messages=[{"role": "user", "content": "What is the integral of 1/x?"}],
    )
    assert raw.parse().model == "qwen2.5-coder-7b"
    assert raw.headers["x-vsr-selected-model"] == "qwen2.5-coder-7b"
    assert raw.headers.get("x-vsr-selected-category", "") in ("", "none")
    seen = stack.backend_requests("coder-endpoint")[-1]
    assert seen["body"]["model"] == "qwen2.5-coder-7b"  # type: ignore[index]


def test_models_endpoint_through_envoy(stack: RunningStack) -> None:
    ids = {m.id for m in _client(stack).models.list().data}
    assert {"MoM", "qwen3-1.7b", "qwen3-32b", "qwen2.5-coder-7b"} <= ids


@pytest.mark.parametrize("base", ["envoy", "router"])
def test_malformed_json_is_a_4xx_with_openai_error(stack: RunningStack, base: str) -> None:
    url = stack.envoy_url if base == "envoy" else stack.router_url
    r = httpx.post(
        f"{url}/v1/chat/completions",
        content=b'{"model": "MoM", "messages": [',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert 400 <= r.status_code < 500
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"] and err["code"]


def test_openai_client_sees_bad_request_for_wrong_types(stack: RunningStack) -> None:
    with pytest.raises(BadRequestError) as info:
        _client(stack).chat.completions.create(model="MoM", messages="not a list")  # type: ignore[arg-type]
    assert info.value.status_code == 400


def test_the_answering_triton_is_the_real_server(stack: RunningStack) -> None:
    meta = httpx.get(f"http://127.0.0.1:{stack.ports.triton_http}/v2", timeout=5).json()
    assert meta["name"] == "triton" and meta["version"].startswith("2.")
    proc = stack.stack.by_name["triton"]
    exe = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert exe.endswith("/tritonserver")
    # The server's own statistics move by exactly what this test asks of it: one chat request with three new user
    # texts is one inference request to Triton carrying three rows (the router sends a request's texts in one batch).
    before = _triton_counts(stack)
    tag = uuid.uuid4().hex
    texts = [f"How do tides form? ({tag})", f"Why is the sky blue? ({tag})", f"What makes a rainbow? ({tag})"]
    body = {"model": "MoM", "messages": [{"role": "user", "content": t} for t in texts]}
    r = httpx.post(f"{stack.router_url}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200, r.text
    requests, rows = (a - b for a, b in zip(_triton_counts(stack), before, strict=True))
    assert (requests, rows) == (1, 3)


def _triton_counts(stack: RunningStack) -> tuple[int, int]:
    """(successful inference requests, rows inferred) of the signals model, once no other call is moving them
    (a config reload elsewhere may still be embedding a tool catalogue)."""
    url = f"http://127.0.0.1:{stack.ports.triton_http}/v2/models/signals/stats"

    def read() -> tuple[int, int]:
        stats = httpx.get(url, timeout=5).json()["model_stats"][0]
        return int(stats["inference_stats"]["success"]["count"]), int(stats["inference_count"])

    seen, deadline = read(), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = read()
        if now == seen:
            return now
        seen = now
    return seen
