"""Static checks of the deployment files: docker-compose, Envoy configs, serving requirements."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from semantic_router.components import envoy_binary
from semantic_router.render_envoy import COMPOSE_VALUES, render
from semantic_router.stack import Ports

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# Written by `make setup` / the engine builder, so they may be absent in a fresh clone.
BUILD_OUTPUTS = {"deploy/triton-gpu", "deploy/triton-gpu/model_repository"}


def _host_paths() -> list[tuple[str, str]]:
    out = []
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            host = vol.split(":", 1)[0]
            if host.startswith("."):
                out.append((name, host))
        build = svc.get("build")
        if build:
            out.append((name, str(Path(build["context"]) / build["dockerfile"])))
    return out


def test_compose_has_the_stack() -> None:
    assert {"triton", "redis", "envoy", "router", "cache", "prometheus", "engine-builder"} <= set(SERVICES)
    assert SERVICES["triton"]["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert "--model-repository" in SERVICES["triton"]["command"]
    gpu = SERVICES["triton"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]


@pytest.mark.parametrize(("service", "path"), _host_paths(), ids=lambda v: str(v))
def test_compose_files_exist(service: str, path: str) -> None:
    rel = path.removeprefix("./").rstrip("/")
    if rel in BUILD_OUTPUTS:
        pytest.skip(f"{rel} is a build output")
    assert (ROOT / rel).exists(), f"{service} mounts {path}, which does not exist"


def _published(service: str) -> set[int]:
    return {int(p.split(":")[0]) for p in SERVICES[service].get("ports", [])}


def test_compose_ports_agree_with_local_defaults() -> None:
    p = Ports()
    assert {p.envoy, p.envoy_admin} <= _published("envoy")
    assert {p.router_http, p.router_metrics, p.extproc} <= _published("router")
    assert {p.triton_http, p.triton_grpc, p.triton_metrics} <= _published("triton")
    assert p.redis in _published("redis") and p.cache in _published("cache")
    cmd = SERVICES["router"]["command"]
    assert f"--port {p.router_http}" in cmd and f"--grpc-port {p.extproc}" in cmd
    assert f"--metrics-port {p.router_metrics}" in cmd and f"triton:{p.triton_grpc}" in cmd
    assert f"--port {p.cache}" in SERVICES["cache"]["command"]
    assert COMPOSE_VALUES["LISTENER_PORT"] == p.envoy and COMPOSE_VALUES["EXTPROC_PORT"] == p.extproc
    assert COMPOSE_VALUES["ADMIN_PORT"] == p.envoy_admin


def test_compose_envoy_config_is_rendered_from_the_template() -> None:
    assert (ROOT / "deploy" / "compose" / "envoy.yaml").read_text() == render(COMPOSE_VALUES), (
        "regenerate: python -m semantic_router.render_envoy --compose > deploy/compose/envoy.yaml"
    )


def test_prometheus_scrapes_compose_services() -> None:
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    p = Ports()
    assert {f"router:{p.router_metrics}", f"triton:{p.triton_metrics}", f"cache:{p.cache}"} <= targets
    for target in targets:
        assert target.split(":")[0] in SERVICES


@pytest.mark.parametrize("which", ["compose", "local"])
def test_envoy_accepts_config(which: str, tmp_path: Path) -> None:
    if which == "compose":
        path = ROOT / "deploy" / "compose" / "envoy.yaml"
    else:
        path = tmp_path / "envoy.yaml"
        path.write_text(render({**COMPOSE_VALUES, "EXTPROC_ADDRESS": "127.0.0.1", "LISTEN_ADDRESS": "127.0.0.1"}))
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK" in result.stdout + result.stderr


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line.strip())
        if m:
            pins[re.sub(r"\[.*\]", "", m.group(1)).lower()] = m.group(2)
    return pins


def test_serving_image_pins_match_requirements() -> None:
    main = _pins(ROOT / "requirements.txt")
    serve = _pins(ROOT / "deploy" / "requirements-serve.txt")
    assert serve, "no pins parsed"
    for name, version in serve.items():
        assert main.get(name) == version, f"{name}: serve {version} vs requirements.txt {main.get(name)}"
