"""The live router configuration, swapped atomically when its file changes.

A bad new file never replaces a good running config: the store keeps the old one and reports why through
`on_reload_error`. Reading and validating run in a worker thread; the swap and the callbacks run on the
event loop (so callbacks may start tasks, e.g. re-embed the tool catalogue).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from watchfiles import Change, awatch

from router_service.config.loading import log_ignored_keys, parse_config
from router_service.config.policy import RouterConfig
from router_service.errors import ConfigError

__all__ = ["ConfigStore"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Candidate:
    """A freshly read file: its digest and either a valid config or why it is not one."""

    digest: bytes
    config: RouterConfig | None
    error: ConfigError | None


class ConfigStore:
    """Holds the current `RouterConfig`; `watch()` follows the file, `reload_now()` re-reads it on demand.

    Raises ConfigError at construction when the initial file is invalid: a router must not start on a
    config it cannot read.
    """

    def __init__(
        self,
        path: str | Path,
        on_reload_error: Callable[[Exception], None] | None = None,
        on_reload: Callable[[RouterConfig], None] | None = None,
        *,
        debounce_ms: int = 300,
        force_polling: bool | None = None,
    ) -> None:
        self._path = Path(path)
        self._on_reload_error = on_reload_error
        self._on_reload = on_reload
        self._debounce_ms = debounce_ms
        self._force_polling = force_polling
        self._lock = threading.Lock()
        first = self._read()
        if first.config is None:
            assert first.error is not None
            raise first.error
        log_ignored_keys(first.config, self._path)
        self._current: RouterConfig = first.config
        self._digest = first.digest
        self._seen = first.digest

    @property
    def current(self) -> RouterConfig:
        """The live config. Read it once per request: a reload swaps the whole object, never parts of it."""
        return self._current

    @property
    def path(self) -> Path:
        return self._path

    def reload_now(self) -> bool:
        """Re-read the file now; True when a new config went live (False: unchanged or invalid)."""
        candidate = self._read()
        return self._apply(candidate)

    def reload_checked(self) -> bool:
        """Re-read the file now; True when a new config went live, False when it is unchanged. An invalid file
        raises its ConfigError (and the running config stays)."""
        candidate = self._read()
        if candidate.error is not None:
            self._notify(self._on_reload_error, candidate.error)
            raise candidate.error
        return self._apply(candidate)

    async def watch(self, stop_event: asyncio.Event | None = None) -> None:
        """Reload whenever the file changes, until cancelled or `stop_event` is set.

        Watches the file's folder, not the file: editors save by renaming a temporary file over it and
        Kubernetes swaps a `..data` symlink, and both replace the inode a file watch would follow.
        Changes are debounced, and content that did not change (by digest) is not reloaded.
        """
        folder = self._path.absolute().parent
        name = self._path.name

        def relevant(_: Change, changed: str) -> bool:
            base = Path(changed).name
            return base == name or base.startswith("..")

        async for _ in awatch(
            folder,
            watch_filter=relevant,
            debounce=self._debounce_ms,
            stop_event=stop_event,
            force_polling=self._force_polling,
            recursive=False,
        ):
            candidate = await asyncio.to_thread(self._read)
            self._apply(candidate)

    def _read(self) -> _Candidate:
        try:
            raw = self._path.read_bytes()
        except OSError as e:
            return _Candidate(b"", None, ConfigError([f"cannot read the file: {e}"], str(self._path)))
        digest = hashlib.sha256(raw).digest()
        try:
            config = parse_config(raw.decode("utf-8"), self._path)
        except UnicodeDecodeError as e:
            return _Candidate(digest, None, ConfigError([f"not UTF-8 text: {e}"], str(self._path)))
        except ConfigError as e:
            return _Candidate(digest, None, e)
        return _Candidate(digest, config, None)

    def _apply(self, candidate: _Candidate) -> bool:
        with self._lock:
            if candidate.digest == self._seen:
                return False
            self._seen = candidate.digest
            if candidate.config is None or candidate.digest == self._digest:
                new = None
            else:
                new = self._current = candidate.config
                self._digest = candidate.digest
        if candidate.error is not None:
            log.warning("config reload rejected, keeping the running config: %s", candidate.error)
            self._notify(self._on_reload_error, candidate.error)
            return False
        if new is None:
            return False
        log.info("config reloaded from %s", self._path)
        log_ignored_keys(new, self._path)
        self._notify(self._on_reload, new)
        return True

    @staticmethod
    def _notify(callback: Callable[[_T], None] | None, value: _T) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:  # a failing observer must not stop the watcher or undo a good swap
            log.exception("config store callback failed")
