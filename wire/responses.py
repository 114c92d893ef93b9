"""The OpenAI Responses API's `instructions` + `input` as chat messages (pure functions).

One reading for everyone who needs it: the router's guards check these messages on `/v1/responses`, and the local
LLM's front sends them as a chat request. Items that are not messages (tool outputs, reasoning items, references)
carry no prompt and are skipped; `developer` reads as `system`; a message's text parts are joined by newlines.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ResponsesInputError", "input_messages"]

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_PARTS = ("input_text", "output_text", "text")


class ResponsesInputError(ValueError):
    """A malformed `instructions` or `input`; `param` names the offending field (`input[2].role`)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def input_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """`instructions` (a system message) and the `input` messages, in order. Raises ResponsesInputError."""
    messages: list[dict[str, str]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif instructions is not None and not isinstance(instructions, str):
        raise ResponsesInputError("'instructions' must be a string.", "instructions")
    given = body.get("input")
    if isinstance(given, str):
        return [*messages, {"role": "user", "content": given}]
    if not isinstance(given, list):
        raise ResponsesInputError("'input' must be a string or an array of input items.", "input")
    for i, item in enumerate(given):
        if not isinstance(item, dict):
            raise ResponsesInputError(f"'input[{i}]' must be an object.", f"input[{i}]")
        if item.get("type", "message") != "message":
            continue  # tool outputs, reasoning items, references: no prompt in them
        role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise ResponsesInputError(
                f"'input[{i}].role' must be user, system, developer or assistant.", f"input[{i}].role"
            )
        messages.append({"role": role, "content": _text(i, item.get("content"))})
    return messages


def _text(i: int, content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ResponsesInputError(f"'input[{i}].content' must be a string or an array of parts.", f"input[{i}].content")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise ResponsesInputError(f"'input[{i}].content[{j}]' must be an object.", f"input[{i}].content[{j}]")
        text = part.get("text")
        if part.get("type") in _TEXT_PARTS:
            if not isinstance(text, str):
                raise ResponsesInputError(
                    f"'input[{i}].content[{j}].text' must be a string.", f"input[{i}].content[{j}]"
                )
            texts.append(text)
    return "\n".join(texts)
