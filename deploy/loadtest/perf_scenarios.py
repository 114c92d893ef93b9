"""perf_analyzer scenarios against a (GPU) Triton serving `signals`: the fixed- and mixed-length runs of
benchmarks/serving/run.py, long prompts up to the router's 512 tokens, and dynamic batching on vs off.

Runs in the NGC SDK image (`docker compose --profile loadtest run --rm loadtest`), which has perf_analyzer; needs
only the standard library and `tokenizers`. Batching off is measured by reloading `signals` through Triton's
repository API with the same config minus `dynamic_batching` (Triton started with --model-control-mode=explicit),
then loading it back as it was. Writes <out>/gpu_serving.json and .md with the date, the GPU and the plan's
engine.json, and prints the table.

    python3 perf_scenarios.py --url triton:8001 --http-url http://triton:8000 \\
        --tokenizer /models/signals/1/tokenizer.json --out /results
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MODEL = "signals"
# The same prompt as benchmarks/serving/run.py (tests/unit/test_deploy.py keeps them equal).
PROMPT = (
    "I am preparing for an exam on the history of economic thought. Could you explain how Keynes' view of "
    "aggregate demand differed from the classical economists, and give one example from the Great Depression "
    "where that difference mattered for policy decisions? Please keep it short and avoid formulas."
)
FIXED_LENGTH = 64
CONCURRENCY = (1, 2, 4, 8, 16, 32)
MIXED_LENGTHS = (12, 20, 28, 36, 44, 52, 60, 64)
MIXED_CONCURRENCY = (1, 16, 32)
LONG_LENGTHS = (256, 512)
LONG_CONCURRENCY = (1, 16)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    p.add_argument("--http-url", default="http://127.0.0.1:8000", help="Triton HTTP URL (config, load, stats)")
    p.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json of the served build")
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_serving.{json,md}")
    p.add_argument("--perf-analyzer", default="perf_analyzer")
    p.add_argument("--interval-ms", type=int, default=4000)
    p.add_argument("--no-batching-run", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--only", action="append", help="run only scenarios whose name contains this (repeatable)")
    p.add_argument("--max-concurrency", type=int, help="skip concurrency levels above this (a quick smoke run)")
    return p


def token_rows(tokenizer_path: Path, lengths: tuple[int, ...]) -> list[list[int]]:
    """One row of exactly n tokens per length: [CLS], the prompt's tokens (repeated as often as it takes), [SEP].

    The served tokenizer truncates at 512; here truncation is off and the prompt is repeated until it is long enough,
    so the 512-token case is 512 tokens (PROMPT * 8 encodes to 426, which measured 427-token rows before)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    text = PROMPT
    ids = tokenizer.encode(text).ids
    while len(ids) < max(lengths):
        text = f"{text} {PROMPT}"
        ids = tokenizer.encode(text).ids
    sep = tokenizer.token_to_id("[SEP]") or 102
    rows = [[*ids[: n - 1], sep] for n in lengths]
    if [len(r) for r in rows] != list(lengths):
        raise ValueError(f"rows of {[len(r) for r in rows]} tokens, asked for {list(lengths)}")
    return rows


def input_file(rows: list[list[int]], path: Path) -> Path:
    data = [
        {
            "input_ids": {"content": row, "shape": [len(row)]},
            "attention_mask": {"content": [1] * len(row), "shape": [len(row)]},
        }
        for row in rows
    ]
    path.write_text(json.dumps({"data": data}))
    return path


def _http(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:  # Triton's own reason, e.g. why a config could not be loaded
        raise RuntimeError(f"{request.get_method()} {url}: HTTP {e.code}: {e.read().decode(errors='replace')}") from e
    parsed: dict[str, Any] = json.loads(raw) if raw else {}
    return parsed


def without_batching(config: dict[str, Any]) -> dict[str, Any]:
    """The served config with one request per execution: no dynamic batcher (and so no ragged batches)."""
    plain = {k: v for k, v in config.items() if k != "dynamic_batching"}
    plain["input"] = [{**i, "allow_ragged_batch": False} for i in config.get("input", [])]
    return plain


def _stats(http_url: str) -> tuple[int, int]:
    """Cumulative (executions, inferences) of the model, from Triton's statistics API."""
    stats = _http(f"{http_url}/v2/models/{MODEL}/stats")["model_stats"][0]
    return int(stats["execution_count"]), int(stats["inference_count"])


def reload_model(http_url: str, config: dict[str, Any]) -> None:
    _http(f"{http_url}/v2/repository/models/{MODEL}/load", {"parameters": {"config": json.dumps(config)}})
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{http_url}/v2/models/{MODEL}/ready", timeout=5)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{MODEL} did not become ready after the reload")


def perf(args: argparse.Namespace, data: Path, level: int, scratch: Path) -> dict[str, float]:
    report = scratch / "perf.csv"
    command = [
        args.perf_analyzer,
        *("-m", MODEL, "-i", "grpc", "-u", args.url, "-b", "1"),
        *("--input-data", str(data), "--concurrency-range", str(level)),
        *("--measurement-interval", str(args.interval_ms), "--stability-percentage", "50", "--max-trials", "10"),
        *("-f", str(report)),
    ]
    before = _stats(args.http_url)
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    after = _stats(args.http_url)
    executions = max(1, after[0] - before[0])
    mean_batch = (after[1] - before[1]) / executions  # rows per model execution: the dynamic batcher at work
    if result.returncode != 0:
        if "stable measurement" not in result.stdout:
            raise RuntimeError(f"perf_analyzer failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        nan = float("nan")
        return dict.fromkeys(("req_per_s", "p50_ms", "p99_ms", "queue_ms", "compute_ms"), nan) | {
            "concurrency": level,
            "mean_batch": mean_batch,
            "unstable": True,
        }
    row = next(csv.DictReader(report.read_text().splitlines()))
    return {
        "concurrency": level,
        "mean_batch": mean_batch,
        "req_per_s": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1000,
        "p99_ms": float(row["p99 latency"]) / 1000,
        "queue_ms": float(row["Server Queue"]) / 1000,
        "compute_ms": float(row["Server Compute Infer"]) / 1000,
    }


def scenarios() -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    return [
        (f"fixed {FIXED_LENGTH} tokens", (FIXED_LENGTH,), CONCURRENCY),
        (f"mixed {MIXED_LENGTHS[0]}-{MIXED_LENGTHS[-1]} tokens", MIXED_LENGTHS, MIXED_CONCURRENCY),
        *((f"long {n} tokens", (n,), LONG_CONCURRENCY) for n in LONG_LENGTHS),
    ]


def _gpu() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown (no nvidia-smi in this container)"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# GPU serving: perf_analyzer against Triton ({result['date']})",
        "",
        f"GPU: {result['gpu']}. Engine: {json.dumps(result['engine'].get('spec', {}))}.",
        "",
        "| config | scenario | concurrency | req/s | p50 ms | p99 ms | queue ms | compute ms | mean batch |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in result["runs"]:
        lines.append(
            f"| {run['config']} | {run['scenario']} | {run['concurrency']} | {run['req_per_s']:.1f} | "
            f"{run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['queue_ms']:.2f} | {run['compute_ms']:.2f} | "
            f"{run['mean_batch']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    served = _http(f"{args.http_url}/v2/models/{MODEL}/config")
    engine_path = args.tokenizer.parent / "engine.json"
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gpu": _gpu(),
        "engine": json.loads(engine_path.read_text()) if engine_path.exists() else {},
        "max_batch_size": served.get("max_batch_size"),
        "runs": [],
    }
    configs: list[tuple[str, dict[str, Any]]] = [("dynamic batching", served)]
    if args.no_batching_run:
        configs.append(("no batching", without_batching(served)))
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        try:
            for config_name, config in configs:
                if config is not served:
                    reload_model(args.http_url, config)
                for name, lengths, levels in scenarios():
                    if args.only and not any(part in name for part in args.only):
                        continue
                    data = input_file(token_rows(args.tokenizer, lengths), scratch / "input.json")
                    for level in (x for x in levels if args.max_concurrency is None or x <= args.max_concurrency):
                        run = {"config": config_name, "scenario": name, **perf(args, data, level, scratch)}
                        print(json.dumps(run), flush=True)
                        result["runs"].append(run)
        finally:
            if len(configs) > 1:
                reload_model(args.http_url, served)
    (args.out / "gpu_serving.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "gpu_serving.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
