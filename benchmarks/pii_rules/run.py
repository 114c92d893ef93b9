"""Cost of the structured-PII rules (wire/pii_rules.py) per request on the router path.

`rule_spans` runs once per scanned message, in the router's process, beside the model's decode. This times it on
real prompt shapes (held-out intent prompts, PII test sentences, long multi-question messages) and, in the same run,
the model-tag decode it is merged with (`bio_to_spans` + `trim_span` over the tokenizer's offsets), so the table
reads as a ratio on this host. Prints a table and writes benchmarks/results/pii_rules.{json,md}.

    .venv/bin/python benchmarks/pii_rules/run.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from build_engines.config import BuildConfig
from build_engines.encoder import load_tokenizer
from build_engines.pipeline import load_splits
from wire.bio import bio_to_spans, trim_span
from wire.pii_rules import rule_spans

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _time(fn: Callable[[str], object], texts: Sequence[str], rounds: int) -> list[float]:
    per_text: list[float] = []
    for _ in range(rounds):
        for text in texts:
            started = time.perf_counter()
            fn(text)
            per_text.append((time.perf_counter() - started) * 1e6)
    return per_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    intent, _, pii = load_splits(BuildConfig())
    prompts = [r.text for r in intent.test]
    sets = {
        "chat prompts (intent test)": prompts,
        "PII sentences (PII test)": [r.text for r in pii.test],
        "long messages (8 prompts joined)": ["\n".join(prompts[i : i + 8]) for i in range(0, len(prompts), 8)],
    }
    tokenizer = load_tokenizer()

    def decode(text: str) -> object:
        enc = tokenizer.encode(text)
        tags = ["O"] * len(enc.offsets)
        return [trim_span(text, s) for s in bio_to_spans(enc.offsets, tags, text)]

    rows = []
    for name, texts in sets.items():
        rules = _time(rule_spans, texts, args.rounds)
        base = _time(decode, texts, args.rounds)
        rows.append(
            {
                "inputs": name,
                "n": len(texts),
                "mean_chars": statistics.mean(len(t) for t in texts),
                "rules_p50_us": statistics.median(rules),
                "rules_p99_us": sorted(rules)[int(0.99 * (len(rules) - 1))],
                "rules_mean_us": statistics.mean(rules),
                "tokenize_and_decode_p50_us": statistics.median(base),
                "ratio_p50": statistics.median(rules) / statistics.median(base),
            }
        )
    header = "| inputs | n | mean chars | rules p50 µs | rules p99 µs | tokenize+decode p50 µs | rules / that |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['inputs']} | {r['n']} | {r['mean_chars']:.0f} | {r['rules_p50_us']:.0f} | {r['rules_p99_us']:.0f} "
            f"| {r['tokenize_and_decode_p50_us']:.0f} | {r['ratio_p50']:.2f}x |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "host": platform.node(), "python": platform.python_version()}
    (RESULTS / "pii_rules.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (RESULTS / "pii_rules.md").write_text(
        "# Structured-PII rules: cost per message\n\n"
        f"`python benchmarks/pii_rules/run.py --rounds {args.rounds}`, {meta['date']}, one process, one thread. "
        "`rule_spans` runs once per scanned message in the router, beside the decode of the model's tags; the "
        "last column compares it with tokenizing and decoding the same message in the same run.\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
