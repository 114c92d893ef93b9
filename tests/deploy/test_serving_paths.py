"""The deployment's serving paths run for real on the CPU model, with two Triton replicas on loopback:

- the compose load-test script (deploy/loadtest/perf_scenarios.py): perf_analyzer against a Triton started in
  explicit model-control mode, as compose starts the GPU one (a smoke run: one scenario, two concurrency levels,
  short windows; the figures are not benchmarks);
- the Kubernetes triton-lb Envoy config (deploy/k8s/base/triton-lb/envoy.yaml) in front of both replicas: one
  gRPC connection, as the router keeps, spreads its requests over both Tritons."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml

from build_engines.paths import MODEL_REPOSITORY_DIR
from build_engines.perf_analyzer import ensure_perf_analyzer
from local_stack.components import LocalTriton, free_port, local_envoy, local_triton

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "loadtest"))
import perf_scenarios  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tritons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LocalTriton]]:
    if not (MODEL_REPOSITORY_DIR / "signals" / "1" / "model.py").exists():
        pytest.skip("the model is not installed (make setup)")
    servers = [local_triton(MODEL_REPOSITORY_DIR, tmp_path_factory.mktemp(f"triton-{i}")) for i in range(2)]
    try:
        for server in servers:
            server.process.start()
        for server in servers:
            server.process.wait_ready(240)
        yield servers
    finally:
        for server in servers:
            server.process.stop()


@pytest.fixture(scope="module")
def triton(tritons: list[LocalTriton]) -> LocalTriton:
    return tritons[0]


def test_load_test_script_measures_batching_on_and_off(triton: LocalTriton, tmp_path: Path) -> None:
    http = f"http://127.0.0.1:{triton.http_port}"
    served = httpx.get(f"{http}/v2/models/signals/config", timeout=10).json()
    assert "dynamic_batching" in served
    code = perf_scenarios.main(
        [
            *("--url", f"127.0.0.1:{triton.grpc_port}", "--http-url", http),
            *("--tokenizer", str(MODEL_REPOSITORY_DIR / "signals" / "1" / "tokenizer.json")),
            *("--out", str(tmp_path), "--perf-analyzer", str(ensure_perf_analyzer())),
            *("--interval-ms", "500", "--only", "fixed", "--max-concurrency", "2"),
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "gpu_serving.json").read_text())
    runs = {(r["config"], r["concurrency"]): r for r in result["runs"]}
    assert set(runs) == {(c, n) for c in ("dynamic batching", "no batching") for n in (1, 2)}
    for run in runs.values():
        assert run.get("unstable") or (math.isfinite(run["req_per_s"]) and run["req_per_s"] > 0), run
        assert run["mean_batch"] >= 1
    assert runs[("no batching", 2)]["mean_batch"] == 1  # one request per execution without the batcher
    assert "| dynamic batching | fixed 64 tokens | 1 |" in (tmp_path / "gpu_serving.md").read_text()
    restored = httpx.get(f"{http}/v2/models/signals/config", timeout=10).json()
    assert restored.get("dynamic_batching") == served["dynamic_batching"], "the served config was not restored"


def _inferences(server: LocalTriton) -> int:
    stats = httpx.get(f"http://127.0.0.1:{server.http_port}/v2/models/signals/stats", timeout=10).json()
    return int(stats["model_stats"][0]["inference_count"])


def test_triton_lb_spreads_one_connection_over_every_replica(tritons: list[LocalTriton], tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "triton-lb" / "envoy.yaml").read_text())
    listen, admin = free_port(), free_port()
    config["static_resources"]["listeners"][0]["address"]["socket_address"] = {
        "address": "127.0.0.1",
        "port_value": listen,
    }
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": admin}
    (cluster,) = config["static_resources"]["clusters"]
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": t.grpc_port}}}}
        for t in tritons
    ]
    path = tmp_path / "triton-lb.yaml"
    path.write_text(yaml.safe_dump(config))
    envoy = local_envoy("triton-lb", path, admin).start()
    try:
        envoy.wait_ready(30)
        deadline = time.monotonic() + 20  # both replicas pass Envoy's gRPC health check
        while httpx.get(f"http://127.0.0.1:{admin}/clusters", timeout=5).text.count("health_flags::healthy") < 2:
            assert time.monotonic() < deadline, "triton-lb never saw both Tritons healthy (gRPC health check)"
            time.sleep(0.5)
        tokenizer = perf_scenarios.token_rows(MODEL_REPOSITORY_DIR / "signals" / "1" / "tokenizer.json", (32,))[0]
        ids = np.array([tokenizer], dtype=np.int64)
        inputs = [grpcclient.InferInput("input_ids", list(ids.shape), "INT64"),
                  grpcclient.InferInput("attention_mask", list(ids.shape), "INT64")]  # fmt: skip
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(np.ones_like(ids))
        before = [_inferences(t) for t in tritons]
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{listen}")  # one channel, like the router's
        try:
            for _ in range(40):
                result = client.infer("signals", inputs, outputs=[grpcclient.InferRequestedOutput("intent_probs")])
                assert result.as_numpy("intent_probs").shape[0] == 1
        finally:
            client.close()
        served = [_inferences(t) - b for t, b in zip(tritons, before, strict=True)]
        assert sum(served) == 40 and min(served) >= 10, f"requests per replica: {served}"
    finally:
        envoy.stop()
