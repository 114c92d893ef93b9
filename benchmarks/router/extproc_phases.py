"""What each ExtProc phase costs: one router, several Envoys in front of it that differ only in processing mode.

Starts the stack (Triton, router, Envoy, demo backend) on free ports, an Envoy going straight to the backend, and
Envoy variants of the stack's own config sharing the stack's router. Every request repeats one prompt, so after the
first the router answers its signals from its memo: the table is the Envoy/ExtProc/JSON path without the classifier.
Variants are driven in the same rounds, interleaved, so host noise hits them alike.

    .venv/bin/python benchmarks/router/extproc_phases.py [--requests 50] [--rounds 4]

Writes benchmarks/results/extproc_phases.json. Variants that drop a phase are for measurement only: without the
response-headers phase there are no routing headers and no STREAMED override for SSE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import DIRECT_ENVOY, prompt, start_bench_stack  # noqa: E402

from local_stack.components import ManagedProcess, free_port, local_envoy  # noqa: E402

VARIANTS: dict[str, Callable[[str], str]] = {
    "as shipped (4 messages)": lambda y: y,
    "send_body_without_waiting_for_header_response": lambda y: y.replace(
        "allow_mode_override: true",
        "allow_mode_override: true\n              send_body_without_waiting_for_header_response: true",
    ),
    "response headers SKIP (3 messages)": lambda y: y.replace(
        "response_header_mode: SEND", "response_header_mode: SKIP"
    ),
    "no response phase (2 messages)": lambda y: y.replace(
        "response_header_mode: SEND", "response_header_mode: SKIP"
    ).replace("response_body_mode: BUFFERED", "response_body_mode: NONE"),
}


async def drive(client: httpx.AsyncClient, url: str, n: int) -> list[float]:
    body = {"model": "MoM", "messages": [{"role": "user", "content": prompt(-1)}]}
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await client.post(f"{url}/v1/chat/completions", json=body)
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {r.status_code} {r.text[:200]}")
    return out


async def measure(urls: dict[str, str], n: int, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k in urls}
    async with httpx.AsyncClient(timeout=30) as client:
        for url in urls.values():
            await drive(client, url, 20)  # warm-up (and the memo entry)
        for _ in range(rounds):
            for name, url in urls.items():
                results[name] += await drive(client, url, n)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50, help="per variant per round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    procs: list[ManagedProcess] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        bench = start_bench_stack(run_dir)
        try:

            def envoy(name: str, text: str, admin: int) -> None:
                path = run_dir / f"envoy-{len(procs)}.yaml"
                path.write_text(text)
                proc = local_envoy(name, path, admin).start()
                procs.append(proc)
                proc.wait_ready(30)

            urls: dict[str, str] = {}
            listen, admin = free_port(), free_port()
            envoy("direct", DIRECT_ENVOY.format(listen=listen, backend=bench.backend_port, admin=admin), admin)
            urls["Envoy straight to the backend"] = f"http://127.0.0.1:{listen}"
            shipped = (run_dir / "envoy.yaml").read_text()
            for name, change in VARIANTS.items():
                listen, admin = free_port(), free_port()
                text = change(shipped)
                text = text.replace(f"port_value: {bench.ports.envoy}", f"port_value: {listen}")
                text = text.replace(f"port_value: {bench.ports.envoy_admin}", f"port_value: {admin}")
                envoy(name, text, admin)
                urls[name] = f"http://127.0.0.1:{listen}"
            results = asyncio.run(measure(urls, args.requests, args.rounds))
        finally:
            for proc in procs:
                proc.stop()
            bench.stack.down()
    direct = statistics.median(results["Envoy straight to the backend"])
    rows = []
    print(f"{'path':50s} {'p50 ms':>8s} {'p90 ms':>8s} {'added p50':>10s}")
    for name, values in results.items():
        p50, p90 = statistics.median(values), sorted(values)[int(len(values) * 0.9)]
        rows.append(
            {"path": name, "p50_ms": round(p50, 2), "p90_ms": round(p90, 2), "added_p50_ms": round(p50 - direct, 2)}
        )
        print(f"{name:50s} {p50:8.2f} {p90:8.2f} {p50 - direct:10.2f}")
    out = ROOT / "benchmarks" / "results" / "extproc_phases.json"
    command = "python benchmarks/router/extproc_phases.py " + " ".join(sys.argv[1:])
    out.write_text(json.dumps({"command": command.strip(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
