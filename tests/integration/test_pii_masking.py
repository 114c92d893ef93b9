"""PII masking through the real stack (`pii_policy.action: mask` on qwen2.5-coder-7b in deploy/config.yaml): the
backend receives placeholders, the client gets its values back, streamed (placeholders split across SSE events)
or not, through Envoy and the direct proxy; the values never reach the router's log."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from openai import OpenAI

from tests.integration.conftest import RunningStack
from tests.integration.test_routing import _metric
from tests.integration.test_semantic_cache_path import CacheCalls, _counters, _stored_control

pytestmark = pytest.mark.integration

EMAIL = "jane.doe@example.com"
MODEL = "qwen2.5-coder-7b"  # an explicit model: masking is the model's policy, whatever the classifier says


def _client(base: str) -> OpenAI:
    return OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=30)


def _prompt() -> str:
    # Short: the demo backend echoes the first 80 characters, so the placeholder comes back in its answer. (No
    # random marker in it: the detector may well take a hex id for a number; requests are told apart by id.) Not
    # "Send the build log to ...": the prompt guard scores that one 0.85 (build c93c07bdf7a46a1c), over the
    # validated threshold, and blocks it before masking; a masking test must not ride on that boundary.
    return f"Email the quarterly report to {EMAIL} please"


def _rid() -> dict[str, str]:
    return {"x-request-id": f"mask-{uuid.uuid4().hex}"}


def _forwarded(stack: RunningStack, rid: dict[str, str]) -> dict[str, Any]:
    seen = [
        r for r in stack.backend_requests("coder-endpoint") if r["headers"].get("x-request-id") == rid["x-request-id"]
    ]  # type: ignore[union-attr]
    assert seen, "the backend never saw the request"
    body = seen[-1]["body"]
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("base", ["envoy", "router"])
def test_masked_upstream_restored_for_the_client(stack: RunningStack, base: str) -> None:
    url = stack.envoy_url if base == "envoy" else stack.router_url
    prompt, rid = _prompt(), _rid()
    before = _metric(stack, "semantic_router_pii_masked_total", model=MODEL, pii_type="EMAIL_ADDRESS")
    raw = _client(url).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], extra_headers=rid
    )
    assert "EMAIL_ADDRESS" in raw.headers["x-vsr-pii-masked"].split(",")
    sent = _forwarded(stack, rid)["messages"][-1]["content"]
    assert EMAIL not in sent and "<EMAIL_ADDRESS_1>" in sent
    answer = raw.parse().choices[0].message.content or ""
    assert EMAIL in answer and "<EMAIL_ADDRESS_1>" not in answer  # the backend echoed the placeholder: restored
    after = _metric(stack, "semantic_router_pii_masked_total", model=MODEL, pii_type="EMAIL_ADDRESS")
    assert after == before + 1


@pytest.mark.parametrize("base", ["envoy", "router"])
@pytest.mark.parametrize("chunk_chars", [3, 7])
def test_streamed_placeholders_split_across_events_are_restored(
    stack: RunningStack, base: str, chunk_chars: int
) -> None:
    url = stack.envoy_url if base == "envoy" else stack.router_url
    prompt, rid = _prompt(), _rid()
    with _client(url).chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        extra_headers={"x-demo-chunk-chars": str(chunk_chars), **rid},  # the demo backend cuts its reply every N chars
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "EMAIL_ADDRESS" in response.headers["x-vsr-pii-masked"]
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert EMAIL in text and "<EMAIL" not in text
    assert chunks[-1].choices[0].finish_reason == "stop"
    sent = _forwarded(stack, rid)["messages"][-1]["content"]
    assert EMAIL not in sent


def test_masked_values_never_reach_the_routers_log(stack: RunningStack) -> None:
    _client(stack.envoy_url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": _prompt()}])
    log = (stack.stack.s.run_dir / "logs" / "router.log").read_text(errors="replace")
    assert EMAIL not in log


def test_masked_requests_are_not_cached(stack: RunningStack) -> None:
    """A masked request neither looks up nor stores (the cache would key PII-bearing prompts), counted on the cache
    service against an ordinary request that stores."""
    prompt = _prompt()
    client = _client(stack.envoy_url)
    before = _counters(stack)
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}]
        )
        assert raw.headers.get("x-vsr-cache-hit") is None
    calls = _stored_control(stack, before)
    assert calls == CacheCalls(lookups=0, stores=0, landed=0), "a masked request neither looks up nor stores"
