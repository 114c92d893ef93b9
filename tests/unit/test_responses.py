"""Renderers shared by ExtProc and the proxy: OpenAI errors, block responses, cache replays, /v1/models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from router_service.config import RouterConfig, load_config
from router_service.core.decision import Blocked
from router_service.core.render import models_list, openai_error, render_block, render_cached

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "vsr-classic"  # vendored, see its NOTICE.md
RAW = yaml.safe_load((REFERENCE / "config.e2e.yaml").read_text())
FILTER_CFG = load_config(REFERENCE / "config.e2e.yaml")  # a VSR config unchanged: VSR's block form
ERROR_CFG = RouterConfig.model_validate({**RAW, "triton_router": {"block_response": "openai_error"}})

JAILBREAK = Blocked(
    reason="jailbreak",
    message="blocked: jailbreak",
    category="math",
    headers={
        "x-vsr-jailbreak-blocked": "true",
        "x-vsr-jailbreak-type": "jailbreak",
        "x-vsr-jailbreak-confidence": "0.9",
    },
)
PII = Blocked(reason="pii", message="blocked: pii", category=None, headers={"x-vsr-pii-violation": "true"})
DOWN = Blocked(reason="classifier_unavailable", message="retry later", category=None, detail={"check": "jailbreak"})


def sse_events(payload: bytes) -> list[Any]:
    text = payload.decode()
    assert text.endswith("\n\n")
    raw = [event for event in text.split("\n\n") if event]
    assert all(event.startswith("data: ") for event in raw)
    events = [event.removeprefix("data: ") for event in raw]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def test_openai_error_shape() -> None:
    status, body = openai_error(400, "bad", "invalid_request_error", "invalid_request", "messages[0].role")
    assert status == 400
    assert json.loads(body) == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "code": "invalid_request",
            "param": "messages[0].role",
        }
    }
    assert json.loads(openai_error(500, "x", "server_error", "e")[1])["error"]["param"] is None


@pytest.mark.parametrize(
    ("blocked", "cfg", "stream", "status", "code"),
    [
        pytest.param(JAILBREAK, ERROR_CFG, False, 403, "jailbreak_detected", id="jailbreak"),
        pytest.param(JAILBREAK, ERROR_CFG, True, 403, "jailbreak_detected", id="jailbreak-stream-still-json"),
        pytest.param(PII, ERROR_CFG, False, 403, "pii_policy_violation", id="pii"),
        pytest.param(DOWN, ERROR_CFG, False, 503, "classifier_unavailable", id="unavailable"),
        pytest.param(DOWN, FILTER_CFG, True, 503, "classifier_unavailable", id="unavailable-never-content-filter"),
    ],
)
def test_block_as_openai_error(blocked: Blocked, cfg: RouterConfig, stream: bool, status: int, code: str) -> None:
    got_status, headers, body, ctype = render_block(blocked, cfg, stream=stream, model="MoM")
    assert (got_status, ctype) == (status, "application/json")
    assert headers == blocked.headers
    error = json.loads(body)["error"]
    assert (error["code"], error["message"]) == (code, blocked.message)
    assert error["type"] == ("server_error" if status == 503 else "invalid_request_error")


def test_block_as_content_filter_completion() -> None:
    status, headers, body, ctype = render_block(
        JAILBREAK, FILTER_CFG, stream=False, model="MoM", request_id="chatcmpl-1", created=7
    )
    assert (status, ctype, headers) == (200, "application/json", JAILBREAK.headers)
    assert json.loads(body) == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 7,
        "model": "MoM",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "blocked: jailbreak"},
                "finish_reason": "content_filter",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def test_block_as_content_filter_stream() -> None:
    status, headers, body, ctype = render_block(PII, FILTER_CFG, stream=True, model="MoM", request_id="r", created=7)
    assert (status, ctype, headers) == (200, "text/event-stream", {"x-vsr-pii-violation": "true"})
    chunk, done = sse_events(body)
    assert done == "[DONE]"
    assert chunk["object"] == "chat.completion.chunk" and chunk["id"] == "r"
    assert chunk["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "blocked: pii"},
            "finish_reason": "content_filter",
        }
    ]


def test_block_ids_are_fresh_by_default() -> None:
    first = json.loads(render_block(PII, FILTER_CFG, stream=False, model="m")[2])
    second = json.loads(render_block(PII, FILTER_CFG, stream=False, model="m")[2])
    assert first["id"] != second["id"] and first["id"].startswith("chatcmpl-")
    assert isinstance(first["created"], int) and first["created"] > 1_600_000_000


COMPLETION = {
    "id": "chatcmpl-c",
    "object": "chat.completion",
    "created": 5,
    "model": "Model-A",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"},
        {
            "index": 1,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function"}],
            },
            "finish_reason": "tool_calls",
        },
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def test_cached_completion_as_json() -> None:
    body, ctype = render_cached(COMPLETION, stream=False, body={"model": "MoM"})
    assert (json.loads(body), ctype) == (COMPLETION, "application/json")


@pytest.mark.parametrize(
    ("request_body", "usage"),
    [
        pytest.param({"model": "MoM", "stream": True}, False, id="no-usage"),
        pytest.param({"model": "MoM", "stream": True, "stream_options": {"include_usage": True}}, True, id="usage"),
    ],
)
def test_cached_completion_replayed_as_sse(request_body: dict[str, Any], usage: bool) -> None:
    body, ctype = render_cached(COMPLETION, stream=True, body=request_body)
    assert ctype == "text/event-stream"
    events = sse_events(body)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["id"] for c in chunks} == {"chatcmpl-c"} and {c["object"] for c in chunks} == {"chat.completion.chunk"}
    choices = [c["choices"][0] for c in chunks if c["choices"]]
    assert choices[0] == {"index": 0, "delta": {"role": "assistant", "content": "4"}, "finish_reason": None}
    assert choices[1] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert choices[2]["delta"]["tool_calls"] == [{"index": 0, "id": "c1", "type": "function"}]
    assert choices[3]["finish_reason"] == "tool_calls"
    usage_chunks = [c for c in chunks if not c["choices"]]
    assert [c["usage"] for c in usage_chunks] == ([COMPLETION["usage"]] if usage else [])


def test_models_list_reference_config() -> None:
    listing = models_list(ERROR_CFG)
    assert listing["object"] == "list"
    assert [(m["id"], m["owned_by"]) for m in listing["data"]] == [
        ("MoM", "vllm-semantic-router"),
        ("Model-A", "qwen-endpoint"),
        ("Model-B", "tinyllama-endpoint"),
    ]
    assert all(m["object"] == "model" for m in listing["data"])


def test_models_list_can_hide_configured_models() -> None:
    cfg = RouterConfig.model_validate({**RAW, "auto_model_name": "auto-router", "include_config_models_in_list": False})
    assert [m["id"] for m in models_list(cfg)["data"]] == ["auto-router"]
