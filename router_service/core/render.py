"""Response renderers shared by the ExtProc server and the direct proxy, so both answer byte-for-byte alike.

Pure: each returns status/headers/bytes for the transport to send. `request_id` and `created` default to a
fresh id and the current time; tests pass fixed values.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any

from router_service.config import RouterConfig
from router_service.core.decision_types import Blocked
from wire.sse import STREAM_HEAD_KEYS, chat_chunk, encode_events

__all__ = [
    "AUTO_MODEL_OWNER",
    "JSON",
    "SSE",
    "dumps",
    "models_list",
    "openai_error",
    "render_block",
    "render_cached",
    "retry_after_header",
]

JSON = "application/json"
SSE = "text/event-stream"
AUTO_MODEL_OWNER = "vllm-semantic-router"

_BLOCK_CODES = {
    "jailbreak": "jailbreak_detected",
    "pii": "pii_policy_violation",
    "classifier_unavailable": "classifier_unavailable",
}


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def openai_error(status: int, message: str, type: str, code: str, param: str | None = None) -> tuple[int, bytes]:
    """OpenAI's error shape: `{"error": {"message", "type", "code", "param"}}`."""
    return status, dumps({"error": {"message": message, "type": type, "code": code, "param": param}})


def retry_after_header(seconds: float) -> str:
    """`Retry-After` is whole seconds (RFC 9110): round up, at least 1."""
    return str(max(1, math.ceil(seconds)))


def render_block(
    blocked: Blocked,
    cfg: RouterConfig,
    *,
    stream: bool,
    model: str,
    request_id: str | None = None,
    created: int | None = None,
    as_error: bool = False,
) -> tuple[int, dict[str, str], bytes, str]:
    """(status, headers, body, content type) for a blocked request. `as_error`: the OpenAI error form whatever
    the config says (for paths whose clients cannot read a chat completion).

    `triton_router.block_response: openai_error` (default): 403 with an OpenAI error, also for streaming
    requests (clients check the status before reading a stream). `content_filter`: VSR's form, HTTP 200 with
    a `chat.completion` whose finish_reason is "content_filter" and whose message is the refusal; streamed
    as one `chat.completion.chunk` event then `data: [DONE]`.
    An unavailable classifier is always a 503 error: it is an outage, not a verdict on the content, and a
    200 refusal would hide it from clients' retry logic.
    """
    headers = dict(blocked.headers)
    code = _BLOCK_CODES[blocked.reason]
    if blocked.reason == "classifier_unavailable":
        status, body = openai_error(503, blocked.message, "server_error", code)
        return status, headers, body, JSON
    if as_error or cfg.triton_router.block_response == "openai_error":
        status, body = openai_error(403, blocked.message, "invalid_request_error", code)
        return status, headers, body, JSON
    rid = request_id or f"chatcmpl-{uuid.uuid4().hex}"
    ts = int(time.time()) if created is None else created
    message = {"role": "assistant", "content": blocked.message}
    if stream:
        chunk = chat_chunk(rid, ts, model, [{"index": 0, "delta": message, "finish_reason": "content_filter"}])
        return 200, headers, encode_events([chunk]), SSE
    completion = {
        "id": rid,
        "object": "chat.completion",
        "created": ts,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
    return 200, headers, dumps(completion), JSON


def render_cached(completion: Mapping[str, Any], *, stream: bool, body: Mapping[str, Any]) -> tuple[bytes, str]:
    """(body, content type) answering a request from a cached `chat.completion`.

    Streaming requests get the completion replayed as SSE: per choice one chunk with the whole message (and its
    logprobs), one with its finish_reason, a usage chunk when `stream_options.include_usage` asks, then `[DONE]`.
    Every chunk carries the completion's `system_fingerprint` and `service_tier` when it has them, as a live
    stream does.
    """
    if not stream:
        return dumps(completion), JSON
    rid = str(completion.get("id") or f"chatcmpl-{uuid.uuid4().hex}")
    ts = int(completion.get("created") or time.time())
    model = str(completion.get("model") or body.get("model") or "")
    head = {k: completion[k] for k in STREAM_HEAD_KEYS if completion.get(k) is not None}
    chunks: list[dict[str, Any]] = []
    for i, choice in enumerate(completion.get("choices") or ()):
        index = choice.get("index", i)
        content: dict[str, Any] = {"index": index, "delta": _delta(choice.get("message") or {}), "finish_reason": None}
        if choice.get("logprobs") is not None:
            content["logprobs"] = choice["logprobs"]
        chunks.append(chat_chunk(rid, ts, model, [content], **head))
        finish = choice.get("finish_reason") or "stop"
        chunks.append(chat_chunk(rid, ts, model, [{"index": index, "delta": {}, "finish_reason": finish}], **head))
    options = body.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage") and completion.get("usage"):
        chunks.append(chat_chunk(rid, ts, model, [], **head, usage=completion["usage"]))
    return encode_events(chunks), SSE


def _delta(message: Mapping[str, Any]) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": message.get("role", "assistant")}
    for key in ("content", "refusal", "reasoning_content", "function_call"):
        if message.get(key) is not None:
            delta[key] = message[key]
    calls = message.get("tool_calls")
    if calls:
        delta["tool_calls"] = [{"index": k, **call} for k, call in enumerate(calls)]
    return delta


def models_list(cfg: RouterConfig, created: int = 0) -> dict[str, Any]:
    """GET /v1/models: the auto model, then (unless `include_config_models_in_list: false`) every model the
    config names, each owned by the endpoint it routes to."""
    data = [{"id": cfg.auto_model_name, "object": "model", "created": created, "owned_by": AUTO_MODEL_OWNER}]
    if cfg.include_config_models_in_list is not False:
        for name in cfg.all_models():
            owner = cfg.endpoints_for(name)[0].name
            data.append({"id": name, "object": "model", "created": created, "owned_by": owner})
    return {"object": "list", "data": data}
