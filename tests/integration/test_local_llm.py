"""Client -> Envoy -> router -> the real local LLM (SmolLM2-135M-Instruct on llama-cpp-python), with the official
`openai` client; and the canned fallback where the local LLM is missing.

Answers are generated, so the tests check what any real answer has (text, token counts, a finish reason, the
route the router chose and the endpoint that answered), not its wording. `max_tokens` stays small: on 2 CPU cores
one token takes about 25 ms.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from local_stack.llm_front import ENDPOINT_HEADER
from local_stack.local_llm import DEFAULT_MAX_TOKENS
from local_stack.stack import Stack, StackSettings
from tests.integration.conftest import RunningStack, write_test_config

pytestmark = pytest.mark.integration

NO_CACHE = {"x-vsr-cache-control": "no-cache, no-store"}  # every answer here is generated, none stored


def _client(stack: RunningStack) -> OpenAI:
    return OpenAI(base_url=f"{stack.envoy_url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_a_routed_request_gets_a_generated_answer(llm_stack: RunningStack) -> None:
    raw = _client(llm_stack).chat.completions.with_raw_response.create(
        model="MoM",
        messages=[{"role": "user", "content": "What is the derivative of sin(x) times cos(x)? Show each step."}],
        max_tokens=16,
        extra_headers=NO_CACHE,
    )
    completion = raw.parse()
    assert raw.headers["x-vsr-selected-model"] == "qwen3-32b"
    assert raw.headers[ENDPOINT_HEADER] == "large-endpoint"  # the local LLM's front, on that endpoint's port
    assert "x-demo-backend" not in raw.headers
    assert completion.model == "qwen3-32b"  # llama-cpp-python answers any model name with its one model
    choice = completion.choices[0]
    assert (choice.message.content or "").strip()
    assert "demo backend" not in (choice.message.content or "")
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 16
    # the router's injected system prompt reached the model: the prompt is longer than the question alone
    assert completion.usage.prompt_tokens > 20


def test_an_explicit_model_reaches_its_endpoint(llm_stack: RunningStack) -> None:
    raw = _client(llm_stack).chat.completions.with_raw_response.create(
        model="qwen2.5-coder-7b",
        messages=[{"role": "user", "content": "Write a Python function that adds two numbers."}],
        max_tokens=12,
        extra_headers=NO_CACHE,
    )
    completion = raw.parse()
    assert raw.headers["x-vsr-selected-model"] == "qwen2.5-coder-7b"
    assert raw.headers[ENDPOINT_HEADER] == "coder-endpoint"
    assert (completion.choices[0].message.content or "").strip()
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 12


def test_a_streamed_answer_arrives_token_by_token(llm_stack: RunningStack) -> None:
    with _client(llm_stack).chat.completions.with_streaming_response.create(
        model="MoM",
        messages=[{"role": "user", "content": "What caused the fall of the Western Roman Empire?"}],
        max_tokens=16,
        stream=True,
        extra_headers=NO_CACHE,
    ) as response:
        assert response.headers["x-vsr-selected-model"] == "qwen3-1.7b"
        assert response.headers[ENDPOINT_HEADER] == "small-endpoint"
        chunks = list(response.parse())
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2, chunks
    assert "".join(pieces).strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"] or finishes == ["stop"], finishes
    assert {c.model for c in chunks} == {"qwen3-1.7b"}


def test_the_responses_api_gets_a_generated_answer(llm_stack: RunningStack) -> None:
    """`/v1/responses` through Envoy and the router (guarded and routed like a chat request) to the local LLM, whose
    front translates it to a chat completion and back."""
    raw = _client(llm_stack).responses.with_raw_response.create(
        model="MoM",
        instructions="Answer in one sentence.",
        input="What is the derivative of x squared?",
        max_output_tokens=16,
        extra_headers=NO_CACHE,
    )
    response = raw.parse()
    assert raw.headers["x-vsr-selected-model"] == "qwen3-32b"
    assert raw.headers[ENDPOINT_HEADER] == "large-endpoint"
    assert response.output_text.strip()
    assert response.status in ("completed", "incomplete")
    assert response.usage is not None and 0 < response.usage.output_tokens <= 16
    assert response.usage.input_tokens > 5


def test_content_parts_get_a_generated_answer_and_an_image_a_clear_400(llm_stack: RunningStack) -> None:
    """Content as an array of parts (valid OpenAI) through Envoy and the router to the local LLM: the text parts are
    read; an image part is the client's 400 saying the local model reads text only, and the endpoint stays in use."""
    client = _client(llm_stack)
    raw = client.chat.completions.with_raw_response.create(
        model="MoM",
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "Answer in one sentence."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
        ],
        max_tokens=8,
        extra_headers=NO_CACHE,
    )
    assert (raw.parse().choices[0].message.content or "").strip()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    for _ in range(4):  # more than the breaker's threshold: a request's own fault never ejects the endpoint
        r = httpx.post(
            f"{llm_stack.envoy_url}/v1/chat/completions",
            json={
                "model": "MoM",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}],
            },
            headers=NO_CACHE,
            timeout=60,
        )
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert "reads text only" in error["message"] and error["param"] == "messages[0].content[1]"
    again = client.chat.completions.with_raw_response.create(
        model="MoM",
        messages=[{"role": "user", "content": "What is the capital of Italy?"}],
        max_tokens=4,
        extra_headers=NO_CACHE,
    )
    assert "x-vsr-failover" not in again.headers


def test_the_front_caps_a_request_that_sets_no_limit(llm_stack: RunningStack) -> None:
    port = llm_stack.backends["small-endpoint"]
    essay = "Write a long, detailed essay on the history of the Roman Empire."  # far more than 128 tokens
    body = {"model": "any", "messages": [{"role": "user", "content": essay}], "temperature": 0}
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == DEFAULT_MAX_TOKENS


def test_the_front_rejects_bad_input_with_openai_errors(llm_stack: RunningStack) -> None:
    port = llm_stack.backends["small-endpoint"]
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", content=b"{not json", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"http://127.0.0.1:{port}/v1/responses", json={"input": "hi", "stream": True}, timeout=10)
    assert r.status_code == 400 and "stream" in r.json()["error"]["message"]
    r = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"input": "hi"}, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["message"]
    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
    assert health["status"] == "ok" and health["endpoint"] == "small-endpoint"


def test_without_the_local_llm_the_canned_backends_answer(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    ports = write_test_config(config)
    stack = Stack(StackSettings(config=config, run_dir=tmp_path, local_llm=True, llm_venv=tmp_path / "no-venv"))
    try:
        stack._start_backends(sys.executable)
        assert stack.llm is None
        assert "not installed" in stack.backend_note
        assert {(d.name, d.port) for d in stack.demo} == set(ports.items())
        r = httpx.post(
            f"http://127.0.0.1:{ports['small-endpoint']}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": f"hi {uuid.uuid4()}"}]},
            timeout=10,
        )
        assert r.headers["x-demo-backend"] == "small-endpoint"
        assert "not a real LLM" in r.json()["choices"][0]["message"]["content"]
    finally:
        stack.down()
