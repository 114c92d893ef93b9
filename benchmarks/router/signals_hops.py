"""Where the `signals` call's time goes at concurrency 1: in-process onnxruntime, Triton with a blocking client,
the aio client, a blocking client in a worker thread, and the router's batching `SignalClient`; each with and
without the PII outputs (without them the model runs its graph cut to the other outputs).

    .venv/bin/python benchmarks/router/signals_hops.py [--calls 150]

Starts a Triton serving only `signals` on free ports; every call carries a distinct ~34-token prompt; all paths run
interleaved in the same rounds so the host's noise hits them alike. Prints a table (p50, ms) and writes
benchmarks/results/signals_hops.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from local_stack.components import local_triton  # noqa: E402

REPOSITORY = ROOT / "model_repository"
ALL = ("intent_probs", "jailbreak_probs", "pii_tag_ids", "pii_tag_probs", "embedding")
WITHOUT_PII = ("intent_probs", "jailbreak_probs", "embedding")


def prompt(i: int) -> str:
    return (
        f"I have been reading about inflation for my class, chapter {i}, and I am still confused. "
        "Could you explain the main idea simply, with one short example?"
    )


async def measure(grpc_port: int, calls: int) -> dict[str, float]:
    import onnxruntime as ort
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as aioclient
    from tokenizers import Tokenizer

    from router_service.clients.triton import SignalClient

    version = REPOSITORY / "signals" / "1"
    manifest = json.loads((version / "manifest.json").read_text())
    tokenizer = Tokenizer.from_file(str(version / "tokenizer.json"))
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    onnx_file = manifest.get("serving", {}).get("onnx_file", "model.onnx")
    session = ort.InferenceSession(str(version / onnx_file), options, providers=["CPUExecutionProvider"])
    sync = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    aio = aioclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    client = SignalClient(f"127.0.0.1:{grpc_port}", REPOSITORY, timeout_s=5.0)
    await client.start()

    def arrays(text: str) -> tuple[NDArray[Any], NDArray[Any]]:
        ids = np.array([tokenizer.encode(text).ids], np.int64)
        return ids, np.ones_like(ids)

    def inputs(module: Any, text: str) -> list[Any]:
        ids, mask = arrays(text)
        made = [
            module.InferInput("input_ids", list(ids.shape), "INT64"),
            module.InferInput("attention_mask", list(mask.shape), "INT64"),
        ]
        made[0].set_data_from_numpy(ids)
        made[1].set_data_from_numpy(mask)
        return made

    def blocking(text: str, names: tuple[str, ...]) -> None:
        sync.infer("signals", inputs(grpcclient, text), outputs=[grpcclient.InferRequestedOutput(n) for n in names])

    async def in_process(text: str, names: tuple[str, ...]) -> None:
        ids, mask = arrays(text)
        session.run(list(names), {"input_ids": ids, "attention_mask": mask})

    async def triton_blocking(text: str, names: tuple[str, ...]) -> None:
        blocking(text, names)

    async def triton_aio(text: str, names: tuple[str, ...]) -> None:
        await aio.infer("signals", inputs(aioclient, text), outputs=[aioclient.InferRequestedOutput(n) for n in names])

    async def triton_thread(text: str, names: tuple[str, ...]) -> None:
        await asyncio.to_thread(blocking, text, names)

    async def signal_client(text: str, names: tuple[str, ...]) -> None:
        await client.classify([text], pii=names == ALL)

    paths: dict[str, Callable[[str, tuple[str, ...]], Awaitable[None]]] = {
        "onnxruntime in-process (whole graph either way)": in_process,
        "Triton, blocking client": triton_blocking,
        "Triton, aio client": triton_aio,
        "Triton, blocking client in a thread": triton_thread,
        "router SignalClient.classify": signal_client,
    }
    times: dict[tuple[str, str], list[float]] = {}
    counter = 0
    try:
        for warm in (True, False):
            for _ in range(10 if warm else calls):
                for name, call in paths.items():
                    for outputs, names in (("all", ALL), ("no PII", WITHOUT_PII)):
                        counter += 1
                        started = time.perf_counter()
                        await call(prompt(counter), names)
                        if not warm:
                            times.setdefault((name, outputs), []).append((time.perf_counter() - started) * 1000)
    finally:
        await client.close()
        await aio.close()
    return {f"{name} | {outputs}": round(statistics.median(v), 2) for (name, outputs), v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        triton = local_triton(REPOSITORY, Path(tmp))
        triton.process.start()
        try:
            triton.process.wait_ready(120)
            results = asyncio.run(measure(triton.grpc_port, args.calls))
        finally:
            triton.process.stop()
    print("| path | outputs | p50 ms |\n|---|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value} |")
    out = ROOT / "benchmarks" / "results" / "signals_hops.json"
    out.write_text(
        json.dumps(
            {
                "command": "python benchmarks/router/signals_hops.py " + " ".join(sys.argv[1:]),
                "calls": args.calls,
                "p50_ms": results,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
