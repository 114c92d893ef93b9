"""Serving benchmark of the `signals` model: Triton (python backend + onnxruntime) under perf_analyzer, with
and without dynamic batching, against raw in-process onnxruntime on the same graph at the same batch sizes.

    .venv/bin/python benchmarks/serving/run.py [--seq-len 64] [--concurrency 1,2,4,8,16,32]

Prints a table and writes benchmarks/results/serving.{json,md}. Every request carries one sequence of
`--seq-len` real tokens, as the router sends a single chat turn.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from build_engines.paths import MODEL_REPOSITORY_DIR, REPO_ROOT
from build_engines.perf_analyzer import ensure_perf_analyzer
from build_engines.repository import MODEL_NAME, ServingOptions, cpu_signals_config, render_config
from semantic_router.components import local_triton

RESULTS = REPO_ROOT / "benchmarks" / "results"
OUTPUTS = ["intent_probs", "jailbreak_probs", "pii_tag_ids", "pii_tag_probs", "embedding"]
PROMPT = (
    "I am preparing for an exam on the history of economic thought. Could you explain how Keynes' view of "
    "aggregate demand differed from the classical economists, and give one example from the Great Depression "
    "where that difference mattered for policy decisions? Please keep it short and avoid formulas."
)


def _tokens(seq_len: int) -> NDArray[np.int64]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(MODEL_REPOSITORY_DIR / MODEL_NAME / "1" / "tokenizer.json"))
    ids = [*tokenizer.encode(PROMPT * 8).ids[: seq_len - 1], 102]
    return np.array(ids, dtype=np.int64)


def served_onnx_file() -> str:
    """The graph the installed model serves (fp32 or int8 task tops), from its manifest."""
    manifest = json.loads((MODEL_REPOSITORY_DIR / MODEL_NAME / "1" / "manifest.json").read_text())
    return str(manifest.get("serving", {}).get("onnx_file", "model.onnx"))


def raw_onnxruntime(
    seq_len: int, batch_sizes: list[int], threads: int, seconds: float, spinning: bool
) -> list[dict[str, float]]:
    """The served graph in this process, with the session options Triton's model.py uses."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    model = MODEL_REPOSITORY_DIR / MODEL_NAME / "1" / served_onnx_file()
    sess = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    row = _tokens(seq_len)
    out = []
    for batch in batch_sizes:
        feed = {"input_ids": np.tile(row, (batch, 1)), "attention_mask": np.ones((batch, seq_len), np.int64)}
        for _ in range(3):
            sess.run(OUTPUTS, feed)
        latencies = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t = time.perf_counter()
            sess.run(OUTPUTS, feed)
            latencies.append(time.perf_counter() - t)
        total = time.perf_counter() - started
        out.append(
            {
                "batch": batch,
                "seq_per_s": batch * len(latencies) / total,
                "p50_ms": 1000 * float(np.percentile(latencies, 50)),
                "p99_ms": 1000 * float(np.percentile(latencies, 99)),
            }
        )
        print(f"raw onnxruntime batch {batch:>2}: {out[-1]['seq_per_s']:7.1f} seq/s")
    return out


def _repository(scratch: Path, options: ServingOptions) -> Path:
    """A copy of the installed model with a different config (the committed one is left alone)."""
    source = MODEL_REPOSITORY_DIR / MODEL_NAME
    target = scratch / "repo" / MODEL_NAME
    shutil.copytree(source, target)
    manifest = json.loads((source / "1" / "manifest.json").read_text())
    (target / "config.pbtxt").write_text(render_config(cpu_signals_config(len(manifest["labels"]["intent"]), options)))
    return target.parent


def _input_data(path: Path, lengths: list[int]) -> list[str]:
    """perf_analyzer input file: one request per length, cycled; returns the extra flags it needs."""
    entries = []
    for length in lengths:
        row = _tokens(length).tolist()
        entries.append(
            {
                "input_ids": {"content": row, "shape": [length]},
                "attention_mask": {"content": [1] * length, "shape": [length]},
            }
        )
    path.write_text(json.dumps({"data": entries}))
    return ["--input-data", str(path)]


def perf_analyzer_run(
    repository: Path, scratch: Path, lengths: list[int], concurrency: list[int], interval_ms: int
) -> list[dict[str, float]]:
    local = local_triton(repository, scratch, model=MODEL_NAME, only_that_model=False)
    grpc, triton = local.grpc_port, local.process
    triton.start()
    try:
        triton.wait_ready(180)
        report = scratch / "perf.csv"
        command = [
            str(ensure_perf_analyzer()),
            "-m",
            MODEL_NAME,
            "-i",
            "grpc",
            "-u",
            f"127.0.0.1:{grpc}",
            "-b",
            "1",
            *_input_data(scratch / "input.json", lengths),
            "--concurrency-range",
            f"{min(concurrency)}:{max(concurrency)}",
            "--measurement-interval",
            str(interval_ms),
            "--stability-percentage",
            "50",
            "--max-trials",
            "10",
            "-f",
            str(report),
        ]
        runs = []
        server = psutil.Process(triton.pid)
        for level in concurrency:
            command[command.index("--concurrency-range") + 1] = str(level)
            server_cpu, client_cpu, wall = _server_cpu(server), _children_cpu(), time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            wall = time.perf_counter() - wall
            cpu = {  # cores busy on average over the whole perf_analyzer run (its warm-up trials included)
                "client_cores": (_children_cpu() - client_cpu) / wall,
                "triton_cores": (_server_cpu(server) - server_cpu) / wall,
            }
            if result.returncode != 0:
                if "stable measurement" not in result.stdout:
                    raise RuntimeError(f"perf_analyzer failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
                nan = float("nan")
                runs.append({"concurrency": level, "req_per_s": nan, "p50_ms": nan, "p99_ms": nan, "unstable": True})
                print(f"  concurrency {level:>2}: no stable measurement (recorded as nan)")
                continue
            row_csv = next(csv.DictReader(io.StringIO(report.read_text())))
            runs.append(
                {
                    "concurrency": level,
                    "req_per_s": float(row_csv["Inferences/Second"]),
                    "p50_ms": float(row_csv["p50 latency"]) / 1000,
                    "p99_ms": float(row_csv["p99 latency"]) / 1000,
                    "server_queue_ms": float(row_csv["Server Queue"]) / 1000,
                    **cpu,
                }
            )
            print(
                f"  concurrency {level:>2}: {runs[-1]['req_per_s']:7.1f} req/s"
                f"  p50 {runs[-1]['p50_ms']:7.1f} ms"
                f"  p99 {runs[-1]['p99_ms']:7.1f} ms"
                f"  cores: perf_analyzer {cpu['client_cores']:.2f}, tritonserver+stub {cpu['triton_cores']:.2f}"
            )
        return runs
    finally:
        triton.stop()


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children (perf_analyzer runs are the only ones reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _server_cpu(server: psutil.Process) -> float:
    """CPU seconds of tritonserver and its python-backend stub processes so far."""
    total = 0.0
    for proc in [server, *server.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


_MIN_RAW_GAIN = 1.05


def _share(share: float | None, raw_gain: float) -> str:
    if share is None:
        return f"not defined (target >= 0.90): raw ORT gained only {raw_gain:.2f}x from batching in this run"
    return f"{share:.2f} (target >= 0.90)"


def _markdown(result: dict[str, Any]) -> str:
    raw = {r["batch"]: r for r in result["raw_onnxruntime"]}
    lines = [
        "# Serving benchmark: `signals` on CPU Triton",
        "",
        f"{result['machine']}. Sequence length {result['seq_len']}, one sequence per request, "
        f"onnxruntime intra-op threads {result['threads']} "
        f"(spin-waiting {'on' if result['allow_spinning'] else 'off'}), "
        f"queue delay {result['max_queue_delay_us']} us. "
        f"Load average before the run: {result['load_average']}.",
        "",
        "| concurrency | dynamic batching req/s | p50 ms | p99 ms | cores: perf_analyzer / Triton "
        "| no batching req/s | p50 ms | p99 ms | raw ORT seq/s at batch=concurrency (before / after) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dyn, plain in zip(result["triton_dynamic_batching"], result["triton_no_batching"], strict=True):
        c = dyn["concurrency"]
        raw_c = f"{raw[c]['seq_per_s']:.1f} ({raw[c]['before']:.1f} / {raw[c]['after']:.1f})" if c in raw else "-"
        cores = f"{dyn['client_cores']:.2f} / {dyn['triton_cores']:.2f}" if "client_cores" in dyn else "-"
        lines.append(
            f"| {c} | {dyn['req_per_s']:.1f} | {dyn['p50_ms']:.1f} | {dyn['p99_ms']:.1f} | {cores} | "
            f"{plain['req_per_s']:.1f} | {plain['p50_ms']:.1f} | {plain['p99_ms']:.1f} | {raw_c} |"
        )
    if "mixed_lengths_dynamic_batching" in result:
        lines += [
            "",
            f"Mixed-length traffic (requests cycle through lengths {result['mixed_lengths']}), dynamic batching "
            "with and without `allow_ragged_batch` (Triton only joins equal shapes unless inputs are ragged):",
            "",
            "| concurrency | equal shapes only req/s | p50 ms | p99 ms | ragged batching req/s | p50 ms | p99 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for plain, ragged in zip(
            result["mixed_lengths_dynamic_batching"], result["mixed_lengths_ragged_batching"], strict=True
        ):
            lines.append(
                f"| {plain['concurrency']} | {plain['req_per_s']:.1f} | {plain['p50_ms']:.1f} | "
                f"{plain['p99_ms']:.1f} | {ragged['req_per_s']:.1f} | {ragged['p50_ms']:.1f} | "
                f"{ragged['p99_ms']:.1f} |"
            )
    t = result["targets"]
    lines += [
        "",
        f"- Triton best / raw ORT best: {t['served_vs_raw']:.2f} (target >= 0.95); at that load perf_analyzer "
        f"itself kept {t['client_cores_at_best']:.2f} of the {result['cores']} cores busy, which raw ORT does not "
        f"have to share: raw x (1 - that share) = {t['raw_minus_client']:.2f} of raw is the ceiling on this host",
        f"- dynamic-batching gain at concurrency 16-32 vs 1: {t['triton_gain']:.2f}x; raw batch-32 vs "
        f"batch-1 gain: {t['raw_gain']:.2f}x; share of the raw gain: {_share(t['gain_share'], t['raw_gain'])}",
        "- all signals (intent, jailbreak, PII tags, embedding) come from one Triton call, one trunk pass.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (Triton and raw)")
    parser.add_argument("--queue-delay-us", type=int, default=ServingOptions().max_queue_delay_us)
    parser.add_argument(
        "--allow-spinning",
        action=argparse.BooleanOptionalAction,
        default=ServingOptions().allow_spinning,
        help="onnxruntime intra-op threads spin-wait between ops (Triton and raw alike)",
    )
    parser.add_argument("--interval-ms", type=int, default=4000)
    parser.add_argument("--raw-seconds", type=float, default=4.0)
    parser.add_argument(
        "--mixed-lengths",
        default="12,20,28,36,44,52,60,64",
        help="lengths of the mixed-traffic runs (ragged batching off vs on); empty to skip",
    )
    parser.add_argument("--mixed-concurrency", default="1,16,32")
    args = parser.parse_args()
    if not (MODEL_REPOSITORY_DIR / MODEL_NAME / "1" / "manifest.json").exists():
        raise SystemExit("model_repository/signals is not built: run `python -m build_engines build` first")
    concurrency = [int(x) for x in args.concurrency.split(",")]
    if 1 not in concurrency or not any(16 <= c <= 32 for c in concurrency):
        parser.error("--concurrency must include 1 and a level in 16..32 (the batching-gain target compares them)")
    load = os.getloadavg()
    raw_batches = sorted(set(concurrency) | {1, 32, 64})
    raw_before = raw_onnxruntime(args.seq_len, raw_batches, args.threads, args.raw_seconds, args.allow_spinning)
    common = {
        "intra_op_threads": args.threads,
        "max_queue_delay_us": args.queue_delay_us,
        "onnx_file": served_onnx_file(),
        "allow_spinning": args.allow_spinning,
    }
    fixed, mixed = [args.seq_len], [int(x) for x in args.mixed_lengths.split(",") if x]
    mixed_concurrency = [int(x) for x in args.mixed_concurrency.split(",")]
    scenarios = [
        ("triton_dynamic_batching", ServingOptions(dynamic_batching=True, **common), fixed, concurrency),
        ("triton_no_batching", ServingOptions(dynamic_batching=False, **common), fixed, concurrency),
    ]
    if mixed:
        scenarios += [
            ("mixed_lengths_dynamic_batching", ServingOptions(**common), mixed, mixed_concurrency),
            ("mixed_lengths_ragged_batching", ServingOptions(ragged_batching=True, **common), mixed, mixed_concurrency),
        ]
    results: dict[str, list[dict[str, float]]] = {}
    for name, options, lengths, levels in scenarios:
        print(f"Triton, {name}:")
        with tempfile.TemporaryDirectory() as scratch:
            repository = _repository(Path(scratch), options)
            results[name] = perf_analyzer_run(repository, Path(scratch), lengths, levels, args.interval_ms)
    # Raw ORT again after the Triton runs: the machine drifts (other tenants), so the limit is the mean of both.
    raw_after = raw_onnxruntime(args.seq_len, raw_batches, args.threads, args.raw_seconds, args.allow_spinning)
    raw = [
        {**a, "seq_per_s": (a["seq_per_s"] + b["seq_per_s"]) / 2, "before": a["seq_per_s"], "after": b["seq_per_s"]}
        for a, b in zip(raw_before, raw_after, strict=True)
    ]
    raw_by_batch = {r["batch"]: r["seq_per_s"] for r in raw}
    dyn = [r for r in results["triton_dynamic_batching"] if not r.get("unstable")]
    c1 = next(r["req_per_s"] for r in dyn if r["concurrency"] == min(concurrency))
    high = max(r["req_per_s"] for r in dyn if 16 <= r["concurrency"] <= 32)
    raw_gain = raw_by_batch[32] / raw_by_batch[1]
    triton_gain = high / c1
    best = max(dyn, key=lambda r: r["req_per_s"])
    cores = len(os.sched_getaffinity(0))
    client_share = best.get("client_cores", 0.0) / cores
    result: dict[str, Any] = {
        "machine": f"{cores} CPU cores, no GPU",
        "cores": cores,
        "seq_len": args.seq_len,
        "mixed_lengths": mixed,
        "threads": args.threads,
        "max_queue_delay_us": args.queue_delay_us,
        "allow_spinning": args.allow_spinning,
        "load_average": [round(x, 2) for x in load],
        "raw_onnxruntime": raw,
        **results,
        "targets": {
            "served_vs_raw": best["req_per_s"] / max(raw_by_batch.values()),
            "client_cores_at_best": best.get("client_cores", 0.0),
            "raw_minus_client": 1.0 - client_share,
            "raw_gain": raw_gain,
            "triton_gain": triton_gain,
            # Undefined when raw ORT itself gains (next to) nothing from batching: there is no gain to share.
            "gain_share": (triton_gain - 1) / (raw_gain - 1) if raw_gain >= _MIN_RAW_GAIN else None,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = _markdown(result)
    (RESULTS / "serving.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
