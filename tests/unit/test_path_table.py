"""The router's explicit path table: what each path is served as, and that nothing else is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from local_stack.render_envoy import COMPOSE_VALUES, render
from router_service.core.path_table import PROMPT_PATHS, PathMatch, lookup
from router_service.core.reply import wants_body

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("config", ["compose", "deploy/k8s/base/envoy/envoy.yaml"])
def test_envoy_routes_only_the_prompt_paths_to_a_backend(config: str) -> None:
    """Envoy's route table is the backstop of the router's: the prompt paths go to the backends, every other path
    gets Envoy's own 404 in OpenAI's shape (the router answers them first; this holds should it not)."""
    text = render(COMPOSE_VALUES) if config == "compose" else (ROOT / config).read_text()
    listener = yaml.safe_load(text)["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    [host] = manager["route_config"]["virtual_hosts"]
    *prompt_routes, last = host["routes"]
    assert {r["match"]["path"] for r in prompt_routes} == set(PROMPT_PATHS)
    assert all(r["route"]["cluster"] == "llm_backends" for r in prompt_routes)
    assert last["match"] == {"prefix": "/"} and last["direct_response"]["status"] == 404
    error = json.loads(last["direct_response"]["body"]["inline_string"])["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "not_found" and error["message"]
