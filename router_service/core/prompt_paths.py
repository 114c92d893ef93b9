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

from router_service.errors import InvalidRequest

__all__ = ["GUARDED_PATHS", "as_chat"]

GUARDED_PATHS = {
    "/v1/completions": "completions",
    "/completions": "completions",
    "/v1/responses": "responses",
    "/responses": "responses",
}
_RESPONSES_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


def as_chat(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions view of a completions/responses body, for planning. Raises InvalidRequest."""
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
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("'instructions' must be a string.", "instructions")
    given = body.get("input")
    if isinstance(given, str):
        return [*messages, {"role": "user", "content": given}]
    if not isinstance(given, list):
        raise InvalidRequest("'input' must be a string or an array of input items.", "input")
    for i, item in enumerate(given):
        if not isinstance(item, dict):
            raise InvalidRequest(f"'input[{i}]' must be an object.", f"input[{i}]")
        if item.get("type", "message") != "message":
            continue  # tool outputs, reasoning items, references: no user prompt in them
        role = _RESPONSES_ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise InvalidRequest(f"'input[{i}].role' must be user, system, developer or assistant.", f"input[{i}].role")
        messages.append({"role": role, "content": _responses_text(i, item.get("content"))})
    return messages


def _responses_text(i: int, content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"'input[{i}].content' must be a string or an array of parts.", f"input[{i}].content")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise InvalidRequest(f"'input[{i}].content[{j}]' must be an object.", f"input[{i}].content[{j}]")
        text = part.get("text")
        if part.get("type") in ("input_text", "output_text", "text"):
            if not isinstance(text, str):
                raise InvalidRequest(f"'input[{i}].content[{j}].text' must be a string.", f"input[{i}].content[{j}]")
            texts.append(text)
    return "\n".join(texts)
