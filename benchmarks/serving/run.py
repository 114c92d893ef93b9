"""Serving benchmark of the `signals` model: Triton (python backend + onnxruntime) under perf_analyzer against
raw in-process onnxruntime on the same graph at the same batch sizes, interleaved in rounds.

    .venv/bin/python benchmarks/serving/run.py [--rounds 2] [--seq-len 64] [--concurrency 1,2,4,8,16,32]
        [--model-dir model_repository/signals] [--before GIT_REF] [--variant NAME=JSON] [--interval-ms 4000]

On a shared host run it with `nice -n 10` and compare the "rows per CPU-second" figures: rows served per CPU-second
of tritonserver + its stub vs rows per CPU-second of the raw session, which other tenants' load does not move the
way it moves throughput.

Every Triton config of the run is started once and kept up; each round then measures, level by level, raw
onnxruntime at batch = concurrency and every Triton config at that concurrency, so slow and fast phases of a
shared host fall on all of them alike (figures are means over the rounds; the per-round ones are in the JSON).
Fixed-length runs: the served config ("served"), the same without dynamic batching, and any `--variant`.
Mixed-length runs (requests cycle through `--mixed-lengths`): equal shapes only (no ragged batching), ragged
batching padded to the batch's longest row (one call), and ragged with the length buckets of model.py.

Prints a table and writes benchmarks/results/serving.{json,md}; hand-written notes below the notes marker of
serving.md are kept. Every request carries one sequence, as the router sends a single chat turn.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import psutil
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from build_engines.paths import MODEL_REPOSITORY_DIR, PACKAGE_DIR, REPO_ROOT
from build_engines.perf_analyzer import ensure_perf_analyzer
from build_engines.repository import MODEL_NAME, ServingOptions, cpu_signals_config, render_config
from local_stack.components import local_triton

RESULTS = REPO_ROOT / "benchmarks" / "results"
NOTES_MARKER = "<!-- notes: kept when the table above is regenerated -->"
OUTPUTS = ["intent_probs", "jailbreak_probs", "pii_tag_ids", "pii_tag_probs", "embedding"]
PROMPT = (
    "I am preparing for an exam on the history of economic thought. Could you explain how Keynes' view of "
    "aggregate demand differed from the classical economists, and give one example from the Great Depression "
    "where that difference mattered for policy decisions? Please keep it short and avoid formulas."
)


def _tokens(model_dir: Path, seq_len: int) -> NDArray[np.int64]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "1" / "tokenizer.json"))
    tokenizer.no_truncation()
    text = PROMPT
    while len(tokenizer.encode(text).ids) < seq_len:  # PROMPT * 8 is 426 tokens: a 512 row needs more
        text = f"{text} {PROMPT}"
    ids = [*tokenizer.encode(text).ids[: seq_len - 1], 102]
    if len(ids) != seq_len:
        raise ValueError(f"a row of {len(ids)} tokens, asked for {seq_len}")
    return np.array(ids, dtype=np.int64)


def served_onnx_file(model_dir: Path) -> str:
    """The graph the installed model serves (fp32 or int8 task tops), from its manifest."""
    manifest = json.loads((model_dir / "1" / "manifest.json").read_text())
    return str(manifest.get("serving", {}).get("onnx_file", "model.onnx"))


class RawOnnxruntime:
    """The served graph in this process, with the session options Triton's model.py uses."""

    def __init__(self, model_dir: Path, seq_len: int, threads: int, spinning: bool) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        model = model_dir / "1" / served_onnx_file(model_dir)
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.row = _tokens(model_dir, seq_len)

    def measure(self, batch: int, seconds: float) -> dict[str, float]:
        seq_len = len(self.row)
        feed = {"input_ids": np.tile(self.row, (batch, 1)), "attention_mask": np.ones((batch, seq_len), np.int64)}
        for _ in range(2):
            self.session.run(OUTPUTS, feed)
        latencies: list[float] = []
        cpu, started = time.process_time(), time.perf_counter()
        while time.perf_counter() - started < seconds or len(latencies) < 3:
            t = time.perf_counter()
            self.session.run(OUTPUTS, feed)
            latencies.append(time.perf_counter() - t)
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
        run = {
            "batch": batch,
            "seq_per_s": batch * len(latencies) / total,
            "rows_per_cpu_s": batch * len(latencies) / cpu,  # robust to other tenants taking cores away
            "cores": cpu / total,
            "p50_ms": 1000 * float(np.percentile(latencies, 50)),
            "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        }
        print(
            f"  raw onnxruntime batch {batch:>2}: {run['seq_per_s']:7.1f} seq/s  p50 {run['p50_ms']:7.1f} ms"
            f"  {run['rows_per_cpu_s']:6.1f} rows per CPU-second",
            flush=True,
        )
        return run


def _repository(model_dir: Path, scratch: Path, options: ServingOptions, model_py: bytes | None = None) -> Path:
    """The model's files (linked) with this checkout's model.py and the given config; the installed one is left
    alone."""
    target = scratch / "repo" / MODEL_NAME
    (target / "1").mkdir(parents=True)
    for item in (model_dir / "1").iterdir():
        if item.name != "model.py":
            (target / "1" / item.name).symlink_to(item.resolve())
    (target / "1" / "model.py").write_bytes(model_py or (PACKAGE_DIR / "triton_model.py").read_bytes())
    manifest = json.loads((model_dir / "1" / "manifest.json").read_text())
    (target / "config.pbtxt").write_text(render_config(cpu_signals_config(len(manifest["labels"]["intent"]), options)))
    return target.parent


def _input_data(model_dir: Path, path: Path, lengths: list[int]) -> None:
    """perf_analyzer input file: one request per length, cycled."""
    entries = []
    for length in lengths:
        row = _tokens(model_dir, length).tolist()
        entries.append(
            {
                "input_ids": {"content": row, "shape": [length]},
                "attention_mask": {"content": [1] * length, "shape": [length]},
            }
        )
    path.write_text(json.dumps({"data": entries}))


@dataclass
class Server:
    """One Triton serving the model under one config, kept up for the whole run (rounds interleave servers)."""

    name: str
    options: ServingOptions
    lengths: list[int]
    levels: list[int]
    scratch: Path
    model_py: bytes | None = None  # None: this checkout's build_engines/triton_model.py
    local: Any = None

    def start(self, model_dir: Path) -> None:
        repository = _repository(model_dir, self.scratch, self.options, self.model_py)
        _input_data(model_dir, self.scratch / "input.json", self.lengths)
        self.local = local_triton(repository, self.scratch, model=MODEL_NAME, only_that_model=False)
        self.local.process.start()

    def stop(self) -> None:
        if self.local is not None:
            self.local.process.stop()

    def stats(self) -> dict[str, int]:
        """Cumulative (executions, inferences) of the model, from Triton's statistics API."""
        url = f"http://127.0.0.1:{self.local.http_port}/v2/models/{MODEL_NAME}/stats"
        stats = httpx.get(url, timeout=10).json()["model_stats"][0]
        return {"executions": int(stats["execution_count"]), "inferences": int(stats["inference_count"])}

    def measure(self, level: int, interval_ms: int) -> dict[str, float]:
        command = [
            str(ensure_perf_analyzer()),
            "-m",
            MODEL_NAME,
            "-i",
            "grpc",
            "-u",
            f"127.0.0.1:{self.local.grpc_port}",
            "-b",
            "1",
            "--input-data",
            str(self.scratch / "input.json"),
            "--concurrency-range",
            str(level),
            "--measurement-interval",
            str(interval_ms),
            "--stability-percentage",
            "50",
            "--max-trials",
            "10",
            "-f",
            str(self.scratch / "perf.csv"),
        ]
        server = psutil.Process(self.local.process.pid)
        server_cpu, client_cpu, wall, before = _server_cpu(server), _children_cpu(), time.perf_counter(), self.stats()
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        wall, after, server_cpu = time.perf_counter() - wall, self.stats(), _server_cpu(server) - server_cpu
        extra = {  # cores busy on average over the whole perf_analyzer run (its warm-up trials included)
            "client_cores": (_children_cpu() - client_cpu) / wall,
            "triton_cores": server_cpu / wall,
            # rows served per CPU-second of tritonserver + stub over the whole run: robust to other tenants
            "rows_per_cpu_s": (after["inferences"] - before["inferences"]) / max(server_cpu, 1e-9),
            # rows per model execution over the whole run: how well the dynamic batcher filled the batches
            "mean_batch": (after["inferences"] - before["inferences"])
            / max(1, after["executions"] - before["executions"]),
        }
        if result.returncode != 0:
            if "stable measurement" not in result.stdout:
                raise RuntimeError(f"perf_analyzer failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
            nan = float("nan")
            print(f"  {self.name} concurrency {level:>2}: no stable measurement (recorded as nan)", flush=True)
            return {"concurrency": level, "req_per_s": nan, "p50_ms": nan, "p99_ms": nan, "unstable": True, **extra}
        row_csv = next(csv.DictReader(io.StringIO((self.scratch / "perf.csv").read_text())))
        run = {
            "concurrency": level,
            "req_per_s": float(row_csv["Inferences/Second"]),
            "p50_ms": float(row_csv["p50 latency"]) / 1000,
            "p99_ms": float(row_csv["p99 latency"]) / 1000,
            "server_queue_ms": float(row_csv["Server Queue"]) / 1000,
            **extra,
        }
        print(
            f"  {self.name} concurrency {level:>2}: {run['req_per_s']:7.1f} req/s  p50 {run['p50_ms']:7.1f} ms"
            f"  p99 {run['p99_ms']:7.1f} ms  mean batch {extra['mean_batch']:.1f}"
            f"  {extra['rows_per_cpu_s']:6.1f} rows per CPU-second"
            f"  cores: perf_analyzer {extra['client_cores']:.2f}, tritonserver+stub {extra['triton_cores']:.2f}",
            flush=True,
        )
        return run


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


def _mean_runs(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per level, the mean of every numeric field over the rounds (nan rounds left out)."""
    out = []
    for runs in zip(*rounds, strict=True):
        merged: dict[str, Any] = {}
        for key, value in runs[0].items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            values = [r[key] for r in runs if isinstance(r.get(key), int | float) and r[key] == r[key]]
            merged[key] = float(np.mean(values)) if values else float("nan")
        for key in ("concurrency", "batch"):
            if key in runs[0]:
                merged[key] = runs[0][key]
        out.append(merged)
    return out


def _row(run: dict[str, Any]) -> str:
    batch = run.get("mean_batch", float("nan"))
    return f"{run['req_per_s']:.1f} | {run['p50_ms']:.1f} | {run['p99_ms']:.1f} | {batch:.1f}"


def _buckets(call_tokens: int) -> str:
    return f"at {call_tokens} token-rows per call" if call_tokens else "off"


def _markdown(result: dict[str, Any], notes: str) -> str:
    raw = {r["batch"]: r for r in result["raw_onnxruntime"]}
    served = result["served_options"]
    fixed = [name for name in result["scenarios"] if result["scenarios"][name]["lengths"] == [result["seq_len"]]]
    mixed = [name for name in result["scenarios"] if name not in fixed]
    lines = [
        "# Serving benchmark: `signals` on CPU Triton",
        "",
        f"{result['machine']}, build `{result['build_key']}` ({result['onnx_file']}). "
        f"{result['rounds']} interleaved rounds (every figure is a mean over them), "
        f"{result['interval_ms']} ms perf_analyzer windows. Load average before the run: {result['load_average']}.",
        "",
        f"Served config: dynamic batching, queue delay {served['max_queue_delay_us']} us, preferred batch sizes "
        f"{list(served['preferred_batch_sizes']) or 'none'}, {served['instances']} instance(s), onnxruntime "
        f"intra-op threads {served['intra_op_threads']} (spin-waiting {'on' if served['allow_spinning'] else 'off'}), "
        f"ragged batching {'on' if served['ragged_batching'] else 'off'}, length buckets "
        f"{_buckets(served['bucket_call_tokens'])}.",
        "",
        f"Sequence length {result['seq_len']}, one sequence per request; req/s, p50 / p99 ms, mean batch (rows per "
        "model execution, from Triton's statistics):",
        "",
        "| concurrency | raw ORT seq/s at batch = concurrency | "
        + " | ".join(f"{name} req/s | p50 | p99 | batch" for name in fixed)
        + " |",
        "|---|---|" + "---|---|---|---|" * len(fixed),
    ]
    by_name = {name: {r["concurrency"]: r for r in result[name]} for name in result["scenarios"]}
    for level in result["concurrency"]:
        raw_c = f"{raw[level]['seq_per_s']:.1f}" if level in raw else "-"
        lines.append(f"| {level} | {raw_c} | " + " | ".join(_row(by_name[n][level]) for n in fixed) + " |")
    if mixed:
        lines += [
            "",
            f"Mixed lengths (requests cycle through {result['mixed_lengths']} tokens):",
            "",
            "| concurrency | " + " | ".join(f"{name} req/s | p50 | p99 | batch" for name in mixed) + " |",
            "|---|" + "---|---|---|---|" * len(mixed),
        ]
        for level in result["mixed_concurrency"]:
            lines.append(f"| {level} | " + " | ".join(_row(by_name[n][level]) for n in mixed) + " |")
    t = result["targets"]
    per_round = ", ".join(f"{x:.2f}" for x in t["served_vs_raw_per_round"])
    lines += [
        "",
        f"- served / raw ORT, each at its best: {t['served_vs_raw']:.2f} (target >= 0.95; per round {per_round}); "
        f"perf_analyzer itself kept {t['client_cores_at_best']:.2f} of the {result['cores']} cores busy at that load",
        f"- dynamic-batching gain at concurrency 16-32 vs 1: {t['triton_gain']:.2f}x; raw batch-32 vs batch-1 gain: "
        f"{t['raw_gain']:.2f}x; share of the raw gain: {_share(t['gain_share'], t['raw_gain'])}",
    ]
    lines += [
        "",
        "Per config, at its best level vs raw ORT at its best batch; batching gain = best of concurrency 16-32 over "
        f"concurrency 1 (raw: batch 32 over 1 = {t['raw_gain']:.2f}x in throughput, {t['raw_gain_per_cpu_s']:.2f}x "
        "in rows per CPU-second). Throughput ratios favour whoever gets more of a shared host's cores; the rows "
        "per CPU-second ones do not:",
        "",
        "| config | req/s vs raw | rows per CPU-second vs raw | batching gain (share of raw's) "
        "| gain in rows per CPU-second (share) |",
        "|---|---|---|---|---|",
    ]
    for name, c in t["per_config"].items():
        share = "-" if c["gain_share"] is None else f"{c['gain_share']:.2f}"
        cpu_share = "-" if c["gain_share_per_cpu_s"] is None else f"{c['gain_share_per_cpu_s']:.2f}"
        lines.append(
            f"| {name} | {c['vs_raw']:.2f} | {c['vs_raw_per_cpu_s']:.2f} | {c['gain']:.2f}x ({share}) "
            f"| {c['gain_per_cpu_s']:.2f}x ({cpu_share}) |"
        )
    if "mixed_best" in t:
        lines.append("")
        lines.append(
            "- mixed lengths, best over the levels: "
            + ", ".join(f"{name} {value:.1f} req/s" for name, value in t["mixed_best"].items())
        )
    lines += ["", NOTES_MARKER + notes] if notes else [""]
    return "\n".join(lines) + "\n"


def _json_options(text: str) -> tuple[str, dict[str, Any]]:
    name, _, options = text.partition("=")
    return name, json.loads(options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = ServingOptions()
    parser.add_argument("--model-dir", type=Path, default=MODEL_REPOSITORY_DIR / MODEL_NAME)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--threads", type=int, default=defaults.intra_op_threads, help="intra-op threads (both)")
    parser.add_argument("--queue-delay-us", type=int, default=defaults.max_queue_delay_us)
    parser.add_argument(
        "--allow-spinning",
        action=argparse.BooleanOptionalAction,
        default=defaults.allow_spinning,
        help="onnxruntime intra-op threads spin-wait between ops (Triton and raw alike)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        type=_json_options,
        help="NAME=JSON: a further fixed-length Triton config, the served one with these ServingOptions fields "
        "(e.g. instances2='{\"instances\": 2}'); repeatable",
    )
    parser.add_argument("--no-batching", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--before",
        metavar="GIT_REF",
        help="also serve the fixed-length runs with the model.py of this commit and its defaults (ragged batching "
        "and length buckets off): before / after in the same run",
    )
    parser.add_argument("--interval-ms", type=int, default=4000)
    parser.add_argument("--raw-seconds", type=float, default=4.0)
    parser.add_argument(
        "--mixed-lengths",
        default="12,20,28,36,44,52,60,64",
        help="lengths of the mixed-traffic runs; empty to skip",
    )
    parser.add_argument("--mixed-concurrency", default="1,16,32")
    parser.add_argument(
        "--bucket-call-tokens",
        default=str(defaults.bucket_call_tokens or 64),
        help="model.py's call cost for the length buckets of the mixed runs; a comma list runs one config each",
    )
    args = parser.parse_args()
    model_dir: Path = args.model_dir
    if not (model_dir / "1" / "manifest.json").exists():
        raise SystemExit(f"{model_dir} is not built: run `python -m build_engines build` first")
    concurrency = [int(x) for x in args.concurrency.split(",")]
    if 1 not in concurrency or not any(16 <= c <= 32 for c in concurrency):
        parser.error("--concurrency must include 1 and a level in 16..32 (the batching-gain target compares them)")
    load = os.getloadavg()
    served = dataclasses.replace(
        defaults,
        intra_op_threads=args.threads,
        max_queue_delay_us=args.queue_delay_us,
        onnx_file=served_onnx_file(model_dir),
        allow_spinning=args.allow_spinning,
    )
    fixed, mixed = [args.seq_len], [int(x) for x in args.mixed_lengths.split(",") if x]
    mixed_concurrency = [int(x) for x in args.mixed_concurrency.split(",")]
    plan: list[tuple[str, ServingOptions, list[int], list[int]]] = [("served", served, fixed, concurrency)]
    model_py: dict[str, bytes] = {}
    if args.before:
        name = f"before ({args.before})"
        model_py[name] = subprocess.run(
            ["git", "show", f"{args.before}:build_engines/triton_model.py"],
            check=True,
            capture_output=True,
            cwd=REPO_ROOT,
        ).stdout
        before = dataclasses.replace(served, ragged_batching=False, bucket_call_tokens=0, preferred_batch_sizes=())
        plan.append((name, dataclasses.replace(before, max_queue_delay_us=0, instances=1), fixed, concurrency))
    if args.no_batching:
        plan.append(("no batching", dataclasses.replace(served, dynamic_batching=False), fixed, concurrency))
    for name, overrides in args.variant:
        plan.append((name, dataclasses.replace(served, **overrides), fixed, concurrency))
    if mixed:
        equal = dataclasses.replace(served, ragged_batching=False, bucket_call_tokens=0)
        padded = dataclasses.replace(served, ragged_batching=True, bucket_call_tokens=0)
        plan += [
            ("equal shapes only", equal, mixed, mixed_concurrency),
            ("ragged, padded", padded, mixed, mixed_concurrency),
        ]
        for tokens in (int(x) for x in args.bucket_call_tokens.split(",")):
            bucketed = dataclasses.replace(served, ragged_batching=True, bucket_call_tokens=tokens)
            plan.append((f"ragged, buckets {tokens}", bucketed, mixed, mixed_concurrency))
    raw_batches = sorted(set(concurrency) | {1, 32})
    raw_engine = RawOnnxruntime(model_dir, args.seq_len, args.threads, args.allow_spinning)
    rounds: dict[str, list[list[dict[str, Any]]]] = {name: [] for name, *_ in plan}
    raw_rounds: list[list[dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as scratch:
        servers = [
            Server(n, o, lens, lv, Path(scratch) / f"s{i}", model_py.get(n)) for i, (n, o, lens, lv) in enumerate(plan)
        ]
        try:
            for server in servers:  # one at a time: their model loads would otherwise fight for the cores
                server.scratch.mkdir()
                server.start(model_dir)
                server.local.process.wait_ready(300)
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", flush=True)
                raw_round: list[dict[str, Any]] = []
                runs: dict[str, list[dict[str, Any]]] = {server.name: [] for server in servers}
                levels = sorted(set(raw_batches) | set(concurrency) | (set(mixed_concurrency) if mixed else set()))
                for level in levels:
                    if level in raw_batches:
                        raw_round.append(raw_engine.measure(level, args.raw_seconds))
                    for server in servers:
                        if level in server.levels:
                            runs[server.name].append(server.measure(level, args.interval_ms))
                raw_rounds.append(raw_round)
                for name, level_runs in runs.items():
                    rounds[name].append(level_runs)
        finally:
            for server in servers:
                server.stop()
    raw = _mean_runs(raw_rounds)
    results = {name: _mean_runs(per_round) for name, per_round in rounds.items()}
    raw_by_batch = {r["batch"]: r["seq_per_s"] for r in raw}

    def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return max((r for r in runs if r["req_per_s"] == r["req_per_s"]), key=lambda r: r["req_per_s"])

    dyn = results["served"]
    c1 = next(r["req_per_s"] for r in dyn if r["concurrency"] == 1)
    high = max(r["req_per_s"] for r in dyn if 16 <= r["concurrency"] <= 32 and r["req_per_s"] == r["req_per_s"])
    raw_gain = raw_by_batch[32] / raw_by_batch[1]
    triton_gain = high / c1
    top = best(dyn)
    per_round = [
        best(served_round)["req_per_s"] / max(r["seq_per_s"] for r in raw_round)
        for served_round, raw_round in zip(rounds["served"], raw_rounds, strict=True)
    ]
    cores = len(os.sched_getaffinity(0))
    manifest = json.loads((model_dir / "1" / "manifest.json").read_text())
    targets: dict[str, Any] = {
        "served_vs_raw": top["req_per_s"] / max(raw_by_batch.values()),
        "served_vs_raw_per_round": per_round,
        "client_cores_at_best": top.get("client_cores", 0.0),
        "raw_gain": raw_gain,
        "triton_gain": triton_gain,
        # Undefined when raw ORT itself gains (next to) nothing from batching: there is no gain to share.
        "gain_share": (triton_gain - 1) / (raw_gain - 1) if raw_gain >= _MIN_RAW_GAIN else None,
    }
    raw_cpu = {r["batch"]: r["rows_per_cpu_s"] for r in raw}
    raw_cpu_gain = raw_cpu[32] / raw_cpu[1]
    targets["per_config"] = {}
    for name, _, lens, _ in plan:
        if lens != fixed:
            continue
        config_runs = [r for r in results[name] if r["req_per_s"] == r["req_per_s"]]
        at = {r["concurrency"]: r for r in config_runs}
        gain = max(r["req_per_s"] for r in config_runs if 16 <= r["concurrency"] <= 32) / at[1]["req_per_s"]
        cpu_gain = (
            max(r["rows_per_cpu_s"] for r in config_runs if 16 <= r["concurrency"] <= 32) / at[1]["rows_per_cpu_s"]
        )
        targets["per_config"][name] = {
            "vs_raw": best(config_runs)["req_per_s"] / max(raw_by_batch.values()),
            "vs_raw_per_cpu_s": max(r["rows_per_cpu_s"] for r in config_runs) / max(raw_cpu.values()),
            "gain": gain,
            "gain_share": (gain - 1) / (raw_gain - 1) if raw_gain >= _MIN_RAW_GAIN else None,
            "gain_per_cpu_s": cpu_gain,
            "gain_share_per_cpu_s": (cpu_gain - 1) / (raw_cpu_gain - 1) if raw_cpu_gain >= _MIN_RAW_GAIN else None,
        }
    targets["raw_gain_per_cpu_s"] = raw_cpu_gain
    if mixed:
        targets["mixed_best"] = {name: best(results[name])["req_per_s"] for name, _, lens, _ in plan if lens == mixed}
    result: dict[str, Any] = {
        "machine": f"{cores} CPU cores, no GPU",
        "cores": cores,
        "build_key": manifest.get("build_key", "?"),
        "onnx_file": served.onnx_file,
        "rounds": args.rounds,
        "interval_ms": args.interval_ms,
        "seq_len": args.seq_len,
        "concurrency": concurrency,
        "mixed_lengths": mixed,
        "mixed_concurrency": mixed_concurrency,
        "served_options": dataclasses.asdict(served),
        "load_average": [round(x, 2) for x in load],
        "scenarios": {name: {"options": dataclasses.asdict(o), "lengths": lens} for name, o, lens, _ in plan},
        "raw_onnxruntime": raw,
        "raw_onnxruntime_rounds": raw_rounds,
        **results,
        "rounds_detail": rounds,
        "targets": targets,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(result, indent=2) + "\n")
    previous = RESULTS / "serving.md"
    notes = ""
    if previous.exists() and NOTES_MARKER in previous.read_text():  # hand-written notes survive a re-run
        notes = previous.read_text().split(NOTES_MARKER, 1)[1].rstrip("\n")
    markdown = _markdown(result, notes)
    previous.write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
