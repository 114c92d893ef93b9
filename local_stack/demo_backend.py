"""A DEMO OpenAI-compatible backend: not an LLM. It answers every chat request with a fixed, labelled reply.

Started by `semantic-router stack up` for config endpoints that nothing listens on, and by the tests as the
"truly outside" LLM backend. It records the last requests it saw (bounded) at GET /_demo/requests so tests can
check what the router forwarded (rewritten `model`, headers, system prompt, tools).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["FAIL_MARKER", "create_app"]


FAIL_MARKER = "__demo_fail_500__"
"""A user message holding this gets a 500 from the demo backend: a backend failing on one request's content."""


def _reply_text(name: str, model: str, prompt: str) -> str:
    return f"[demo backend '{name}', not a real LLM] model={model}: you said {prompt[:80]!r}"


def create_app(name: str, *, token_delay_s: float = 0.0, history: int = 64) -> Starlette:
    seen: deque[dict[str, Any]] = deque(maxlen=history)
    seen_other: deque[dict[str, Any]] = deque(maxlen=history)
    """/v1/completions and /v1/responses requests, apart from the chat ones (`/_demo/requests`)."""
    state: dict[str, Any] = {"fail_next": 0}

    async def chat(request: Request) -> Response:
        body = await request.json()
        seen.append({"headers": dict(request.headers), "body": body})
        if state["fail_next"] > 0:
            state["fail_next"] -= 1
            return JSONResponse({"error": {"message": "demo failure", "type": "server_error"}}, 503)
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "") or ""
        if FAIL_MARKER in json.dumps(user):  # a request this backend fails on, as a real one can (tests)
            return JSONResponse({"error": {"message": "demo failure on this request", "type": "server_error"}}, 500)
        text = _reply_text(name, model, user if isinstance(user, str) else json.dumps(user))
        words = text.split(" ")
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        cid = f"chatcmpl-demo-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        headers = {"x-demo-backend": name}
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
                headers=headers,
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(obj)}\n\n".encode()

        # A client may ask for fixed-size pieces instead of words (`x-demo-chunk-chars`), e.g. to split a word or a
        # placeholder across events the way a real tokenizer does.
        size = int(request.headers.get("x-demo-chunk-chars", "0") or 0)
        pieces = [text[i : i + size] for i in range(0, len(text), size)] if size > 0 else None

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""}, None)
            for i, word in enumerate(pieces or words):
                if token_delay_s:
                    await asyncio.sleep(token_delay_s)
                yield chunk({"content": word if i == 0 or pieces else " " + word}, None)
            yield chunk({}, "stop")
            if include_usage:
                obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
                obj |= {"choices": [], "usage": usage}
                yield f"data: {json.dumps(obj)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def other(request: Request) -> Response:
        """/v1/completions and /v1/responses: a labelled canned answer in each endpoint's own shape."""
        body = await request.json()
        seen_other.append({"headers": dict(request.headers), "body": body, "path": request.url.path})
        model = str(body.get("model", ""))
        text = _reply_text(name, model, "")
        if request.url.path.endswith("/completions"):
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
            return JSONResponse(
                {
                    "id": f"cmpl-demo-{uuid.uuid4().hex[:12]}",
                    "object": "text_completion",
                    "model": model,
                    "choices": [choice],
                },
                headers={"x-demo-backend": name},
            )
        item = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
        return JSONResponse(
            {
                "id": f"resp-demo-{uuid.uuid4().hex[:12]}",
                "object": "response",
                "model": model,
                "status": "completed",
                "output": [item],
            },
            headers={"x-demo-backend": name},
        )

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": name, "object": "model", "owned_by": "demo"}]})

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "demo": True, "name": name})

    async def requests_seen(_: Request) -> Response:
        return JSONResponse(list(seen))

    async def other_requests_seen(_: Request) -> Response:
        return JSONResponse(list(seen_other))

    async def fail_next(request: Request) -> Response:
        state["fail_next"] = int(request.query_params.get("n", "1"))
        return JSONResponse({"fail_next": state["fail_next"]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", other, methods=["POST"]),
            Route("/v1/responses", other, methods=["POST"]),
            Route("/v1/models", models),
            Route("/health", health),
            Route("/_demo/requests", requests_seen),
            Route("/_demo/other_requests", other_requests_seen),
            Route("/_demo/fail_next", fail_next, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    app = create_app(args.name, token_delay_s=args.token_delay_ms / 1000.0)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
