"""Latency the router adds, through Envoy, against Envoy going straight to the same backend.

Starts the real stack (Triton, router, Envoy, demo backend) on free ports plus a second Envoy whose only route goes
straight to the demo backend (no ExtProc). Both are driven by the same load generator in one run, interleaved in
rounds, so the machine's noise hits both alike; the table reports each path and the difference.

    .venv/bin/python benchmarks/router/run.py [--requests 300] [--concurrency 1 16 64] [--baseline-build KEY]

With `--baseline-build KEY` (a build in the build cache, e.g. the previous default) a second stack serving that
build runs beside the first, and every row measures both in the same rounds: the table then compares builds as
ratios, which hold on hosts of different speed.

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

from cache_service.auth import resolve_admin_token  # noqa: E402
from local_stack.components import free_port, local_envoy  # noqa: E402
from local_stack.paths import DEFAULT_CONFIG  # noqa: E402
from local_stack.stack import Ports, Stack, StackSettings  # noqa: E402

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

    def __init__(self, repository: Path = ROOT / "model_repository") -> None:
        import onnx
        import onnxruntime as ort
        from onnx.utils import Extractor
        from tokenizers import Tokenizer

        version = repository / "signals" / "1"
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

    def best_batch_throughput(self, offset: int, batches: tuple[int, ...] = (1, 4, 8, 16, 32)) -> dict[str, float]:
        """Sequences per second of the whole graph in this process at each batch size (prompts padded to the
        batch's longest, as Triton's model pads them), ~2 s each: the ceiling for routed throughput."""
        import numpy as np

        out: dict[str, float] = {}
        session = self.sessions["whole"]
        for batch in batches:
            rows = [self.tokenizer.encode(prompt(offset + i)).ids for i in range(batch)]
            width = max(len(r) for r in rows)
            ids = np.zeros((batch, width), dtype=np.int64)
            mask = np.zeros((batch, width), dtype=np.int64)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = r
                mask[i, : len(r)] = 1
            session.run(None, {"input_ids": ids, "attention_mask": mask})
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < 2.0:
                session.run(None, {"input_ids": ids, "attention_mask": mask})
                runs += 1
            out[str(batch)] = round(batch * runs / (time.perf_counter() - started), 1)
        return out

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
        admin = {"authorization": f"Bearer {resolve_admin_token(None, self.path.parent)}"}  # the stack's run folder
        async with httpx.AsyncClient(timeout=5, headers=admin) as client:
            for _ in range(200):
                models = (await client.get(f"{self.api_url}/config")).json()["model_config"].values()
                if all((m.get("pii_policy") or {}).get("allow_by_default") is True for m in models) is pii_free:
                    return
                await asyncio.sleep(0.05)
        raise RuntimeError("the router did not reload the benchmark config")


@dataclass
class Target:
    """One routed stack: its build, its Envoy URL, its config switch and its in-process graph floor."""

    label: str
    build_key: str
    url: str
    switch: ConfigSwitch
    floor: GraphFloor


async def measure(args: argparse.Namespace, targets: list[Target], direct_url: str) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    offset = 0
    for warm in targets:
        warm.floor.run(10, 20_000_000)  # warm-up
        for pii_free in (True, False):  # warm both paths and both graphs
            await warm.switch.use(pii_free)
            for _ in range(10):
                await drive(warm.url, "MoM", 1, 1, 10_000_000 + offset)
                offset += 1
    plans = [(c, False) for c in args.concurrency] + [(1, True)]
    for concurrency, memo in plans:
        n = args.requests if concurrency == 1 else args.requests * 2
        paths: list[tuple[str, Target | None, bool]] = [("direct", None, False)]
        for each in targets:
            paths.append((f"routed[{each.label}]", each, False))
            if concurrency == 1 and not memo:
                paths.append((f"routed_pii_free[{each.label}]", each, True))
        lat: dict[str, list[float]] = {p: [] for p, _, _ in paths}
        thr: dict[str, list[float]] = {p: [] for p, _, _ in paths}
        timings: dict[str, list[str]] = {p: [] for p, _, _ in paths}
        rounds = 3
        for _ in range(rounds):  # interleave: noise hits every path alike
            for name, target, pii_free in paths:
                if target is not None:
                    await target.switch.use(pii_free)
                url, model = (direct_url, "qwen3-1.7b") if target is None else (target.url, "MoM")
                start = -(10**9) if memo else offset
                latencies, throughput, t = await drive(url, model, n // rounds, concurrency, start)
                offset += n
                lat[name] += latencies
                thr[name].append(throughput)
                timings[name] += t
                if target is not None and concurrency == 1 and not memo and not pii_free:
                    # the graph alone, same prompts, same round (Triton idle meanwhile)
                    target.floor.run(n // rounds, offset - n)
        result = {
            name: {
                "p50_ms": round(pct(lat[name], 50), 2),
                "p99_ms": round(pct(lat[name], 99), 2),
                "throughput_rps": round(statistics.median(thr[name]), 1),
            }
            for name, _, _ in paths
        }
        for name, target, pii_free in paths[1:]:
            assert target is not None
            if memo:
                prompts = "repeated (router memo, no Triton call)"
            elif pii_free:
                prompts = "distinct, no PII needed (every model allows all PII)"
            else:
                prompts = "distinct"
            rows.append(
                {
                    "build": target.label,
                    "build_key": target.build_key,
                    "concurrency": concurrency,
                    "prompts": prompts,
                    "requests_per_path": len(lat[name]),
                    **{f"direct_{m}": v for m, v in result["direct"].items()},
                    **{f"routed_{m}": v for m, v in result[name].items()},
                    "added_p50_ms": round(result[name]["p50_ms"] - result["direct"]["p50_ms"], 2),
                    "added_p99_ms": round(result[name]["p99_ms"] - result["direct"]["p99_ms"], 2),
                    "router_breakdown_ms_p50": breakdown(timings[name]),
                }
            )
    graphs: dict[str, dict[str, Any]] = {}
    for each in targets:
        graphs[each.label] = {
            name: {"p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2), "runs": len(v)}
            for name, v in each.floor.latencies.items()
        }
        graphs[each.label]["batch_seq_per_s"] = each.floor.best_batch_throughput(30_000_000)
    return {"rows": rows, "graph_in_process": graphs, "builds": {t.label: t.build_key for t in targets}}


def _ratios(results: dict[str, Any]) -> list[str]:
    """The build comparison: this build's figure over the baseline's, measured in the same rounds."""
    builds = list(results.get("builds", {}))
    if len(builds) < 2:
        return []
    new, old = builds[0], builds[1]
    rows = {(r["build"], r["concurrency"], r["prompts"]): r for r in results["rows"]}
    graph = results["graph_in_process"]
    lines = [
        "",
        f"## `{new}` vs `{old}` (same run, interleaved rounds)",
        "",
        "| figure | " + new + " | " + old + " | ratio |",
        "|---|---|---|---|",
    ]

    def add(name: str, a: float, b: float) -> None:
        lines.append(f"| {name} | {a} | {b} | {a / b:.2f} |" if b else f"| {name} | {a} | {b} | - |")

    add("graph alone, in-process, batch 1, p50 ms", graph[new]["whole"]["p50_ms"], graph[old]["whole"]["p50_ms"])
    for c in sorted({r["concurrency"] for r in results["rows"]}):
        a, b = rows.get((new, c, "distinct")), rows.get((old, c, "distinct"))
        if a and b:
            if c == 1:
                add("c=1 added p50 ms", a["added_p50_ms"], b["added_p50_ms"])
                add("c=1 added p99 ms", a["added_p99_ms"], b["added_p99_ms"])
                beyond_a = round(a["added_p50_ms"] - graph[new]["whole"]["p50_ms"], 2)
                beyond_b = round(b["added_p50_ms"] - graph[old]["whole"]["p50_ms"], 2)
                add("c=1 router path beyond the graph, p50 ms", beyond_a, beyond_b)
            add(f"c={c} routed req/s", a["routed_throughput_rps"], b["routed_throughput_rps"])
    best_new = max(graph[new]["batch_seq_per_s"].values())
    best_old = max(graph[old]["batch_seq_per_s"].values())
    add("graph alone, in-process, best batch seq/s", best_new, best_old)
    for label, best in ((new, best_new), (old, best_old)):
        routed = [
            r["routed_throughput_rps"] for r in results["rows"] if r["build"] == label and r["prompts"] == "distinct"
        ]
        if routed:
            lines.append(
                f"| {label}: best routed req/s over the graph's best in-process seq/s | {max(routed)} | {best} | "
                f"{max(routed) / best:.2f} |"
            )
    return lines


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
        "| build | concurrency | prompts | direct p50 | direct p99 | routed p50 | routed p99 | added p50 | added p99 "
        "| direct rps | routed rps | router breakdown (p50 ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {r['build']} | {r['concurrency']} | {r['prompts']} | {r['direct_p50_ms']} | {r['direct_p99_ms']} | "
            f"{r['routed_p50_ms']} | "
            f"{r['routed_p99_ms']} | **{r['added_p50_ms']}** | **{r['added_p99_ms']}** | "
            f"{r['direct_throughput_rps']} | {r['routed_throughput_rps']} | {r['router_breakdown_ms_p50']} |"
        )
    graphs: dict[str, Any] = results.get("graph_in_process") or {}  # type: ignore[assignment]
    if graphs:
        lines += [
            "",
            "The floor: the served classifier graph alone, in this process (onnxruntime, batch 1, 2 threads), on the",
            "same prompts in the same rounds, and what the router path adds beyond it (added p50 − graph p50); and",
            "the graph's in-process throughput by batch size (the ceiling for routed throughput):",
            "",
            "| build | graph | p50 | p99 | c=1 added p50 beyond the graph | in-process seq/s by batch |",
            "|---|---|---|---|---|---|",
        ]
        for label, graph in graphs.items():
            c1 = {
                r["prompts"]: r
                for r in results["rows"]  # type: ignore[attr-defined]
                if r["concurrency"] == 1 and r["build"] == label
            }
            for name, row in (
                ("whole", "distinct"),
                ("no_pii", "distinct, no PII needed (every model allows all PII)"),
            ):
                g = graph[name]
                beyond = round(c1[row]["added_p50_ms"] - g["p50_ms"], 2) if row in c1 else "-"
                batches = graph["batch_seq_per_s"] if name == "whole" else ""
                lines.append(f"| {label} | {name} | {g['p50_ms']} | {g['p99_ms']} | {beyond} | {batches} |")
    lines += _ratios(results)  # type: ignore[arg-type]
    lines += [
        "",
        "Targets at concurrency 1 (distinct prompts): added p50 ≤ 10 ms on a quiet 2-core host (≤ 0.6× the previous",
        "build in the same run), added p99 ≤ 25 ms, router path beyond the graph ≤ 5 ms. The repeated-prompt row is",
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


def start_bench_stack(run_dir: Path, model_repository: Path = ROOT / "model_repository") -> BenchStack:
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
    stack = Stack(
        StackSettings(config=config, ports=ports, run_dir=run_dir, model_repository=model_repository, with_cache=False)
    )
    stack.up()
    return BenchStack(stack, ports, config, raw, backend_port)


def _baseline_repository(key: str, run_dir: Path) -> Path:
    """The cached build `key` installed into a model repository of its own under `run_dir`."""
    from build_engines.cache import build_dir, is_complete
    from build_engines.pipeline import install_from_cache

    directory = build_dir(key)
    if not is_complete(directory):
        raise SystemExit(f"no complete build {key} in {directory}: build it, or leave out --baseline-build")
    repository = run_dir / "baseline-repository"
    install_from_cache(directory, repository=repository, reports=run_dir / "baseline-reports")
    return repository


def _build_key(repository: Path) -> str:
    manifest = json.loads((repository / "signals" / "1" / "manifest.json").read_text())
    return str(manifest.get("build_key", "?"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--baseline-build", help="a cached build key to measure beside the installed build")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        (run_dir / "main").mkdir()
        bench = start_bench_stack(run_dir / "main")
        benches = [("installed", bench, ROOT / "model_repository")]
        if args.baseline_build:
            (run_dir / "baseline").mkdir()
            repository = _baseline_repository(args.baseline_build, run_dir)
            benches.append(("baseline", start_bench_stack(run_dir / "baseline", repository), repository))
        direct_port, direct_admin = free_port(), free_port()
        direct_cfg = run_dir / "envoy-direct.yaml"
        direct_cfg.write_text(DIRECT_ENVOY.format(listen=direct_port, backend=bench.backend_port, admin=direct_admin))
        direct = local_envoy("envoy-direct", direct_cfg, direct_admin).start()
        try:
            direct.wait_ready(30)
            targets = []
            for _, b, repository in benches:
                key = _build_key(repository)
                targets.append(
                    Target(
                        key,
                        key,
                        f"http://127.0.0.1:{b.ports.envoy}",
                        ConfigSwitch(b.config, b.raw, f"http://127.0.0.1:{b.ports.router_http}"),
                        GraphFloor(repository),
                    )
                )
            results = asyncio.run(measure(args, targets, f"http://127.0.0.1:{direct_port}"))
        finally:
            direct.stop()
            for _, b, _ in benches:
                b.stack.down()
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
