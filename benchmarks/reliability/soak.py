"""Soak: a long mixed run through Envoy with the resident memory (RSS) of every process sampled.

Mix per request (deterministic by index): routed (a fresh prompt), cached (a repeated prompt, answered by the
semantic cache), blocked (a jailbreak prompt) and streamed (SSE, read to the end). Every answer is checked as the
fault suite checks it; RSS of each stack process (with its children) is sampled every `--sample-s` seconds.
Growth is measured from the end of the warm-up (the first 10% of requests) to the end.

    python benchmarks/reliability/soak.py --requests 50000 --concurrency 32

Writes benchmarks/results/soak.json, soak.md and soak_rss.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.reliability.faults import BENIGN, JAILBREAK, classify  # noqa: E402


def _rss_kib(pid: int) -> int:
    """RSS of `pid` and its descendants, in KiB (from /proc)."""
    total = 0
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo.extend(children.get(current, []))
    return total


async def soak(
    envoy_url: str, pids: dict[str, int], requests: int, concurrency: int, sample_s: float
) -> dict[str, Any]:
    url = f"{envoy_url}/v1/chat/completions"
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    wrong: list[str] = []
    samples: list[dict[str, Any]] = []
    next_index = 0
    done = 0
    started = time.monotonic()

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal done
        kind = ("routed", "cached", "cached", "blocked", "streamed", "routed", "cached", "routed")[i % 8]
        jailbreak = kind == "blocked"
        if kind == "routed":
            prompt = f"{BENIGN[i % len(BENIGN)]} ({uuid.uuid4().hex[:8]})"
        elif jailbreak:
            prompt = JAILBREAK
        else:
            prompt = BENIGN[i % len(BENIGN)]
        body: dict[str, Any] = {"model": "MoM", "messages": [{"role": "user", "content": prompt}]}
        # a routed request skips the cache lookup (its near-twins would be semantic hits) so it reaches a backend
        headers = {"x-vsr-cache-control": "no-cache"} if kind == "routed" else {}
        try:
            if kind == "streamed":
                body["stream"] = True
                async with client.stream("POST", url, json=body, headers=headers, timeout=30) as r:
                    text = (await r.aread()).decode("utf-8", "replace")
                ok = r.status_code == 200 and text.rstrip().endswith("data: [DONE]")
                outcome, detail = ("ok", "") if ok else ("wrong", f"stream HTTP {r.status_code}: {text[:100]}")
            else:
                resp = await client.post(url, json=body, headers=headers, timeout=30)
                outcome, detail = classify(jailbreak, resp)
        except httpx.TimeoutException:
            outcome, detail = "hung", "timeout"
        except httpx.HTTPError as e:
            outcome, detail = "wrong", f"connection error {type(e).__name__}"
        outcomes[outcome] += 1
        kinds[kind] += 1
        if outcome != "ok" and len(wrong) < 20:
            wrong.append(f"{kind}: {detail}")
        done += 1
        if done % 5000 == 0:
            print(f"{done} answered, {time.monotonic() - started:.0f} s, {dict(outcomes)}", flush=True)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < requests:
            i = next_index
            next_index += 1
            await one(client, i)

    async def sampler() -> None:
        while True:
            rss = {name: _rss_kib(pid) for name, pid in pids.items()}
            samples.append({"t": round(time.monotonic() - started, 1), "done": done, "rss_kib": rss})
            await asyncio.sleep(sample_s)

    sampling = asyncio.create_task(sampler())
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency * 2)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    sampling.cancel()
    samples.append(
        {"t": round(time.monotonic() - started, 1), "done": done, "rss_kib": {n: _rss_kib(p) for n, p in pids.items()}}
    )
    return {
        "requests": requests,
        "concurrency": concurrency,
        "seconds": round(time.monotonic() - started, 1),
        "outcomes": dict(outcomes),
        "kinds": dict(kinds),
        "wrong": wrong,
        "samples": samples,
    }


def growth(result: dict[str, Any]) -> dict[str, tuple[int, int, float]]:
    """Per process: (RSS after warm-up, RSS at the end, growth %); warm-up = the first 10% of requests."""
    samples = result["samples"]
    warm = next((s for s in samples if s["done"] >= result["requests"] * 0.1), samples[0])
    end = samples[-1]
    out = {}
    for name, after in warm["rss_kib"].items():
        last = end["rss_kib"].get(name, 0)
        out[name] = (after, last, (last - after) / after * 100 if after else 0.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    from tests.integration.conftest import start_stack

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        running = start_stack(Path(tmp))
        try:
            pids = {name: proc.pid for name, proc in running.stack.by_name.items()}
            result = asyncio.run(soak(running.envoy_url, pids, args.requests, args.concurrency, args.sample_s))
            result["restarts"] = running.stack.dead()
        finally:
            running.stack.down()
    table = growth(result)
    lines = [
        f"# Soak ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`python benchmarks/reliability/soak.py --requests {args.requests} --concurrency {args.concurrency}`: "
        f"{result['seconds']:.0f} s, {args.requests / max(result['seconds'], 1e-9):.0f} req/s; answers "
        + ", ".join(f"{k} {v}" for k, v in sorted(result["outcomes"].items()))
        + "; mix "
        + ", ".join(f"{k} {v}" for k, v in sorted(result["kinds"].items()))
        + ".",
        "",
        "| process | RSS after warm-up (MiB) | RSS at the end (MiB) | growth |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, (after, last, pct) in table.items():
        lines.append(f"| {name} | {after / 1024:.0f} | {last / 1024:.0f} | {pct:+.1f}% |")
    if result["wrong"]:
        lines += ["", "Non-correct answers (first ones): " + "; ".join(result["wrong"])]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.md").write_text(text)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 5))
        for name in result["samples"][0]["rss_kib"]:
            ax.plot(
                [s["done"] for s in result["samples"]],
                [s["rss_kib"][name] / 1024 for s in result["samples"]],
                label=name,
            )
        ax.set_xlabel("requests answered")
        ax.set_ylabel("RSS (MiB)")
        ax.set_title(f"Soak: RSS per process, concurrency {args.concurrency}")
        ax.legend(fontsize=8)
        fig.savefig(args.out / "soak_rss.png", dpi=100, bbox_inches="tight")
    except ImportError:
        pass
    bad = result["outcomes"].get("wrong", 0) + result["outcomes"].get("hung", 0)
    return 1 if bad or any(pct >= 10 for *_, pct in table.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
