"""The explicit table of the paths the router serves, for both transports.

Every request is looked up here first. A prompt-carrying path (chat completions, completions, responses) is
validated against its schema, classified, guarded and routed; the model list and a single model are answered from
the config; anything else (Anthropic's `/v1/messages`, embeddings, files, a typo) is a 404 from the router in
OpenAI's error shape, so nothing reaches a backend unguarded. A known path with another method is a 405.

| path | methods | served as |
| --- | --- | --- |
| `/v1/chat/completions`, `/chat/completions` | POST | chat: validated, guarded, routed, cached |
| `/v1/completions`, `/completions` | POST | completions: validated, guarded, routed |
| `/v1/responses`, `/responses` | POST | responses: validated, guarded, routed |
| `/v1/models`, `/models` (a trailing `/` too) | GET, HEAD | the model list, from the config |
| `/v1/models/{model}`, `/models/{model}` | GET, HEAD | one model of that list, or a 404 `model_not_found` |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

__all__ = ["PROMPT_PATHS", "PathKind", "PathMatch", "lookup", "served_paths"]

PathKind = Literal["chat", "completions", "responses", "models", "model"]

PROMPT_PATHS: dict[str, PathKind] = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/completions": "completions",
    "/completions": "completions",
    "/v1/responses": "responses",
    "/responses": "responses",
}
_MODEL_LISTS = ("/v1/models", "/models")
_METHODS: dict[PathKind, tuple[str, ...]] = {
    "chat": ("POST",),
    "completions": ("POST",),
    "responses": ("POST",),
    "models": ("GET", "HEAD"),
    "model": ("GET", "HEAD"),
}


@dataclass(frozen=True)
class PathMatch:
    kind: PathKind
    model: str | None = None
    """The model id of `/v1/models/{model}`."""

    @property
    def methods(self) -> tuple[str, ...]:
        return _METHODS[self.kind]


def lookup(path: str) -> PathMatch | None:
    """The table's entry for a request path (its query string removed), or None: not served."""
    if path in PROMPT_PATHS:
        return PathMatch(PROMPT_PATHS[path])
    trimmed = path.rstrip("/")
    if trimmed in _MODEL_LISTS:
        return PathMatch("models")
    for prefix in _MODEL_LISTS:
        if path.startswith(prefix + "/") and len(path) > len(prefix) + 1:
            return PathMatch("model", unquote(path[len(prefix) + 1 :]))
    return None


def served_paths() -> str:
    """The served paths, for a 404's message."""
    return ", ".join(p for p in PROMPT_PATHS if p.startswith("/v1/")) + ", GET /v1/models"
