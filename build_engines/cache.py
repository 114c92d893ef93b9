"""Build cache: outputs live under `<cache root>/build/<key>`, key = hash of data, code, config, versions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from build_engines.paths import cache_root

__all__ = ["COMPLETE_MARKER", "SERVING_ONLY", "build_dir", "build_key", "input_files", "is_complete"]

COMPLETE_MARKER = "COMPLETE"
_VERSIONED = (
    "torch",
    "transformers",
    "peft",
    "onnx",
    "onnxruntime",
    "tokenizers",
    "presidio-evaluator",
    "faker",
)


# Modules that only install, serve, benchmark or drive builds: changing them never changes the trained models,
# and `build` re-installs the repository (config.pbtxt, model.py) from the cache on every run anyway.
SERVING_ONLY = frozenset(
    {
        "__main__.py",
        "compare.py",
        "model_card.py",
        "perf_analyzer.py",
        "repository.py",
        "tensorrt_build.py",
        "triton_model.py",
    }
)


def input_files(package_dir: Path, extra: Iterable[Path] = ()) -> list[Path]:
    """The code and data a build depends on: the package's .py files (not SERVING_ONLY), the authored data,
    extra inputs.

    Reports and benchmark outputs are excluded (they are results, not inputs).
    """
    files = [p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts and p.name not in SERVING_ONLY]
    files += list((package_dir / "data" / "authored").rglob("*.jsonl"))
    files += [p for p in extra if p.is_file()]
    return sorted(set(files))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def build_key(
    files: Iterable[Path], root: Path, config: Mapping[str, Any], versions: Mapping[str, str] | None = None
) -> str:
    """sha256 over (relative path, content) of each file, the config and library versions; 16 hex chars."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(root) if path.is_relative_to(root) else path).encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    payload = {"config": config, "versions": dict(versions if versions is not None else _versions())}
    digest.update(json.dumps(payload, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def build_dir(key: str) -> Path:
    return cache_root() / "build" / key


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).exists()
