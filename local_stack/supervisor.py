"""Keep the local stack's processes running: a component that exits is restarted with exponential backoff.

One thread polls every process; an exit is logged (to the stack's `logs/supervisor.log` and stderr) with its exit
status, and the process is started again after 0.5 s, 1 s, 2 s ... up to `max_backoff_s`. A component that then
stays up for `stable_s` gets its backoff reset. `semantic-router stack status` shows the restart counts, which the
supervisor writes to the run folder's `supervisor.json`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from local_stack.components import ComponentError, ManagedProcess

__all__ = ["ComponentState", "Supervisor", "read_supervisor_state"]


@dataclass
class ComponentState:
    name: str
    pid: int
    restarts: int = 0
    last_exit_code: int | None = None
    last_exit_at: float | None = None
    """Unix time of the last exit seen."""
    last_restart_at: float | None = None
    state: str = "running"
    """running, restarting (waiting out its backoff or for readiness) or failed (its last start failed)."""


class Supervisor:
    def __init__(
        self,
        processes: Sequence[ManagedProcess],
        run_dir: Path,
        *,
        poll_s: float = 0.5,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
        ready_timeout_s: Callable[[str], float] = lambda name: 180.0 if name == "triton" else 60.0,
    ) -> None:
        self.processes = list(processes)
        self.run_dir = run_dir
        self.poll_s = poll_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.ready_timeout_s = ready_timeout_s
        self.states = {p.name: ComponentState(p.name, p.pid) for p in self.processes}
        self._backoff = dict.fromkeys(self.states, first_backoff_s)
        self._next_start: dict[str, float] = {}
        self._started_at = dict.fromkeys(self.states, time.monotonic())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = (run_dir / "logs" / "supervisor.log").open("a", buffering=1)

    def start(self) -> Supervisor:
        self._write()
        self._thread = threading.Thread(target=self._loop, name="stack-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._log.close()

    def _say(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._log.write(f"{stamp} {line}\n")

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            changed = False
            for proc in self.processes:
                changed |= self._check(proc)
            if changed:
                self._write()

    def _check(self, proc: ManagedProcess) -> bool:
        state = self.states[proc.name]
        now = time.monotonic()
        if proc.held:  # stopped on purpose (a test, or the stack going down): not ours to restart
            self._next_start.pop(proc.name, None)
            return False
        if proc.alive():
            if state.pid != proc.pid:  # started again by someone else
                state.pid, state.state = proc.pid, "running"
                self._started_at[proc.name] = now
                return True
            if state.state == "running" and now - self._started_at[proc.name] > self.stable_s:
                self._backoff[proc.name] = self.first_backoff_s
            return False
        if proc.name not in self._next_start:
            code = proc.proc.returncode if proc.proc is not None else None
            state.last_exit_code, state.last_exit_at, state.state = code, time.time(), "restarting"
            delay = self._backoff[proc.name]
            self._next_start[proc.name] = now + delay
            self._backoff[proc.name] = min(self.max_backoff_s, delay * 2)
            self._say(f"{proc.name} (pid {state.pid}) exited with status {code}; restarting in {delay:.1f}s")
            return True
        if now < self._next_start[proc.name] or self._stop.is_set():
            return False
        del self._next_start[proc.name]
        try:
            proc.start()
            state.pid = proc.pid
            proc.wait_ready(self.ready_timeout_s(proc.name))
        except (ComponentError, OSError) as e:
            state.state = "failed"
            self._say(f"{proc.name} restart failed: {str(e).splitlines()[0]}")
            return True
        state.restarts += 1
        state.last_restart_at = time.time()
        state.state = "running"
        self._started_at[proc.name] = time.monotonic()
        self._say(f"{proc.name} restarted (pid {proc.pid}, restart #{state.restarts})")
        return True

    def _write(self) -> None:
        data = {name: asdict(state) for name, state in self.states.items()}
        tmp = self.run_dir / "supervisor.json.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.run_dir / "supervisor.json")


def read_supervisor_state(run_dir: Path) -> dict[str, dict[str, object]]:
    path = run_dir / "supervisor.json"
    try:
        loaded: dict[str, dict[str, object]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded
