"""The Kubernetes ConfigMap update, as the kubelet performs it, reaches the router's config watcher.

The kubelet's atomic writer puts the files in a timestamped folder, points a `..data` symlink at it, and exposes each
key as a symlink through `..data`; an update writes a new folder and renames a fresh symlink over `..data`. The router
reads deploy/k8s/base/router/config.yaml mounted that way (test_k8s checks the mount); this swaps it for real and
watches the router's own ConfigStore pick the change up, and keep the running config when the new one is invalid.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import yaml

from router_service.config.store import ConfigStore

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "deploy" / "k8s" / "base" / "router"


def _publish(mount: Path, files: dict[str, str]) -> None:
    """One kubelet update: new timestamped folder, `..data` swapped by rename, key symlinks through `..data`."""
    stamp = mount / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.perf_counter_ns()}"
    stamp.mkdir()
    for name, text in files.items():
        (stamp / name).write_text(text)
    tmp = mount / "..data_tmp"
    tmp.symlink_to(stamp.name)
    os.replace(tmp, mount / "..data")
    for name in files:
        link = mount / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)


async def _until(predicate: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_configmap_update_is_hot_reloaded(tmp_path: Path) -> None:
    files = {name: (SOURCE / name).read_text() for name in ("config.yaml", "tools_db.json")}
    _publish(tmp_path, files)
    errors: list[Exception] = []
    store = ConfigStore(tmp_path / "config.yaml", on_reload_error=errors.append, debounce_ms=50)
    assert store.current.default_model == "qwen3-1.7b"
    watcher = asyncio.create_task(store.watch())
    try:
        await asyncio.sleep(0.5)  # the watch is up
        raw = yaml.safe_load(files["config.yaml"])
        raw["default_model"] = "qwen2.5-coder-7b"
        _publish(tmp_path, {**files, "config.yaml": yaml.safe_dump(raw, sort_keys=False)})
        assert await _until(lambda: store.current.default_model == "qwen2.5-coder-7b", 10), "update not reloaded"
        _publish(tmp_path, {**files, "config.yaml": "default_model: [not, a, name]\n"})
        assert await _until(lambda: bool(errors), 10), "the invalid update was not noticed"
        assert store.current.default_model == "qwen2.5-coder-7b", "an invalid update replaced the running config"
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
