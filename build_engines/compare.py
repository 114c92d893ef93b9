"""Measured choice of the defaults: builds variants (each cached under its own key, none installed) and
tabulates held-out quality, validation figures and in-process throughput side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from build_engines.config import BuildConfig
from build_engines.pipeline import build
from build_engines.report import target_rows

__all__ = ["VARIANTS", "Variant", "compare"]


@dataclass(frozen=True)
class Variant:
    name: str
    config: BuildConfig


_DEFAULT = BuildConfig()
VARIANTS: tuple[Variant, ...] = (
    Variant("default (see config.py)", _DEFAULT),
    Variant("default, every task fine-tuned fully", _DEFAULT.with_method("full")),
    Variant("default, every task with LoRA (merged)", _DEFAULT.with_method("lora")),
    Variant("every task branching at layer 4 (top 2)", _DEFAULT.with_branch_layer(4)),
    Variant("every task branching at layer 5 (top 1)", _DEFAULT.with_branch_layer(5)),
    Variant("4 separate encoders (branch 0: ensemble compute)", _DEFAULT.with_branch_layer(0)),
    Variant("default, intent with and without weak sources", _DEFAULT.replace(weak_intent="auto")),
)


def _row(variant: Variant, directory: Path) -> dict[str, Any]:
    report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    training = report["training"]
    return {
        "variant": variant.name,
        "config": variant.config.to_dict(),
        "build_key": report["build_key"],
        "build_s": report["timings"]["total_s"],
        "validation": {
            "intent_macro_f1": max(v["val_macro_f1"] for v in training["intent"]["weak_sources"]["variants"].values()),
            "jailbreak_f1": max(h["val_metric"] for h in training["jailbreak"]["history"]),
            "pii_token_f1": max(h["val_metric"] for h in training["pii"]["history"]),
        },
        "test": {name: value for name, value, _, _ in target_rows(report)},
        "ort_seq_per_s": report["speed"]["fp32_seq_per_s"],
    }


def compare(names: list[str] | None, output: Path) -> list[dict[str, Any]]:
    rows = []
    for variant in VARIANTS:
        if names and not any(n in variant.name for n in names):
            continue
        outcome = build(variant.config, install=False, presidio=False, int8_check=False)
        rows.append(_row(variant, outcome.directory))
    output.mkdir(parents=True, exist_ok=True)
    (output / "design_comparison.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    metrics = list(rows[0]["test"]) if rows else []
    lines = [
        "# Design comparison (validation picks the default; test shown for the record)",
        "",
        "| variant | val intent F1 | val jailbreak F1 | val PII token F1 | "
        + " | ".join(f"test {m}" for m in metrics)
        + " | ORT seq/s | build s |",
        "|" + "---|" * (6 + len(metrics)),
    ]
    for r in rows:
        v = r["validation"]
        lines.append(
            f"| {r['variant']} | {v['intent_macro_f1']:.3f} | {v['jailbreak_f1']:.3f} "
            f"| {v['pii_token_f1']:.3f} | "
            + " | ".join(f"{r['test'][m]:.3f}" for m in metrics)
            + f" | {r['ort_seq_per_s']:.1f} | {r['build_s']:.0f} |"
        )
    (output / "design_comparison.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return rows
