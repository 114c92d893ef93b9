"""Session fixtures that start the REAL components on free loopback ports and tear them down."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from local_stack.components import ManagedProcess, free_port, valkey_command, wait_tcp
from local_stack.local_llm import LLM_VENV, find_local_llm
from local_stack.paths import DEFAULT_CONFIG
from local_stack.stack import Ports, Stack, StackSettings


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.stop()

    def start(self) -> None:
        """Restart on the same port (for kill/restart fault tests)."""
        self.process.start()
        self.process.wait_ready(20)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Valkey 9 + RediSearch (vector search), on a free port."""
    port = free_port()
    data = tmp_path_factory.mktemp("valkey")
    proc = ManagedProcess(
        "valkey",
        valkey_command(port, data),
        Path(data) / "valkey.log",
        ready=lambda: wait_tcp(port, 0.1),
    ).start()
    proc.wait_ready(20)
    server = RedisServer(port, proc)
    yield server
    proc.stop()


# --- the whole stack ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningStack:
    stack: Stack
    ports: Ports
    config_path: Path
    backends: dict[str, int]  # endpoint name -> demo backend port

    @property
    def envoy_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.envoy}"

    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.router_http}"

    @property
    def admin_headers(self) -> dict[str, str]:
        """`Authorization` for the admin endpoints (GET /config, the cache's store/invalidate)."""
        return {"authorization": f"Bearer {self.stack.admin_token}"}

    def backend_requests(self, endpoint: str) -> list[dict[str, object]]:
        r = httpx.get(f"http://127.0.0.1:{self.backends[endpoint]}/_demo/requests", timeout=5)
        r.raise_for_status()
        seen: list[dict[str, object]] = r.json()
        return seen


def write_test_config(dest: Path, source: Path = DEFAULT_CONFIG, **overrides: object) -> dict[str, int]:
    """Copy a router config with every endpoint moved to a free loopback port; returns name -> port."""
    raw = yaml.safe_load(source.read_text())
    ports = {}
    for ep in raw.get("vllm_endpoints", []):
        ep["address"] = "127.0.0.1"  # the demo backends run here
        ep["port"] = free_port()
        ports[ep["name"]] = ep["port"]
    tools = raw.get("tools") or {}
    if tools.get("tools_db_path") and not Path(tools["tools_db_path"]).is_absolute():
        beside = source.parent / Path(tools["tools_db_path"]).name  # VSR writes paths relative to its checkout
        tools["tools_db_path"] = str(source.parent / tools["tools_db_path"] if not beside.exists() else beside)
    raw.update(overrides)
    dest.write_text(yaml.safe_dump(raw, sort_keys=False))
    return ports


def start_stack(
    run_dir: Path,
    source: Path = DEFAULT_CONFIG,
    *,
    with_cache: bool = True,
    local_llm: bool = False,
    llm_max_tokens_cap: int | None = None,
) -> RunningStack:
    """The stack on free ports; its endpoints answer with canned demo replies, or with the local LLM (every
    generation bounded to `llm_max_tokens_cap` tokens when given)."""
    config = run_dir / "config.yaml"
    backends = write_test_config(config, source)
    ports = Ports.free()
    settings = StackSettings(
        config=config,
        ports=ports,
        run_dir=run_dir,
        with_cache=with_cache,
        local_llm=local_llm,
        llm_max_tokens_cap=llm_max_tokens_cap,
    )
    s = Stack(settings)
    s.up()
    return RunningStack(s, ports, config, backends)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """Valkey, Triton, cache service, demo backends, router and Envoy — real processes on free ports."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        running.stack.down()


@pytest.fixture(scope="session")
def llm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The whole stack with the real local LLM (SmolLM2-135M-Instruct on llama-cpp-python) behind every endpoint.
    Skipped only where `scripts/setup.sh` could not install it; where it is installed it must start."""
    if find_local_llm() is None:
        pytest.skip(
            f"the local LLM is not installed in {LLM_VENV} (scripts/setup.sh installs it; it needs a C/C++ compiler "
            "and cmake, and SEMANTIC_ROUTER_LOCAL_LLM=0 skips it)"
        )
    running = start_stack(tmp_path_factory.mktemp("llm-stack"), local_llm=True)
    try:
        assert running.stack.llm is not None, (
            f"the local LLM is installed but did not start: {running.stack.backend_note}"
        )
        yield running
    finally:
        running.stack.down()


MODEL_REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


@pytest.fixture(scope="module")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """(gRPC port, log file) of a Triton serving only the installed `signals` model."""
    if not (MODEL_REPOSITORY / "signals" / "1" / "manifest.json").exists():
        pytest.skip("model_repository/signals is not installed: run `python -m build_engines install`")
    from local_stack.components import local_triton

    triton = local_triton(MODEL_REPOSITORY, tmp_path_factory.mktemp("triton"))
    triton.process.start()
    try:
        triton.process.wait_ready(120)
        yield triton.grpc_port, triton.log
    finally:
        triton.process.stop()
