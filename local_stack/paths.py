"""Where things live: the repository, the build cache outside it, the default router config."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_CONFIG", "REPO_ROOT", "cache_dir"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "deploy" / "config.yaml"


def cache_dir() -> Path:
    """Build cache outside the repository, so clean clones and CI on the same machine reuse trained models."""
    path = Path(os.environ.get("SEMANTIC_ROUTER_CACHE", Path.home() / ".cache" / "semantic-router"))
    path.mkdir(parents=True, exist_ok=True)
    return path
