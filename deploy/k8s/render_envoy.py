"""Writes deploy/k8s/base/envoy/envoy.yaml from the Envoy template (deploy/envoy.yaml) with Kubernetes names.

    .venv/bin/python deploy/k8s/render_envoy.py

The ExtProc cluster resolves the routers' headless Service, so Envoy spreads its gRPC streams over every router pod.
tests/deploy/test_k8s.py keeps the file in step with the template.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from semantic_router.render_envoy import COMPOSE_VALUES, render  # noqa: E402

OUTPUT = ROOT / "deploy" / "k8s" / "base" / "envoy" / "envoy.yaml"
K8S_VALUES = {**COMPOSE_VALUES, "EXTPROC_ADDRESS": "router-headless.semantic-router.svc.cluster.local"}


def rendered() -> str:
    body = render(K8S_VALUES).split("\n", 1)[1]
    return "# GENERATED from deploy/envoy.yaml by `python deploy/k8s/render_envoy.py`; do not edit.\n" + body


if __name__ == "__main__":
    OUTPUT.write_text(rendered(), encoding="utf-8")
    print(f"wrote {OUTPUT}")
