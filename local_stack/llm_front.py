"""The front of the local LLM: one process listening on every demo endpoint's port, forwarding to the one
llama-cpp-python server (see local_stack.local_llm).

Each port is one endpoint of the router config (`small-endpoint` on 8101, ...); a request gets the same model
whichever port it reaches. The front sets `max_tokens` when the request sets no limit (`--max-tokens`), passes
answers through unchanged (streamed ones as they come) and adds `x-local-llm-endpoint: <endpoint name>`.
llama-cpp-python has no Responses API: `POST /v1/responses` (not streamed) is answered by translating it to a chat
completion and back. GET /health is 200 while the LLM server accepts connections.

The chat path reads messages as OpenAI sends them and llama-cpp-python's chat templates do not: content as an array
of parts becomes its text parts joined by newlines, an assistant turn with only tool calls gets empty text; an image,
audio or file part is a 400 saying the local model reads text only. A request the model cannot serve (a limit past
its context, several choices) is a 400 with the reason and the field, as vLLM answers it, never a 500.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from local_stack.local_llm import CONTEXT_TOKENS, DEFAULT_MAX_TOKENS
from wire.responses import input_messages

__all__ = [
    "ENDPOINT_HEADER",
    "RequestFault",
    "chat_to_response",
    "create_app",
    "responses_to_chat",
    "text_completion",
    "text_only_chat",
    "with_default_max_tokens",
]

ENDPOINT_HEADER = "x-local-llm-endpoint"
_LIMIT_KEYS = ("max_tokens", "max_completion_tokens")
_NOT_TEXT = {"image_url": "an image", "input_audio": "audio", "file": "a file"}


class RequestFault(ValueError):
    """What the local model cannot serve in a request: a 400 with `param` naming the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "user"}
_ROLES["function"] = "user"
"""Roles as the model's chat template knows them: a developer message is a system one, a tool's output is input."""
MAX_SEED = 2**31 - 1


def text_only_chat(body: dict[str, Any], context_tokens: int = CONTEXT_TOKENS) -> dict[str, Any]:
    """A chat request as the local model serves it: each message a role its chat template knows and its text (text
    parts joined by newlines; an assistant turn with only tool calls reads as empty text), and only the fields the
    model uses (`_sampling`). Raises RequestFault for a part that is not text (the model reads text only), a
    malformed message, a limit past the context, or n > 1."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestFault("'messages' must be a non-empty array of messages.", "messages")
    if body.get("n") not in (None, 1):
        raise RequestFault("the local model generates one choice per request: send n=1.", "n")
    return {**_sampling(body, context_tokens), "messages": [_text_message(i, m) for i, m in enumerate(messages)]}


def text_completion(body: dict[str, Any], context_tokens: int = CONTEXT_TOKENS) -> dict[str, Any]:
    """A completions request as the local model serves it: one text prompt (a string, or an array of one), only
    the fields the model uses. Raises RequestFault for token-id, empty or several prompts and a limit past the
    context."""
    prompt = body.get("prompt")
    texts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(texts, list) or not texts or not all(isinstance(p, str) for p in texts):
        raise RequestFault("the local model takes a text prompt: a string or an array of strings.", "prompt")
    if len(texts) > 1:
        raise RequestFault("the local model completes one prompt per request: send one string.", "prompt")
    if not texts[0].strip():
        raise RequestFault("the prompt is empty: the local model needs text to continue.", "prompt")
    return {**_sampling(body, context_tokens), "prompt": texts[0]}


def _sampling(body: dict[str, Any], context_tokens: int) -> dict[str, Any]:
    """The fields the local model uses, where they hold what it reads: model, stream, the limit, temperature,
    top_p, stop and seed. Others (tools, response_format, logprobs, logit_bias, ...) are not served by a 135M
    text model and are left out; a `null` means not set."""
    _check_limits(body, context_tokens)
    out: dict[str, Any] = {"model": body["model"] if isinstance(body.get("model"), str) else "local"}
    if body.get("stream") is True:
        out["stream"] = True
    limits = [body.get(k) for k in _LIMIT_KEYS]
    limit = next((v for v in limits if isinstance(v, int) and not isinstance(v, bool) and v > 0), None)
    if limit is not None:
        out["max_tokens"] = limit
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 2:
            out[key] = value
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    if stops and all(isinstance(x, str) and x for x in stops):
        out["stop"] = stops
    seed = body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED:
        out["seed"] = seed
    return out


def _check_limits(body: dict[str, Any], context_tokens: int) -> None:
    for key in _LIMIT_KEYS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > context_tokens:
            raise RequestFault(f"'{key}' is {value}, over the local model's context of {context_tokens} tokens.", key)


def _text_message(i: int, message: object) -> dict[str, str]:
    where = f"messages[{i}]"
    role = _ROLES.get(message.get("role")) if isinstance(message, dict) else None  # type: ignore[arg-type]
    if not isinstance(message, dict) or role is None:
        raise RequestFault(f"'{where}' must be an object with a role: {', '.join(_ROLES)}.", where)
    content = message.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if content is None and message["role"] in ("assistant", "function"):
        return {"role": role, "content": ""}
    if not isinstance(content, list):
        raise RequestFault(f"'{where}.content' must be a string or an array of content parts.", f"{where}.content")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _NOT_TEXT:
            raise RequestFault(
                f"'{where}.content[{j}]' is {_NOT_TEXT[kind]}: the local model "
                "(SmolLM2-135M-Instruct) reads text only; send text parts.",
                f"{where}.content[{j}]",
            )
        if kind not in ("text", "refusal") or not isinstance(part.get(kind), str):  # type: ignore[union-attr]
            raise RequestFault(
                f'\'{where}.content[{j}]\' must be a text part: {{"type": "text", "text": "..."}}.',
                f"{where}.content[{j}]",
            )
        texts.append(part[kind])  # type: ignore[index]
    return {"role": role, "content": "\n".join(texts)}


def with_default_max_tokens(body: dict[str, Any], default: int, cap: int | None = None) -> dict[str, Any]:
    """`body` with `max_tokens: default` added when it sets no positive limit of its own; with `cap`, every limit
    at most `cap` (a run that must bound its time, such as the fuzz run's stack)."""
    if not any(isinstance(body.get(k), int) and body[k] > 0 for k in _LIMIT_KEYS):
        body = {**{k: v for k, v in body.items() if k not in _LIMIT_KEYS}, "max_tokens": default}
    if cap is None:
        return body
    return {k: min(v, cap) if k in _LIMIT_KEYS and isinstance(v, int) and v > 0 else v for k, v in body.items()}


def responses_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses API request (`input`, `instructions`, `max_output_tokens`, `temperature`, `top_p`) as a chat
    completion request, its messages read as the router reads them (`wire.responses`). Raises ValueError for what
    this translation does not carry (streaming, tools) or a malformed input."""
    if body.get("stream"):
        raise ValueError("streamed Responses are not served by the local LLM: send stream=false")
    if body.get("tools"):
        raise ValueError("tools are not served by the local LLM's Responses translation")
    given = body.get("input")
    for i, item in enumerate(given if isinstance(given, list) else ()):
        parts = item.get("content") if isinstance(item, dict) else None
        for j, part in enumerate(parts if isinstance(parts, list) else ()):
            if isinstance(part, dict) and part.get("type") in ("input_image", "input_file", "input_audio"):
                raise RequestFault(
                    f"'input[{i}].content[{j}]' is {part['type']}: the local model (SmolLM2-135M-Instruct) reads "
                    "text only; send input_text parts.",
                    f"input[{i}].content[{j}]",
                )
    messages = input_messages(body)
    if not messages:
        raise ValueError("input must hold at least one message")
    chat: dict[str, Any] = {"model": body.get("model") or "local", "messages": messages}
    limit = body.get("max_output_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool):
        if limit > CONTEXT_TOKENS:
            raise RequestFault(
                f"'max_output_tokens' is {limit}, over the local model's context of {CONTEXT_TOKENS} tokens.",
                "max_output_tokens",
            )
        chat["max_tokens"] = limit
    for key in ("temperature", "top_p"):
        if isinstance(body.get(key), int | float):
            chat[key] = body[key]
    return chat


def chat_to_response(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat completion as a Responses API `response` object (one assistant message with one output_text)."""
    choice = (completion.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") or ""
    usage = completion.get("usage") or {}
    prompt, output = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    incomplete = choice.get("finish_reason") == "length"
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(completion.get("created") or time.time()),
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex}",
                "status": "incomplete" if incomplete else "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output},
    }


async def _accepts(host: str, port: int) -> bool:
    """The LLM server accepts connections (a request would wait behind a running generation: llama-cpp-python's
    server holds one lock for every model route, GET /v1/models included)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status, "param": param}}, status)


def _fault(e: RequestFault) -> JSONResponse:
    return _error(400, str(e), "invalid_request_error", e.param)


async def _json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; raises RequestFault (not UTF-8, not JSON, not an object)."""
    try:
        body = json.loads((await request.body()).decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestFault("the request body is not valid UTF-8") from None
    except (ValueError, RecursionError):
        raise RequestFault("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise RequestFault("the request body must be a JSON object")
    return body


def create_app(
    upstream: str,
    endpoints: dict[int, str],
    *,
    max_tokens: int,
    client: httpx.AsyncClient,
    context_tokens: int = CONTEXT_TOKENS,
    max_tokens_cap: int | None = None,
) -> Starlette:
    """`endpoints` maps each listening port to its endpoint name; `context_tokens` is the LLM server's n_ctx;
    `max_tokens_cap` bounds every generation (None: only the default for requests without a limit)."""

    upstream_url = httpx.URL(upstream)

    def endpoint(request: Request) -> str:
        server = request.scope.get("server") or ("", 0)
        return endpoints.get(int(server[1]), "unknown")

    async def generate(request: Request) -> Response:
        try:
            body = await _json_object(request)
            if request.url.path == "/v1/chat/completions":
                body = text_only_chat(body, context_tokens)
            else:
                body = text_completion(body, context_tokens)
        except RequestFault as e:
            return _fault(e)
        body = with_default_max_tokens(body, max_tokens, max_tokens_cap)
        upstream_request = client.build_request("POST", f"{upstream}{request.url.path}", json=body)
        try:
            answer = await client.send(upstream_request, stream=True)
        except httpx.HTTPError as e:
            return _error(502, f"the local LLM did not answer: {type(e).__name__}", "server_error")
        headers = {ENDPOINT_HEADER: endpoint(request)}
        media_type = answer.headers.get("content-type", "application/json")
        if body.get("stream"):

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for piece in answer.aiter_raw():
                        yield piece
                finally:  # also when the client goes away mid-stream
                    await answer.aclose()

            return StreamingResponse(relay(), answer.status_code, headers=headers, media_type=media_type)
        try:
            content = await answer.aread()
        finally:
            await answer.aclose()
        return Response(content, answer.status_code, headers=headers, media_type=media_type)

    async def responses(request: Request) -> Response:
        try:
            body = await _json_object(request)
            chat = text_only_chat(responses_to_chat(body), context_tokens)
            chat = with_default_max_tokens(chat, max_tokens, max_tokens_cap)
        except RequestFault as e:
            return _fault(e)
        except ValueError as e:
            return _error(400, str(e), "invalid_request_error")
        try:
            answer = await client.post(f"{upstream}/v1/chat/completions", json=chat)
        except httpx.HTTPError as e:
            return _error(502, f"the local LLM did not answer: {type(e).__name__}", "server_error")
        headers = {ENDPOINT_HEADER: endpoint(request)}
        if answer.status_code != 200:
            return Response(answer.content, answer.status_code, headers=headers, media_type="application/json")
        try:
            completion = answer.json()
        except ValueError:
            return _error(502, "the local LLM's answer is not JSON", "server_error")
        return JSONResponse(chat_to_response(completion, chat["model"]), headers=headers)

    async def models(_: Request) -> Response:
        try:
            answer = await client.get(f"{upstream}/v1/models")
        except httpx.HTTPError as e:
            return _error(502, f"the local LLM did not answer: {type(e).__name__}", "server_error")
        return Response(answer.content, answer.status_code, media_type="application/json")

    async def health(request: Request) -> Response:
        ok = await _accepts(upstream_url.host, upstream_url.port or 80)
        body = {"status": "ok" if ok else "down", "endpoint": endpoint(request), "local_llm": upstream}
        return JSONResponse(body, 200 if ok else 503)

    async def not_found(request: Request) -> Response:
        return _error(404, f"{request.url.path} is not served by the local LLM", "invalid_request_error")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", generate, methods=["POST"]),
            Route("/v1/completions", generate, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/models", models),
            Route("/health", health),
            Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


async def _serve(args: argparse.Namespace, endpoints: dict[int, str]) -> None:
    # Generation on a small CPU takes seconds; a streamed answer may pause between tokens.
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0)) as client:
        app = create_app(
            args.upstream.rstrip("/"),
            endpoints,
            max_tokens=args.max_tokens,
            client=client,
            context_tokens=args.context_tokens,
            max_tokens_cap=args.max_tokens_cap,
        )
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        await uvicorn.Server(config).serve(sockets=[_listen(port) for port in endpoints])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="the LLM server, e.g. http://127.0.0.1:18555")
    parser.add_argument(
        "--endpoint", action="append", required=True, metavar="NAME=PORT", help="one per endpoint (repeat)"
    )
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="when a request sets no limit")
    parser.add_argument("--context-tokens", type=int, default=CONTEXT_TOKENS, help="the LLM server's n_ctx")
    parser.add_argument("--max-tokens-cap", type=int, default=None, help="bound every generation to this many tokens")
    args = parser.parse_args()
    endpoints = {int(port): name for name, port in (e.rsplit("=", 1) for e in args.endpoint)}
    asyncio.run(_serve(args, endpoints))


if __name__ == "__main__":
    main()
