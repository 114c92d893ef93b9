"""Start, watch and stop the whole local stack: Valkey + RediSearch, Triton, cache service, the backends for the
config's loopback endpoints that nothing listens on (the local LLM, else canned demo backends), router, Envoy — each
a real process on loopback, logging into a run folder.

The integration tests start the same `Stack` on free ports, so what the tests exercise is what users run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import yaml

from cache_service.auth import ENV_VAR as ADMIN_TOKEN_ENV
from cache_service.auth import RUN_DIR_ENV_VAR, resolve_admin_token
from local_stack.components import (
    ComponentError,
    ManagedProcess,
    envoy_command,
    free_port,
    port_in_use,
    stop_process_group,
    triton_command,
    valkey_command,
    wait_http_ok,
    wait_tcp,
)
from local_stack.local_llm import ENV_SWITCH, LLM_VENV, MODEL_ALIAS, find_local_llm
from local_stack.paths import REPO_ROOT, cache_dir
from local_stack.render_envoy import render as render_envoy
from local_stack.supervisor import Supervisor, read_supervisor_state

__all__ = ["DemoBackend", "LocalLLMState", "Ports", "Stack", "StackSettings", "read_state", "stop_from_state"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Ports:
    envoy: int = 8801
    envoy_admin: int = 19000
    extproc: int = 50051
    router_http: int = 8080
    router_metrics: int = 9190
    triton_http: int = 8000
    triton_grpc: int = 8001
    triton_metrics: int = 8002
    redis: int = 6379
    cache: int = 8090

    @staticmethod
    def free() -> Ports:
        return Ports(**{name: free_port() for name in Ports.__dataclass_fields__})


@dataclass(frozen=True)
class StackSettings:
    config: Path
    ports: Ports = field(default_factory=Ports)
    run_dir: Path = REPO_ROOT / ".run"
    model_repository: Path = REPO_ROOT / "model_repository"
    with_cache: bool = True
    demo_backends: bool = True
    """Start backends for the config's loopback endpoints that nothing listens on."""
    local_llm: bool = False
    """Those backends are the real local LLM (local_stack.local_llm) when it is installed; otherwise, and always
    when False, canned demo backends (deterministic replies, which most integration tests check)."""
    llm_venv: Path = LLM_VENV
    """Where `scripts/setup.sh` installs the local LLM."""
    llm_max_tokens_cap: int | None = None
    """Bound every generation of the local LLM to this many tokens (a run that must bound its time: the fuzz)."""
    router_env: dict[str, str] = field(default_factory=dict)
    supervise: bool = True
    """Restart a component that exits, with backoff (local_stack.supervisor)."""


@dataclass(frozen=True)
class DemoBackend:
    """A canned demo backend (not an LLM) on one endpoint's port."""

    name: str
    port: int


@dataclass(frozen=True)
class LocalLLMState:
    """The local LLM's server and the endpoints its front serves (name -> port)."""

    model: str
    port: int
    endpoints: dict[str, int]


def _endpoints(config: Path) -> list[tuple[str, str, int]]:
    raw = yaml.safe_load(config.read_text()) or {}
    return [(str(e["name"]), str(e["address"]), int(e["port"])) for e in raw.get("vllm_endpoints") or []]


def _cache_limits(config: Path) -> list[str]:
    """The cache service's entry bound from the router config's `semantic_cache.max_entries` (VSR's key), if set."""
    raw = yaml.safe_load(config.read_text()) or {}
    value = (raw.get("semantic_cache") or {}).get("max_entries")
    return ["--max-entries", str(value)] if isinstance(value, int) and value >= 1 else []


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.processes: list[ManagedProcess] = []
        self.demo: list[DemoBackend] = []
        self.llm: LocalLLMState | None = None
        self.backend_note = ""
        """Why the canned demo backends answer instead of the local LLM (empty when it answers or none are needed)."""
        self.by_name: dict[str, ManagedProcess] = {}
        self.admin_token = ""
        self.supervisor: Supervisor | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def up(self, log: bool = True) -> None:
        p = self.s.ports
        self._check_model_repository()
        self._check_ports_free()
        self.s.run_dir.mkdir(parents=True, exist_ok=True)
        py = sys.executable
        # One admin token for the router and the cache service: the env var if set, else the run folder's file.
        self.admin_token = resolve_admin_token(None, self.s.run_dir)
        service_env = {**os.environ, ADMIN_TOKEN_ENV: self.admin_token, RUN_DIR_ENV_VAR: str(self.s.run_dir)}
        try:
            if self.s.with_cache:
                self._start(
                    "redis",
                    valkey_command(p.redis, self.s.run_dir / "redis"),
                    lambda: wait_tcp(p.redis, 0.1),
                    timeout=30,
                )
            argv, env = triton_command(
                self.s.model_repository,
                http_port=p.triton_http,
                grpc_port=p.triton_grpc,
                metrics_port=p.triton_metrics,
                cache_dir=cache_dir(),
            )
            self._start(
                "triton",
                argv,
                lambda: wait_http_ok(f"http://127.0.0.1:{p.triton_http}/v2/health/ready", 0.2),
                env=env,
                timeout=180,
            )
            if self.s.with_cache:
                self._start(
                    "cache",
                    [
                        py,
                        "-m",
                        "cache_service",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(p.cache),
                        "--redis-url",
                        f"redis://127.0.0.1:{p.redis}/0",
                        *_cache_limits(self.s.config),
                    ],
                    lambda: wait_http_ok(f"http://127.0.0.1:{p.cache}/health", 0.2),
                    env=service_env,
                    timeout=60,
                )
            if self.s.demo_backends:
                self._start_backends(py)
            router_argv = [
                py,
                "-m",
                "router_service",
                "--config",
                str(self.s.config),
                "--host",
                "127.0.0.1",
                "--port",
                str(p.router_http),
                "--metrics-port",
                str(p.router_metrics),
                "--grpc-port",
                str(p.extproc),
                "--triton-url",
                f"127.0.0.1:{p.triton_grpc}",
                "--model-repository",
                str(self.s.model_repository),
            ]
            if self.s.with_cache:
                router_argv += ["--cache-url", f"http://127.0.0.1:{p.cache}"]
                router_argv += ["--redis-url", f"redis://127.0.0.1:{p.redis}/0"]  # conversation pins
            self._start(
                "router",
                router_argv,
                lambda: wait_http_ok(f"http://127.0.0.1:{p.router_http}/health", 0.2),
                env={**service_env, **self.s.router_env},
                timeout=90,
            )
            envoy_cfg = self._render_envoy()
            self._start(
                "envoy",
                envoy_command(envoy_cfg),
                lambda: wait_http_ok(f"http://127.0.0.1:{p.envoy_admin}/ready", 0.2),
                timeout=60,
            )
        except BaseException:
            self.down()
            raise
        if self.s.supervise:
            self.supervisor = Supervisor(self.processes, self.s.run_dir).start()
        self._write_state()

    def down(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        self.by_name.clear()
        state = self.s.run_dir / "stack.json"
        if state.exists():
            state.unlink()

    def dead(self) -> list[str]:
        return [proc.name for proc in self.processes if not proc.alive()]

    # -- backends for endpoints nothing listens on ------------------------------------------------------------

    def _start_backends(self, py: str) -> None:
        missing = {
            name: port
            for name, address, port in _endpoints(self.s.config)
            if address in _LOOPBACK and not port_in_use(port)
        }
        if not missing:
            return
        if not self.s.local_llm:
            self.backend_note = f"the local LLM is off ({ENV_SWITCH}=0, or a stack that wants deterministic replies)"
        elif self._start_local_llm(py, missing):
            return
        for name, port in missing.items():
            self._start(
                f"demo-{name}",
                [py, "-m", "local_stack.demo_backend", "--port", str(port), "--name", name],
                lambda port=port: wait_http_ok(f"http://127.0.0.1:{port}/health", 0.2),  # type: ignore[misc]
                timeout=30,
            )
            self.demo.append(DemoBackend(name, port))

    def _start_local_llm(self, py: str, endpoints: dict[str, int]) -> bool:
        """The local LLM server and its front on `endpoints`; False (with `backend_note` saying why, and nothing
        left running) when it is not installed or does not come up."""
        found = find_local_llm(self.s.llm_venv)
        if found is None:
            self.backend_note = (
                f"the local LLM is not installed in {self.s.llm_venv} (`make setup` installs it; it needs a "
                "C/C++ compiler and cmake)"
            )
            print(f"  {self.backend_note}: canned demo backends answer", file=sys.stderr)
            return False
        port = free_port()
        front = [py, "-m", "local_stack.llm_front", "--upstream", f"http://127.0.0.1:{port}"]
        front += [arg for name, p in endpoints.items() for arg in ("--endpoint", f"{name}={p}")]
        if self.s.llm_max_tokens_cap is not None:
            front += ["--max-tokens-cap", str(self.s.llm_max_tokens_cap)]
        started = len(self.processes)
        try:
            self._start(
                "local-llm",
                found.server_command(port),
                lambda: wait_http_ok(f"http://127.0.0.1:{port}/v1/models", 0.2),
                timeout=120,
            )
            self._start(
                "llm-front",
                front,
                lambda: all(wait_http_ok(f"http://127.0.0.1:{p}/health", 0.2) for p in endpoints.values()),
                timeout=30,
            )
            _check_generates(next(iter(endpoints.values())))
        except ComponentError as e:
            for proc in self.processes[started:]:
                proc.stop()
                del self.by_name[proc.name]
            del self.processes[started:]
            self.backend_note = f"the local LLM did not start ({str(e).splitlines()[0]})"
            print(f"  {self.backend_note}: canned demo backends answer", file=sys.stderr)
            return False
        self.llm = LocalLLMState(found.model.name, port, dict(endpoints))
        return True

    # -- helpers -----------------------------------------------------------------------------------------

    def _start(
        self,
        name: str,
        argv: list[str],
        ready: object,
        *,
        env: dict[str, str] | None = None,
        timeout: float,
    ) -> ManagedProcess:
        started = time.monotonic()
        proc = ManagedProcess(
            name,
            argv,
            self.s.run_dir / "logs" / f"{name}.log",
            env=env,
            cwd=REPO_ROOT,
            ready=ready,  # type: ignore[arg-type]
        ).start()
        self.processes.append(proc)
        self.by_name[name] = proc
        proc.wait_ready(timeout)
        print(f"  {name:<14} ready in {time.monotonic() - started:5.1f}s  (pid {proc.pid})", file=sys.stderr)
        return proc

    def _check_model_repository(self) -> None:
        version = self.s.model_repository / "signals" / "1"
        manifest = version / "manifest.json"
        if not manifest.exists():
            raise ComponentError(f"{manifest} is missing: run `make setup` (it builds the models) first")
        served = json.loads(manifest.read_text()).get("serving", {}).get("onnx_file", "model.onnx")
        if not (version / served).exists():
            raise ComponentError(f"{version / served} is missing: run `make setup` (it builds the models) first")

    def _check_ports_free(self) -> None:
        busy = [(name, port) for name, port in asdict(self.s.ports).items() if port_in_use(port)]
        if busy:
            listing = ", ".join(f"{port} ({name})" for name, port in busy)
            raise ComponentError(
                f"port(s) already in use: {listing}. Stop whatever listens there "
                "(`semantic-router stack down` if it is an earlier stack) or shift the ports with `--port-offset N`."
            )

    def _render_envoy(self) -> Path:
        p = self.s.ports
        out = self.s.run_dir / "envoy.yaml"
        out.write_text(
            render_envoy(
                {
                    "LISTEN_ADDRESS": "127.0.0.1",
                    "LISTENER_PORT": p.envoy,
                    "EXTPROC_ADDRESS": "127.0.0.1",
                    "EXTPROC_PORT": p.extproc,
                    "ADMIN_ADDRESS": "127.0.0.1",
                    "ADMIN_PORT": p.envoy_admin,
                }
            )
        )
        return out

    def _write_state(self) -> None:
        state = {
            "config": str(self.s.config),
            "ports": asdict(self.s.ports),
            "processes": [{"name": proc.name, "pid": proc.pid} for proc in self.processes],
            "demo_backends": [asdict(d) for d in self.demo],
            "local_llm": asdict(self.llm) if self.llm is not None else None,
            "backend_note": self.backend_note,
            "logs": str(self.s.run_dir / "logs"),
            "launcher_pid": os.getpid(),
            "supervised": self.supervisor is not None,
        }
        (self.s.run_dir / "stack.json").write_text(json.dumps(state, indent=2))


def _check_generates(port: int) -> None:
    """One token through the front: the model loads and generates (and the first real answer is not slowed by
    warm-up)."""
    body = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60)
        ok = r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        raise ComponentError(f"the local LLM did not generate: {type(e).__name__}: {e}") from e
    if not ok:
        raise ComponentError(f"the local LLM did not generate: HTTP {r.status_code} {r.text[:200]}")


def read_state(run_dir: Path) -> dict[str, object] | None:
    path = run_dir / "stack.json"
    if not path.exists():
        return None
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def stop_from_state(run_dir: Path) -> list[str]:
    """Stop a detached stack from its state file; returns the names stopped."""
    state = read_state(run_dir)
    if state is None:
        return []
    procs = state.get("processes")
    assert isinstance(procs, list)
    launcher = state.get("launcher_pid")
    if isinstance(launcher, int) and launcher != os.getpid() and _alive(launcher):
        # The launcher supervises the stack: stop it first (it takes the stack down in order) so that nothing
        # is restarted behind our back; whatever is left after its grace period is stopped below.
        os.kill(launcher, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(launcher) and time.monotonic() < deadline:
            time.sleep(0.2)
    pids = {name: int(s["pid"]) for name, s in read_supervisor_state(run_dir).items() if "pid" in s}  # type: ignore[call-overload]
    stopped = []
    for entry in reversed(procs):
        stop_process_group(pids.get(str(entry["name"]), int(entry["pid"])))
        stopped.append(str(entry["name"]))
    (run_dir / "stack.json").unlink(missing_ok=True)
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
