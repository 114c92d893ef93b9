"""Overload: a burst of fresh chat requests through Envoy, with the classification queue bounded (the default) and
effectively unbounded (as before the bound), side by side.

    python benchmarks/reliability/overload.py --burst 400

For each setting: answers by status/code, latency p50/p99/max, and how many the router shed. Writes
benchmarks/results/overload.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from local_stack.stack import Ports, Stack, StackSettings  # noqa: E402
from tests.integration.conftest import write_test_config  # noqa: E402

PROMPTS = [
    "Prove that there are infinitely many prime numbers",
    "What drove the expansion of the Roman Empire?",
    "How do vaccines train the immune system?",
    "Explain the difference between a process and a thread",
]


async def burst(envoy_url: str, n: int) -> list[tuple[str, float]]:
    tag = time.time()

    async def one(client: httpx.AsyncClient, i: int) -> tuple[str, float]:
        body = {"model": "MoM", "messages": [{"role": "user", "content": f"{PROMPTS[i % 4]} ({tag} {i})"}]}
        started = time.perf_counter()
        try:
            r = await client.post(
                f"{envoy_url}/v1/chat/completions", json=body, headers={"x-vsr-cache-control": "no-cache, no-store"}
            )
            code = "" if r.status_code < 400 else f" {r.json()['error']['code']}"
            label = f"{r.status_code}{code}" + (" retry-after" if "retry-after" in r.headers else "")
        except httpx.HTTPError as e:
            label = type(e).__name__
        return label, time.perf_counter() - started

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(one(client, i) for i in range(n)))


def _shed(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return sum(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("semantic_router_classification_shed_total ")
    )


def measure(bound: int, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp:
        run_dir = Path(tmp)
        config = run_dir / "config.yaml"
        write_test_config(config)
        ports = Ports.free()
        stack = Stack(
            StackSettings(
                config=config,
                ports=ports,
                run_dir=run_dir,
                with_cache=False,
                router_env={"SR_MAX_PENDING_ROWS": str(bound)},
            )
        )
        stack.up()
        try:
            asyncio.run(burst(f"http://127.0.0.1:{ports.envoy}", 8))  # warm
            results = asyncio.run(burst(f"http://127.0.0.1:{ports.envoy}", n))
            shed = _shed(ports.router_metrics)
        finally:
            stack.down()
    by_label: dict[str, list[float]] = {}
    for label, seconds in results:
        by_label.setdefault(label, []).append(seconds)
    return {
        "bound": bound,
        "burst": n,
        "answers": {
            label: {"count": len(v), "p50_s": round(statistics.median(v), 3), "max_s": round(max(v), 3)}
            for label, v in sorted(by_label.items())
        },
        "shed": shed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=400)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    rows = [measure(bound, args.burst) for bound in (32, 128, 1_000_000)]
    lines = [
        f"# Overload ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`python benchmarks/reliability/overload.py --burst {args.burst}`: {args.burst} fresh chat requests at once "
        "through Envoy (default config: the jailbreak guard fails closed).",
        "",
        "| classification queue bound | answer | count | p50 (s) | max (s) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        bound = {128: "128 texts (default)", 1_000_000: "unbounded"}.get(row["bound"], f"{row['bound']} texts")
        for label, a in row["answers"].items():
            lines.append(f"| {bound} (shed {row['shed']:.0f}) | {label} | {a['count']} | {a['p50_s']} | {a['max_s']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overload.md").write_text(text)
    (args.out / "overload.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
