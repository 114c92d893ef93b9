"""Static checks of the compose deployment: docker-compose.yml against the project's own CLI parsers and
`docker-compose config`, the Dockerfile's COPY sources, the Envoy, Prometheus and Grafana files, serving pins."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from build_engines.__main__ import build_parser as build_engines_parser
from cache_service.__main__ import parse_settings as cache_settings
from local_stack.components import envoy_binary, triton_command
from local_stack.render_envoy import COMPOSE_VALUES, render
from local_stack.stack import Ports
from router_service.config import load_config
from router_service.settings import parse_settings as router_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# Written by the engine builder / the load test, or by `python -m build_engines export`: absent in a fresh clone.
BUILD_OUTPUTS = ("deploy/triton-gpu", "deploy/artefacts", "benchmarks/results/gpu")
KEY_TITLES = (
    "Requests by model",
    "Requests by category",
    "Classifier call latency",
    "Triton queue time per request",
    "Triton batch size",
    "Cache hit ratio",
    "Blocked requests",
    "Errors by reason",
)

sys.path.insert(0, str(ROOT / "deploy" / "loadtest"))
sys.path.insert(0, str(ROOT / "deploy" / "grafana"))
import dashboard  # noqa: E402
import perf_scenarios  # noqa: E402

sys.path.insert(0, str(ROOT / "deploy"))
import render as render_deploy  # noqa: E402


def _argv(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    return list(command) if isinstance(command, list) else shlex.split(command)


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
    assert {
        "engine-builder",
        "triton",
        "redis",
        "envoy",
        "router",
        "cache",
        "prometheus",
        "grafana",
        "vllm",
        "loadtest",
    } <= set(SERVICES)
    # images of deploy/Dockerfile's targets: the NGC release is named there only (tests/deploy/test_ngc_release.py)
    assert SERVICES["triton"]["build"]["target"] == "triton-gpu"
    assert SERVICES["loadtest"]["build"]["target"] == "loadtest"
    assert SERVICES["redis"]["image"].startswith("redis:8")
    for name in ("engine-builder", "triton", "vllm"):
        gpu = SERVICES[name]["deploy"]["resources"]["reservations"]["devices"][0]
        assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"], name
    assert SERVICES["triton"]["depends_on"]["engine-builder"]["condition"] == "service_completed_successfully"
    assert SERVICES["vllm"]["profiles"] == ["vllm"] and SERVICES["loadtest"]["profiles"] == ["loadtest"]


@pytest.mark.parametrize(("service", "path"), _host_paths(), ids=lambda v: str(v))
def test_compose_files_exist(service: str, path: str) -> None:
    rel = path.removeprefix("./").rstrip("/")
    if rel.startswith(BUILD_OUTPUTS):
        pytest.skip(f"{rel} is a build output")
    assert (ROOT / rel).exists(), f"{service} mounts {path}, which does not exist"


def test_only_envoys_listener_is_published() -> None:
    published = {name: svc["ports"] for name, svc in SERVICES.items() if svc.get("ports")}
    assert published == {"envoy": [f"{Ports().envoy}:{Ports().envoy}"]}
    ops = yaml.safe_load((ROOT / "deploy" / "compose" / "ops-ports.yml").read_text())["services"]
    for name, svc in ops.items():
        for port in svc["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_ports_agree_with_local_defaults() -> None:
    p = Ports()
    exposed = {name: {int(x) for x in svc.get("expose", [])} for name, svc in SERVICES.items()}
    assert {p.router_http, p.router_metrics, p.extproc} <= exposed["router"]
    assert {p.triton_http, p.triton_grpc, p.triton_metrics} <= exposed["triton"]
    assert p.redis in exposed["redis"] and p.cache in exposed["cache"]
    router = router_settings(_argv("router")[3:])
    assert (router.port, router.metrics_port, router.grpc_port) == (p.router_http, p.router_metrics, p.extproc)
    assert router.triton_url == f"triton:{p.triton_grpc}" and router.cache_url == f"http://cache:{p.cache}"
    assert COMPOSE_VALUES["LISTENER_PORT"] == p.envoy and COMPOSE_VALUES["EXTPROC_PORT"] == p.extproc


def test_service_commands_parse_with_the_projects_own_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    router = _argv("router")
    assert router[:3] == ["python3", "-m", "router_service"]
    settings = router_settings(router[3:])
    assert str(settings.config) == "/config/config.yaml" and str(settings.model_repository) == "/models"
    cache = _argv("cache")
    assert cache[:3] == ["python3", "-m", "cache_service"]
    for name in [k for k in os.environ if k.startswith("CACHE_")]:
        monkeypatch.delenv(name)
    assert cache_settings(cache[3:]).redis_url == "redis://redis:6379/0"
    builder = build_engines_parser().parse_args(_argv("engine-builder"))
    assert builder.command == "tensorrt" and builder.artefacts == "/artefacts" and not builder.int8
    assert (
        builder.repository.startswith("/out/") and "./deploy/triton-gpu:/out" in SERVICES["engine-builder"]["volumes"]
    )
    assert builder.max_sequence >= 512 and builder.max_batch >= router_settings([]).max_batch
    assert builder.cache_dir.startswith("/out/")
    load = _argv("loadtest")
    assert load[:2] == ["python3", "/bench/perf_scenarios.py"]
    assert "COPY deploy/loadtest/perf_scenarios.py /bench/perf_scenarios.py" in (ROOT / "deploy/Dockerfile").read_text()
    perf_scenarios.build_parser().parse_args(load[2:])


def _help(binary: str, env: dict[str, str]) -> str:
    result = subprocess.run([binary, "--help"], env=env, capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def test_tritonserver_flags_exist() -> None:
    """Every flag compose passes to tritonserver is one Triton knows (its own --help, the 2.51 build here)."""
    argv, env = triton_command(
        Path("/nonexistent"), http_port=1, grpc_port=2, metrics_port=3, cache_dir=Path("/tmp/sr-triton-help")
    )
    known = set(
        re.findall(
            r"^\s+(--[a-z-]+)",
            _help(argv[0], env),
            re.M,
        )
    )
    assert "--model-repository" in known, "could not read tritonserver --help"
    command = _argv("triton")
    assert command[0] == "tritonserver"
    for flag in command[1:]:
        assert flag.split("=")[0] in known, f"tritonserver does not know {flag}"


def _compose_config(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (scripts/setup.sh installs Debian's package as root)")
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in (env or {}).items()))
    clean = {k: v for k, v in os.environ.items() if k not in ("SEMANTIC_ROUTER_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD")}
    return subprocess.run(
        [binary, "--project-directory", str(ROOT), "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"),
         *extra, "config"],
        capture_output=True, text=True, timeout=120, env=clean, cwd=tmp_path,
    )  # fmt: skip


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    secrets = {"SEMANTIC_ROUTER_ADMIN_TOKEN": "t0ken", "GRAFANA_ADMIN_PASSWORD": "pw"}
    ops = ["-f", str(ROOT / "deploy" / "compose" / "ops-ports.yml"), "--profile", "vllm", "--profile", "loadtest"]
    result = _compose_config(tmp_path, *ops, env=secrets)
    assert result.returncode == 0, result.stderr[-2000:]
    rendered = yaml.safe_load(result.stdout)
    assert rendered["services"]["router"]["environment"]["SEMANTIC_ROUTER_ADMIN_TOKEN"] == "t0ken"
    assert rendered["services"]["cache"]["environment"]["SEMANTIC_ROUTER_ADMIN_TOKEN"] == "t0ken"
    assert "t0ken" not in (ROOT / "docker-compose.yml").read_text()


def test_docker_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    result = _compose_config(tmp_path)
    assert result.returncode != 0
    assert "set SEMANTIC_ROUTER_ADMIN_TOKEN in .env" in result.stderr


def _copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            sources += [p for p in parts[1:-1] if not p.startswith("--")]
    return sources


def test_dockerfile_copy_sources_exist() -> None:
    sources = _copy_sources(ROOT / "deploy" / "Dockerfile")
    assert "deploy/artefacts/tokenizer.json" in sources and "build_engines" in sources
    exported = set(ast.literal_eval(re.search(r'for name in (\("model.onnx".*?\))', _export_source()).group(1)))
    for source in sources:
        if source.startswith("deploy/artefacts"):
            name = source.removeprefix("deploy/artefacts").strip("/")
            assert not name or name in exported, f"{source}: `build_engines export` does not write {name}"
            continue
        assert (ROOT / source).exists(), f"deploy/Dockerfile copies {source}, which does not exist"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "deploy/artefacts" not in ignored


def _export_source() -> str:
    text = (ROOT / "build_engines" / "__main__.py").read_text()
    return text[text.index("def cmd_export") : text.index("def cmd_tensorrt")]


def test_compose_config_routes_to_the_vllm_profile() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "config.yaml").read_text())
    vllm_ip = SERVICES["vllm"]["networks"]["default"]["ipv4_address"]
    assert {(e["address"], e["port"]) for e in compose["vllm_endpoints"]} == {(vllm_ip, 8000)}
    served = _argv("vllm")[_argv("vllm").index("--served-model-name") + 1 :]
    cfg = load_config(ROOT / "deploy" / "compose" / "config.yaml")
    assert set(cfg.models) <= set(served)


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in render_deploy.outputs()))
def test_derived_deploy_files_are_up_to_date(path: str) -> None:
    assert (ROOT / path).read_text() == render_deploy.outputs()[ROOT / path], (
        f"{path} is out of date: regenerate with .venv/bin/python deploy/render.py"
    )


def test_compose_envoy_config_is_rendered_from_the_template() -> None:
    assert (ROOT / "deploy" / "compose" / "envoy.yaml").read_text() == render(COMPOSE_VALUES), (
        "regenerate: python -m local_stack.render_envoy --compose > deploy/compose/envoy.yaml"
    )


def test_prometheus_scrapes_compose_services_and_loads_the_rules() -> None:
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]] for job in prom["scrape_configs"]
    }
    p = Ports()
    assert jobs["semantic-router"] == [f"router:{p.router_metrics}"] and jobs["triton"] == [
        f"triton:{p.triton_metrics}"
    ]
    assert jobs["semantic-cache"] == [f"cache:{p.cache}"]
    for targets in jobs.values():
        assert all(t.split(":")[0] in SERVICES for t in targets)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["prometheus"]["volumes"]}
    for rule_file in prom["rule_files"]:
        host = mounts["/etc/prometheus/rules"] if rule_file.startswith("/etc/prometheus/rules/") else None
        assert host is not None and (ROOT / host / Path(rule_file).name).exists(), rule_file


def test_grafana_is_provisioned_with_the_dashboard() -> None:
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["grafana"]["volumes"]}
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == dashboard.DATASOURCE["uid"]
    provider = yaml.safe_load((provisioning / "dashboards" / "semantic-router.yml").read_text())["providers"][0]
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    board = json.loads(dashboard.render())
    titles = {p["title"] for p in board["panels"]}
    for needed in KEY_TITLES:
        assert needed in titles


def test_loadtest_scenarios_match_the_serving_benchmark() -> None:
    tree = ast.parse((ROOT / "benchmarks" / "serving" / "run.py").read_text())
    defaults = {}
    prompt = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args:
            flag = ast.literal_eval(node.args[0]) if isinstance(node.args[0], ast.Constant) else None
            for kw in node.keywords:
                if kw.arg == "default" and isinstance(kw.value, ast.Constant):
                    defaults[flag] = kw.value.value
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PROMPT":
            prompt = ast.literal_eval(node.value)
    assert prompt == perf_scenarios.PROMPT
    assert defaults["--seq-len"] == perf_scenarios.FIXED_LENGTH
    assert defaults["--concurrency"] == ",".join(map(str, perf_scenarios.CONCURRENCY))
    assert defaults["--mixed-lengths"] == ",".join(map(str, perf_scenarios.MIXED_LENGTHS))
    assert defaults["--mixed-concurrency"] == ",".join(map(str, perf_scenarios.MIXED_CONCURRENCY))
    assert max(perf_scenarios.LONG_LENGTHS) == 512


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


# Packages only an image needs (the engine builder's TensorRT runner): pinned there, absent from requirements.txt.
IMAGE_ONLY = {"requirements-engine.txt": {"polygraphy"}}


@pytest.mark.parametrize("name", ["requirements-serve.txt", "requirements-engine.txt", "requirements-triton-cpu.txt"])
def test_image_pins_match_requirements(name: str) -> None:
    main = _pins(ROOT / "requirements.txt")
    image = _pins(ROOT / "deploy" / name)
    assert image, "no pins parsed"
    for package, version in image.items():
        if package in IMAGE_ONLY.get(name, set()):
            assert package not in main, f"{package} is in requirements.txt: drop it from IMAGE_ONLY"
            continue
        assert main.get(package) == version, f"{package}: {name} {version} vs requirements.txt {main.get(package)}"


# Every command of the README's Deploy section, and where it is exercised (or why it cannot be here).
README_DEPLOY_COMMANDS = {
    ".venv/bin/python -m build_engines export --output deploy/artefacts": "tests/deploy/test_tensorrt.py (export)",
    "cp deploy/compose/env.example .env": "test_docker_compose_config_validates (the example's keys)",
    "docker compose up -d": "test_docker_compose_config_validates; starting needs a Docker engine and a GPU",
    "docker compose --profile vllm up -d": "test_docker_compose_config_validates (--profile vllm)",
    "docker compose --profile loadtest run --rm loadtest": "tests/deploy/test_serving_paths.py runs its script",
    "kubectl create namespace semantic-router": "needs a cluster",
    "kubectl -n semantic-router create secret generic semantic-router-admin "
    '--from-literal=token="$(openssl rand -hex 32)"': "test_k8s.py::test_tokens_come_from_a_secret (name and key)",
    "kubectl kustomize deploy/k8s/overlays/gpu | kubectl apply -f -": "tests/deploy/test_k8s.py renders it",
}


def test_readme_deploy_commands_are_the_tested_ones() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploy") :]
    section = section[: section.index("\n## ", 1)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        commands += [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]
    assert commands == list(README_DEPLOY_COMMANDS), "a README deploy command changed: update its test and this list"


def test_env_example_has_the_secrets_compose_requires() -> None:
    keys = {
        line.split("=", 1)[0]
        for line in (ROOT / "deploy" / "compose" / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (ROOT / "docker-compose.yml").read_text()))
    assert required == {"SEMANTIC_ROUTER_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD"} and required <= keys
