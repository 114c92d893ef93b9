"""Render deploy/envoy.yaml (the one Envoy template) for the local stack or for docker-compose.

python -m local_stack.render_envoy --compose > deploy/compose/envoy.yaml
"""

from __future__ import annotations

import argparse
import string

from local_stack.paths import REPO_ROOT

__all__ = ["COMPOSE_VALUES", "render"]

COMPOSE_VALUES = {
    "LISTEN_ADDRESS": "0.0.0.0",
    "LISTENER_PORT": 8801,
    "EXTPROC_ADDRESS": "router",
    "EXTPROC_PORT": 50051,
    "ADMIN_ADDRESS": "0.0.0.0",
    "ADMIN_PORT": 19000,
}


def render(values: dict[str, object]) -> str:
    template = string.Template((REPO_ROOT / "deploy" / "envoy.yaml").read_text())
    header = "# GENERATED from deploy/envoy.yaml by `python -m local_stack.render_envoy --compose`; do not edit.\n"
    return header + template.substitute({k: str(v) for k, v in values.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compose", action="store_true", required=True)
    parser.parse_args()
    print(render(COMPOSE_VALUES), end="")


if __name__ == "__main__":
    main()
