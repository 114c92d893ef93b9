"""Guards for the other prompt-carrying OpenAI paths: `/v1/completions` and `/v1/responses`.

Their bodies are read as a chat request (each prompt, or each input item, a message) so the same jailbreak and PII
checks and the same model choice apply. What goes upstream is the client's own body with only `model` rewritten
to the chosen model: no system prompt, reasoning field or tool selection is injected into shapes that differ from
chat, and the semantic cache is not used on these paths. A refusal is always HTTP 403 with an OpenAI error body
(VSR's `content_filter` form is a chat completion, which a completions or responses client could not read); an
unavailable check is a 503 as on the chat path.
"""

from __future__ import annotations

from typing import Any

from router_service.core.openai_schema import check_request
from router_service.errors import InvalidRequest
from wire.responses import ResponsesInputError, input_messages

__all__ = ["as_chat"]


def as_chat(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions view of a completions/responses body, for planning. Raises InvalidRequest when the body
    is not valid for its path's schema (`openai_schema`) or holds nothing the guards can read."""
    check_request(kind, body)
    messages = _completion_messages(body) if kind == "completions" else _responses_messages(body)
    if not messages:
        field = "prompt" if kind == "completions" else "input"
        raise InvalidRequest(f"'{field}' must hold at least one text.", field)
    view: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if "stream" in body:
        view["stream"] = body["stream"]
    return view


def _completion_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return [{"role": "user", "content": p} for p in prompt]
    if isinstance(prompt, list) and all(isinstance(p, int) for p in prompt):
        raise InvalidRequest("token-id prompts cannot be checked by the router's guards; send text.", "prompt")
    raise InvalidRequest("'prompt' must be a string or an array of strings.", "prompt")


def _responses_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return list(input_messages(body))
    except ResponsesInputError as e:
        raise InvalidRequest(str(e), e.param) from e
