"""The Kubernetes deployment: every overlay rendered with `kubectl kustomize`, every object validated offline against
the Kubernetes API schemas, and the wiring checked (commands vs the project's parsers, probes, Services, scale-out)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from build_engines.__main__ import build_parser as build_engines_parser
from cache_service.__main__ import parse_settings as cache_settings
from local_stack.components import envoy_binary, triton_command
from router_service.config import load_config
from router_service.settings import parse_settings as router_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["cpu", "gpu"]
KUBERNETES_VERSION = "1.32.0"
ALERT_JOBS = {"semantic-router", "semantic-cache", "triton"}


@cache
def rendered(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def pod_spec(overlay: str, name: str, kind: str = "Deployment") -> dict[str, Any]:
    spec: dict[str, Any] = objects(overlay, kind)[name]["spec"]["template"]["spec"]
    return spec


def container(overlay: str, name: str, kind: str = "Deployment") -> dict[str, Any]:
    first: dict[str, Any] = pod_spec(overlay, name, kind)["containers"][0]
    return first


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_api_schema(overlay: str) -> None:
    for obj in rendered(overlay):
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_stack_is_all_there(overlay: str) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered(overlay)}
    for needed in [
        ("Deployment", "router"),
        ("Deployment", "envoy"),
        ("Deployment", "triton"),
        ("Deployment", "triton-lb"),
        ("Deployment", "cache"),
        ("StatefulSet", "redis"),
        ("HorizontalPodAutoscaler", "router"),
        ("PodDisruptionBudget", "router"),
        ("ConfigMap", "router-config"),
    ]:
        assert needed in kinds, f"{overlay} lacks {needed}"
    assert all(
        o["metadata"].get("namespace") == "semantic-router" for o in rendered(overlay) if o["kind"] != "Namespace"
    )
    redis = objects(overlay, "StatefulSet")["redis"]["spec"]
    assert redis["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert "--appendonly" in container(overlay, "redis", "StatefulSet")["args"]


def _all_containers(overlay: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for obj in rendered(overlay):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            spec = obj["spec"]["template"]["spec"]
            out += [(obj["metadata"]["name"], c) for c in spec.get("initContainers", []) + spec["containers"]]
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_resource_requests(overlay: str) -> None:
    for owner, c in _all_containers(overlay):
        assert c["resources"]["requests"].get("cpu") and c["resources"]["requests"].get("memory"), owner
    for obj in rendered(overlay):
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in obj["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in c, f"{obj['metadata']['name']}/{c['name']} has no {probe}"
                http = c[probe].get("httpGet")
                if http:
                    assert http["port"] in ports, f"{c['name']} probes a port it does not declare"
    assert container(overlay, "router")["readinessProbe"]["httpGet"]["path"] == "/ready"  # 503 without Triton
    assert container(overlay, "router")["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container(overlay, "triton")["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container(overlay, "cache")["readinessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_commands_parse_with_the_projects_own_parsers(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    router = container(overlay, "router")["command"]
    assert router[:3] == ["python3", "-m", "router_service"]
    settings = router_settings(router[3:])
    services = objects(overlay, "Service")
    host, port = settings.triton_url.split(":")
    assert host == "triton-lb" and int(port) in {p["port"] for p in services["triton-lb"]["spec"]["ports"]}
    assert settings.cache_url == "http://cache:8090" and str(settings.config) == "/config/config.yaml"
    cache = container(overlay, "cache")["command"]
    for name in [k for k in __import__("os").environ if k.startswith("CACHE_")]:
        monkeypatch.delenv(name)
    redis_url = cache_settings(cache[3:]).redis_url
    assert re.fullmatch(r"redis://redis-0\.redis:6379/0", redis_url)
    assert services["redis"]["spec"]["clusterIP"] == "None"  # the StatefulSet's pod DNS names need it
    argv, env = triton_command(Path("/x"), http_port=1, grpc_port=2, metrics_port=3, cache_dir=Path("/tmp/sr-th"))
    result = subprocess.run([argv[0], "--help"], env=env, capture_output=True, text=True, timeout=60)
    known = set(re.findall(r"^\s+(--[a-z-]+)", result.stdout + result.stderr, re.M))
    triton = container(overlay, "triton")["command"]
    assert triton[0] == "tritonserver" and all(f.split("=")[0] in known for f in triton[1:]), triton


def test_gpu_overlay_builds_the_plan_on_the_node_and_asks_for_a_gpu() -> None:
    spec = pod_spec("gpu", "triton")
    (builder,) = spec["initContainers"]
    args = build_engines_parser().parse_args(builder["command"][3:] + builder["args"])
    assert args.command == "tensorrt" and args.max_sequence >= 512 and not args.int8
    assert builder["command"][:3] == ["python3", "-m", "build_engines"]
    mounts = {m["name"]: m["mountPath"] for m in builder["volumeMounts"]}
    assert args.repository == mounts["models"] and args.cache_dir == mounts["tensorrt-cache"]
    triton = container("gpu", "triton")
    assert {m["mountPath"] for m in triton["volumeMounts"]} == {"/models"}
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert builder["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert triton["image"] == "semantic-router/triton-gpu:latest"  # deploy/Dockerfile's triton-gpu target
    assert "runtimeClassName" not in spec  # only with the nvidia-runtime-class component


def test_runtime_class_is_settable_in_the_gpu_overlay(tmp_path: Path) -> None:
    """The component the gpu overlay's comment names: applied to an overlay, the Triton pods run under `nvidia`."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(K8S / 'overlays' / 'gpu', overlay)}]\n"  # kustomize refuses absolute paths
        f"components: [{os.path.relpath(K8S / 'components' / 'nvidia-runtime-class', overlay)}]\n"
    )
    assert (
        "components: [../../components/nvidia-runtime-class]" in (K8S / "overlays/gpu/kustomization.yaml").read_text()
    )
    result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    for obj in docs:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    classes = {o["metadata"]["name"]: o["spec"]["template"]["spec"].get("runtimeClassName") for o in docs
               if o["kind"] == "Deployment"}  # fmt: skip
    assert classes.pop("triton") == "nvidia" and not any(classes.values())


def test_cpu_overlay_runs_the_cpu_image_without_gpus() -> None:
    assert container("cpu", "triton")["image"] == "semantic-router/triton-cpu:latest"
    for owner, c in _all_containers("cpu"):
        assert "nvidia.com/gpu" not in c["resources"].get("limits", {}), owner
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "AS triton-cpu" in dockerfile and "COPY model_repository/signals /models/signals" in dockerfile


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_router_config_is_a_mounted_folder_that_hot_reloads(overlay: str) -> None:
    router = pod_spec(overlay, "router")
    (volume,) = [v for v in router["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == "router-config", "a name hash would turn each edit into a rollout"
    (mount,) = [m for m in router["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert "subPath" not in mount, "subPath mounts never see ConfigMap updates"
    data = objects(overlay, "ConfigMap")["router-config"]["data"]
    assert set(data) == {"config.yaml", "tools_db.json"}


def test_router_config_has_ip_endpoints_and_loads() -> None:
    k8s = yaml.safe_load((K8S / "base" / "router" / "config.yaml").read_text())
    for endpoint in k8s["vllm_endpoints"]:
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", endpoint["address"]), "ORIGINAL_DST needs IP addresses"
    load_config(K8S / "base" / "router" / "config.yaml")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tokens_come_from_a_secret(overlay: str) -> None:
    for name in ("router", "cache"):
        env = {e["name"]: e for e in container(overlay, name)["env"]}
        ref = env["SEMANTIC_ROUTER_ADMIN_TOKEN"]
        assert "value" not in ref and ref["valueFrom"]["secretKeyRef"] == {
            "name": "semantic-router-admin",
            "key": "token",
        }
    assert not objects(overlay, "Secret"), "secrets are created apart, never committed"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scale_out_balances_every_replica(overlay: str) -> None:
    """Routers reach Triton through triton-lb (Envoy, per-request balancing over the headless Service); Envoy reaches
    routers through their headless Service. A plain ClusterIP would pin each HTTP/2 connection to one pod."""
    services = objects(overlay, "Service")
    assert services["triton-headless"]["spec"]["clusterIP"] == "None"
    assert services["router-headless"]["spec"]["clusterIP"] == "None"
    lb = yaml.safe_load((K8S / "base" / "triton-lb" / "envoy.yaml").read_text())
    (cluster,) = lb["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS" and cluster["lb_policy"] in ("LEAST_REQUEST", "ROUND_ROBIN")
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert address["address"] == "triton-headless.semantic-router.svc.cluster.local"
    assert address["port_value"] in {p["port"] for p in services["triton-headless"]["spec"]["ports"]}
    front = yaml.safe_load((K8S / "base" / "envoy" / "envoy.yaml").read_text())
    extproc = next(c for c in front["static_resources"]["clusters"] if c["name"] == "extproc_service")
    assert extproc["type"] == "STRICT_DNS"
    target = extproc["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert target["address"] == "router-headless.semantic-router.svc.cluster.local"
    for name in ("triton", "router"):
        assert objects(overlay, "Deployment")[name]["spec"]["replicas"] >= 2
    hpa = objects(overlay, "HorizontalPodAutoscaler")["router"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "router" and hpa["minReplicas"] >= 2
    pdb = objects(overlay, "PodDisruptionBudget")["router"]["spec"]
    assert pdb["selector"]["matchLabels"] == objects(overlay, "Deployment")["router"]["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_annotations_name_real_ports_and_the_alerts_jobs(overlay: str) -> None:
    jobs = set()
    for obj in rendered(overlay):
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        template = obj["spec"]["template"]
        annotations = template["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert int(annotations["prometheus.io/port"]) in ports, obj["metadata"]["name"]
        jobs.add(template["metadata"]["labels"]["app.kubernetes.io/name"])
    assert jobs >= ALERT_JOBS
    scrape = yaml.safe_load((K8S / "base" / "prometheus" / "prometheus.yml").read_text())
    relabels = scrape["scrape_configs"][0]["relabel_configs"]
    assert {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"], "target_label": "job"} in relabels


@pytest.mark.parametrize("config", ["base/envoy/envoy.yaml", "base/triton-lb/envoy.yaml"])
def test_envoy_accepts_the_k8s_configs(config: str) -> None:
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(K8S / config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
