"""The router's explicit path table: what each path is served as, and that nothing else is."""

from __future__ import annotations

import pytest

from router_service.core.path_table import PathMatch, lookup
from router_service.core.reply import wants_body


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("/v1/chat/completions", PathMatch("chat")),
        ("/chat/completions", PathMatch("chat")),
        ("/v1/completions", PathMatch("completions")),
        ("/v1/responses", PathMatch("responses")),
        ("/responses", PathMatch("responses")),
        ("/v1/models", PathMatch("models")),
        ("/v1/models/", PathMatch("models")),
        ("/models", PathMatch("models")),
        ("/v1/models/qwen3-32b", PathMatch("model", "qwen3-32b")),
        ("/v1/models/Qwen/Qwen3-32B", PathMatch("model", "Qwen/Qwen3-32B")),
        ("/v1/models/Qwen%2FQwen3-32B", PathMatch("model", "Qwen/Qwen3-32B")),
        ("/v1/messages", None),  # Anthropic's API: not served yet, so never forwarded unguarded
        ("/v1/embeddings", None),
        ("/v1/chat/completions/", None),
        ("/v1/chat/completionsx", None),
        ("/V1/chat/completions", None),
        ("/", None),
        ("", None),
        ("/health", None),
    ],
)
def test_lookup(path: str, match: PathMatch | None) -> None:
    assert lookup(path) == match


def test_prompt_paths_take_post_and_models_get() -> None:
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
        assert lookup(path).methods == ("POST",)  # type: ignore[union-attr]
        assert wants_body("POST", path) and not wants_body("GET", path)
    assert lookup("/v1/models").methods == ("GET", "HEAD")  # type: ignore[union-attr]
    assert not wants_body("POST", "/v1/messages")
