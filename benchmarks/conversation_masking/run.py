"""What PII masking and conversation pinning cost the router, per request.

    python benchmarks/conversation_masking/run.py            # ~1 min on 2 cores
    python benchmarks/conversation_masking/run.py --rounds 2000

Masking (pure Python, in-process, one core): planning the placeholders, masking a 12-message chat body, restoring a
JSON completion, and restoring a 400-event SSE stream fed in network chunks of 64 bytes (placeholders split across
events), against passing the same chunks through untouched.
Pinning: `PinStore.lookup` (one GET) and a save (one SET with TTL) against a local Valkey that this script starts
(local_stack.components), on the router's loop (uvloop); the router runs the lookup beside the Triton call, so
it adds to a request only what exceeds the classification time.
Writes benchmarks/results/conversation_masking.json and .md, and prints the table.
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from local_stack.components import ManagedProcess, free_port, valkey_command, wait_tcp  # noqa: E402
from router_service.clients.pins import PinStore  # noqa: E402
from router_service.core.conversation import Pin  # noqa: E402
from router_service.core.decision_types import PiiEntity  # noqa: E402
from router_service.core.pii_masking import StreamRestorer, mask_body, plan_masking, restore_completion  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
EMAILS = [f"person{i}@example.com" for i in range(4)]
NAMES = ["Jane Doe", "John Smith", "Ada Lovelace"]


def _entities() -> list[PiiEntity]:
    values = [("EMAIL_ADDRESS", e) for e in EMAILS] + [("PERSON", n) for n in NAMES] + [("US_SSN", "123-45-6789")]
    return [PiiEntity(t, 0, len(v), v, 0.95) for t, v in values]


def _body() -> dict[str, Any]:
    messages = []
    for i in range(12):
        role = "user" if i % 2 == 0 else "assistant"
        text = f"Turn {i}: please write to {EMAILS[i % 4]} about {NAMES[i % 3]}'s account; " + "details " * 40
        messages.append({"role": role, "content": text})
    return {"model": "MoM", "messages": messages}


def _stream(masking_text: str) -> bytes:
    events = []
    for i in range(400):
        piece = masking_text[(i * 7) % len(masking_text) : (i * 7) % len(masking_text) + 7]
        events.append(
            {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}
        )
    events.append(
        {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    )
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _time(fn: Callable[[], object], rounds: int) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    samples.sort()
    return {"p50_us": statistics.median(samples), "p99_us": samples[int(len(samples) * 0.99) - 1]}


def masking_rows(rounds: int) -> list[tuple[str, dict[str, float]]]:
    entities = _entities()
    masking = plan_masking(entities, lambda _: True, restore=True)
    assert masking is not None
    body = _body()
    text = " ".join(masking.mask(m["content"]) for m in body["messages"][:3])
    completion = json.dumps(
        {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
    ).encode()
    stream = _stream(text)
    chunks = [stream[i : i + 64] for i in range(0, len(stream), 64)]

    copies = [json.loads(json.dumps(body)) for _ in range(rounds)]

    def mask_once() -> None:
        mask_body(copies.pop(), masking)

    def restore_stream() -> None:
        r = StreamRestorer(masking)
        for c in chunks:
            r.feed(c)
        r.flush()

    def pass_stream() -> None:
        out = [c for c in chunks]
        del out

    return [
        ("plan placeholders (8 entities)", _time(lambda: plan_masking(entities, lambda _: True, restore=True), rounds)),
        ("mask a 12-message body (~5.5 kB of text)", _time(mask_once, rounds)),
        ("restore a JSON completion", _time(lambda: restore_completion(completion, masking), rounds)),
        (f"restore a 400-event SSE stream ({len(chunks)} chunks)", _time(restore_stream, max(rounds // 10, 20))),
        ("pass the same stream through untouched", _time(pass_stream, max(rounds // 10, 20))),
    ]


async def _pin_rows(url: str, rounds: int) -> list[tuple[str, dict[str, float]]]:
    store = PinStore(url, timeout_s=0.5)
    try:
        store.spawn_save("bench", Pin("qwen3-32b", "math"), ttl_seconds=600)
        await asyncio.sleep(0.1)
        lookups, saves = [], []
        for i in range(rounds):
            t0 = time.perf_counter()
            found = await store.lookup("bench" if i % 2 else f"absent-{i}")
            lookups.append((time.perf_counter() - t0) * 1e6)
            assert found.available
            t0 = time.perf_counter()
            await store._save(f"k{i % 100}", Pin("qwen3-32b", "math"), 600)
            saves.append((time.perf_counter() - t0) * 1e6)
    finally:
        await store.close()

    def summary(xs: list[float]) -> dict[str, float]:
        xs.sort()
        return {"p50_us": statistics.median(xs), "p99_us": xs[int(len(xs) * 0.99) - 1]}

    return [("pin lookup (GET, hit or miss)", summary(lookups)), ("pin save (SET with TTL)", summary(saves))]


def pin_rows(rounds: int) -> list[tuple[str, dict[str, float]]]:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = ManagedProcess(
            "valkey", valkey_command(port, Path(data)), Path(data) / "valkey.log", ready=lambda: wait_tcp(port, 0.1)
        ).start()
        try:
            proc.wait_ready(20)
            try:
                import uvloop

                return uvloop.run(_pin_rows(f"redis://127.0.0.1:{port}/0", rounds))
            except ImportError:  # pragma: no cover - uvloop is a router dependency
                return asyncio.run(_pin_rows(f"redis://127.0.0.1:{port}/0", rounds))
        finally:
            proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()
    rows = masking_rows(args.rounds) + pin_rows(args.rounds)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# PII masking and conversation pins: cost per request ({when})",
        "",
        f"`python benchmarks/conversation_masking/run.py --rounds {args.rounds}`; "
        f"{platform.machine()}, Python {platform.python_version()}; a shared 2-core host, one process.",
        "",
        "| step | p50 (µs) | p99 (µs) |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {r['p50_us']:.1f} | {r['p99_us']:.1f} |" for name, r in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "conversation_masking.md").write_text(text)
    payload = {"when": when, "rounds": args.rounds, "rows": {name: r for name, r in rows}}
    (RESULTS / "conversation_masking.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
