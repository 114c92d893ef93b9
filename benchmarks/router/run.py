"""Latency the router adds, through Envoy, against Envoy going straight to the same backend.

Starts the real stack (Triton, router, Envoy, demo backend) on free ports plus a second Envoy whose only route goes
straight to the demo backend (no ExtProc). Both are driven by the same load generator in one run, interleaved in
rounds, so the machine's noise hits both alike; the table reports each path and the difference.

    .venv/bin/python benchmarks/router/run.py [--requests 300] [--quick]

Writes benchmarks/results/router.{json,md}. Every request carries a distinct ~30-token prompt, so the router's
small memo of recent texts never answers for Triton; the semantic cache is off (its cost is measured in
benchmarks/cache). The breakdown comes from the router's `x-vsr-timings` response header.

At concurrency 1 a third path runs in the same rounds: the same stack after a hot reload to a config in which every
model allows all PII (as in VSR's own config.yaml), so detected PII cannot change a route and the router asks Triton
for no PII (the graph then runs without its PII branch). The config is switched back before each default round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from semantic_router.components import free_port, local_envoy  # noqa: E402
from semantic_router.paths import DEFAULT_CONFIG  # noqa: E402
from semantic_router.stack import Ports, Stack, StackSettings  # noqa: E402

SUBJECTS = [
    "a derivative",
    "a contract dispute",
    "photosynthesis",
    "a sorting algorithm",
    "inflation",
    "the French revolution",
    "a bridge truss",
    "anxiety",
    "Kant's ethics",
    "a chemical equilibrium",
]

NOTES_MARKER = "<!-- notes: kept when the table above is regenerated -->"

DIRECT_ENVOY = """
static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: direct
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: backend, timeout: 60s}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: 127.0.0.1, port_value: {backend}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
"""


def prompt(i: int) -> str:
    if i < 0:  # the memo row: one fixed prompt, answered from the router's memo without a Triton call
        return prompt(0)
    # ~30 tokens, distinct per request (the number makes each text new to the router's memo)
    return (
        f"I have been reading about {SUBJECTS[i % len(SUBJECTS)]} for my class, chapter {i}, and I am still "
        "confused. Could you explain the main idea simply, with one short example?"
    )


async def drive(url: str, model: str, n: int, concurrency: int, offset: int) -> tuple[list[float], float, list[str]]:
    latencies: list[float] = []
    timings: list[str] = []
    errors: list[str] = []
    counter = iter(range(n))
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            for i in counter:
                body = {"model": model, "messages": [{"role": "user", "content": prompt(offset + i)}]}
                t0 = time.perf_counter()
                r = await client.post(f"{url}/v1/chat/completions", json=body)
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code} {r.text[:120]}")
                if "x-vsr-timings" in r.headers:
                    timings.append(r.headers["x-vsr-timings"])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if errors:
        print(f"  {url}: {len(errors)} of {n} failed, first: {errors[0]}", file=sys.stderr)
    return latencies, (n - len(errors)) / elapsed, timings


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def breakdown(timings: list[str]) -> dict[str, float]:
    parts: dict[str, list[float]] = {}
    for header in timings:
        for item in header.split(";"):
            key, _, value = item.partition("=")
            if value:
                parts.setdefault(key, []).append(float(value))
    return {k: round(statistics.median(v), 2) for k, v in parts.items()}


class GraphFloor:
    """The served classifier graph run in this process (onnxruntime, batch 1, the Triton model's thread count), on
    the same prompts in the same rounds: the floor under the router's `signals` time on this host, right now."""

    def __init__(self) -> None:
        import onnx
        import onnxruntime as ort
        from onnx.utils import Extractor
        from tokenizers import Tokenizer

        version = ROOT / "model_repository" / "signals" / "1"
        manifest = json.loads((version / "manifest.json").read_text())
        model = version / manifest.get("serving", {}).get("onnx_file", "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2  # as model_repository/signals/config.pbtxt
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        whole = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in whole.get_outputs() if not o.name.startswith("pii_")]
        cut = Extractor(onnx.load(str(model))).extract_model(["input_ids", "attention_mask"], outputs)
        self.sessions = {
            "whole": whole,
            "no_pii": ort.InferenceSession(cut.SerializeToString(), options, providers=["CPUExecutionProvider"]),
        }
        self.tokenizer = Tokenizer.from_file(str(version / "tokenizer.json"))
        self.latencies: dict[str, list[float]] = {name: [] for name in self.sessions}

    def run(self, n: int, offset: int) -> None:
        import numpy as np

        for i in range(n):
            ids = np.array([self.tokenizer.encode(prompt(offset + i)).ids], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            for name, session in self.sessions.items():
                t0 = time.perf_counter()
                session.run(None, feed)
                self.latencies[name].append((time.perf_counter() - t0) * 1000)


class ConfigSwitch:
    """Hot-reloads the running router between the benchmark config and its PII-free twin (every model allows all
    PII); `use` returns once the router's GET /config shows the new policies."""

    def __init__(self, path: Path, raw: dict[str, object], api_url: str) -> None:
        self.path, self.api_url = path, api_url
        pii_free = json.loads(json.dumps(raw))
        for model in pii_free["model_config"].values():
            model["pii_policy"] = {"allow_by_default": True}
        self.variants = {False: raw, True: pii_free}

    async def use(self, pii_free: bool) -> None:
        self.path.write_text(yaml.safe_dump(self.variants[pii_free]))
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(200):
                models = (await client.get(f"{self.api_url}/config")).json()["model_config"].values()
                if all((m.get("pii_policy") or {}).get("allow_by_default") is True for m in models) is pii_free:
                    return
                await asyncio.sleep(0.05)
        raise RuntimeError("the router did not reload the benchmark config")


async def measure(
    args: argparse.Namespace, routed_url: str, direct_url: str, switch: ConfigSwitch
) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    floor = GraphFloor()
    floor.run(10, 20_000_000)  # warm-up
    offset = 0
    for pii_free in (True, False):  # warm both paths and both graphs
        await switch.use(pii_free)
        for _ in range(10):
            await drive(routed_url, "MoM", 1, 1, 10_000_000 + offset)
            offset += 1
    plans = [(c, False) for c in args.concurrency] + [(1, True)]
    for concurrency, memo in plans:
        n = args.requests if concurrency == 1 else args.requests * 2
        paths = ["direct", "routed"] + (["routed_pii_free"] if concurrency == 1 and not memo else [])
        lat: dict[str, list[float]] = {p: [] for p in paths}
        thr: dict[str, list[float]] = {p: [] for p in paths}
        timings: dict[str, list[str]] = {p: [] for p in paths}
        rounds = 3
        for _ in range(rounds):  # interleave: noise hits every path alike
            for name in paths:
                if name != "direct":
                    await switch.use(name == "routed_pii_free")
                url, model = (direct_url, "qwen3-1.7b") if name == "direct" else (routed_url, "MoM")
                start = -(10**9) if memo else offset
                latencies, throughput, t = await drive(url, model, n // rounds, concurrency, start)
                offset += n
                lat[name] += latencies
                thr[name].append(throughput)
                timings[name] += t
            if concurrency == 1 and not memo:  # the graph alone, same prompts, same round (Triton idle meanwhile)
                floor.run(n // rounds, offset - n)
        result = {
            name: {
                "p50_ms": round(pct(lat[name], 50), 2),
                "p99_ms": round(pct(lat[name], 99), 2),
                "throughput_rps": round(statistics.median(thr[name]), 1),
            }
            for name in paths
        }
        for routed in paths[1:]:
            if memo:
                prompts = "repeated (router memo, no Triton call)"
            elif routed == "routed_pii_free":
                prompts = "distinct, no PII needed (every model allows all PII)"
            else:
                prompts = "distinct"
            rows.append(
                {
                    "concurrency": concurrency,
                    "prompts": prompts,
                    "requests_per_path": len(lat[routed]),
                    **{f"direct_{m}": v for m, v in result["direct"].items()},
                    **{f"routed_{m}": v for m, v in result[routed].items()},
                    "added_p50_ms": round(result[routed]["p50_ms"] - result["direct"]["p50_ms"], 2),
                    "added_p99_ms": round(result[routed]["p99_ms"] - result["direct"]["p99_ms"], 2),
                    "router_breakdown_ms_p50": breakdown(timings[routed]),
                }
            )
    graph = {
        name: {"p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2), "runs": len(v)}
        for name, v in floor.latencies.items()
    }
    return {"rows": rows, "graph_in_process": graph}


def write(results: dict[str, object]) -> None:
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "router.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# Router overhead through Envoy (CPU stack, 2 cores)",
        "",
        f"Command: `{results['command']}` — {results['machine']}, build `{results.get('build_key', '?')}` "
        f"serving `{results.get('onnx_file', '?')}`",
        "",
        "| concurrency | prompts | direct p50 | direct p99 | routed p50 | routed p99 | added p50 | added p99 "
        "| direct rps | routed rps | router breakdown (p50 ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {r['concurrency']} | {r['prompts']} | {r['direct_p50_ms']} | {r['direct_p99_ms']} | "
            f"{r['routed_p50_ms']} | "
            f"{r['routed_p99_ms']} | **{r['added_p50_ms']}** | **{r['added_p99_ms']}** | "
            f"{r['direct_throughput_rps']} | {r['routed_throughput_rps']} | {r['router_breakdown_ms_p50']} |"
        )
    graph = results.get("graph_in_process") or {}
    c1 = {r["prompts"]: r for r in results["rows"] if r["concurrency"] == 1}  # type: ignore[attr-defined]
    if graph:
        lines += [
            "",
            "The floor: the served classifier graph alone, in this process (onnxruntime, batch 1, 2 threads), on the",
            "same prompts in the same rounds, and what the router path adds beyond it (added p50 − graph p50):",
            "",
            "| graph | p50 | p99 | c=1 added p50 beyond the graph |",
            "|---|---|---|---|",
        ]
        for name, row in (("whole", "distinct"), ("no_pii", "distinct, no PII needed (every model allows all PII)")):
            g = graph[name]
            beyond = round(c1[row]["added_p50_ms"] - g["p50_ms"], 2) if row in c1 else "-"
            lines.append(f"| {name} | {g['p50_ms']} | {g['p99_ms']} | {beyond} |")
    lines += [
        "",
        "Targets at concurrency 1 (distinct prompts): added p50 ≤ 15 ms, added p99 ≤ 40 ms. The repeated-prompt row is",
        "the path without the classifier (Envoy, the ExtProc messages, JSON and decision work in the router).",
    ]
    previous = out / "router.md"
    if previous.exists() and NOTES_MARKER in previous.read_text():  # hand-written notes survive a re-run
        lines += ["", NOTES_MARKER + previous.read_text().split(NOTES_MARKER, 1)[1].rstrip("\n")]
    (out / "router.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


@dataclass(frozen=True)
class BenchStack:
    stack: Stack
    ports: Ports
    config: Path
    raw: dict[str, Any]
    backend_port: int


def start_bench_stack(run_dir: Path) -> BenchStack:
    """The real stack on free ports with the default config, every model served by one demo backend and the
    semantic cache off (its cost is measured in benchmarks/cache). The caller stops `stack`."""
    raw: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text())
    backend_port = free_port()
    raw["vllm_endpoints"] = [{"name": "bench", "address": "127.0.0.1", "port": backend_port, "weight": 1}]
    for model in raw["model_config"].values():
        model["preferred_endpoints"] = ["bench"]
    raw["semantic_cache"]["enabled"] = False
    config = run_dir / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    ports = Ports.free()
    stack = Stack(StackSettings(config=config, ports=ports, run_dir=run_dir, with_cache=False))
    stack.up()
    return BenchStack(stack, ports, config, raw, backend_port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        bench = start_bench_stack(run_dir)
        stack, ports, config, raw, backend_port = bench.stack, bench.ports, bench.config, bench.raw, bench.backend_port
        direct_port, direct_admin = free_port(), free_port()
        direct_cfg = run_dir / "envoy-direct.yaml"
        direct_cfg.write_text(DIRECT_ENVOY.format(listen=direct_port, backend=backend_port, admin=direct_admin))
        direct = local_envoy("envoy-direct", direct_cfg, direct_admin).start()
        try:
            direct.wait_ready(30)
            switch = ConfigSwitch(config, raw, f"http://127.0.0.1:{ports.router_http}")
            results = asyncio.run(
                measure(args, f"http://127.0.0.1:{ports.envoy}", f"http://127.0.0.1:{direct_port}", switch)
            )
        finally:
            direct.stop()
            stack.down()
    results["command"] = "python benchmarks/router/run.py " + " ".join(sys.argv[1:])
    manifest = json.loads((ROOT / "model_repository" / "signals" / "1" / "manifest.json").read_text())
    results["build_key"] = manifest.get("build_key", "?")
    results["onnx_file"] = manifest.get("serving", {}).get("onnx_file", "model.onnx")
    results["machine"] = (
        f"{platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores"
    )
    write(results)


if __name__ == "__main__":
    main()
