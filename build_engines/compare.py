"""Measured choice of the defaults: build design variants (each cached under its own key, none installed), or
take builds already in the cache, and tabulate validation figures, held-out figures and throughput measured
side by side under equal conditions."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from build_engines.cache import COMPLETE_MARKER, build_dir, is_complete
from build_engines.config import TASKS, BuildConfig
from build_engines.export_onnx import session
from build_engines.pipeline import build
from build_engines.report import embedding_cosine, target_rows
from build_engines.repository import output_specs

__all__ = ["VARIANTS", "Variant", "compare", "measure_speed", "rows_for_keys", "write_comparison", "write_speed_twin"]


@dataclass(frozen=True)
class Variant:
    name: str
    config: BuildConfig


_DEFAULT = BuildConfig()
_BRANCHES = _DEFAULT.replace(design="branches")
VARIANTS: tuple[Variant, ...] = (
    Variant("one pass: default (see config.py)", _DEFAULT),
    Variant("one pass: frozen encoder, heads only", _DEFAULT.with_shared(frozen_layers=6, method="full")),
    Variant("one pass: 3 frozen + 3 shared layers", _DEFAULT.with_shared(frozen_layers=3)),
    Variant("one pass: 2 frozen + 4 shared layers", _DEFAULT.with_shared(frozen_layers=2)),
    Variant("one pass: shared layers fully fine-tuned", _DEFAULT.with_shared(method="full")),
    Variant("branches: one top per task (14 layer passes)", _BRANCHES),
    Variant("branches, every task fine-tuned fully", _DEFAULT.with_method("full")),
    Variant("branches, every task with LoRA (merged)", _DEFAULT.with_method("lora")),
    Variant("every task branching at layer 4 (top 2)", _DEFAULT.with_branch_layer(4)),
    Variant("every task branching at layer 5 (top 1)", _DEFAULT.with_branch_layer(5)),
    Variant("4 separate encoders (branch 0: ensemble compute)", _DEFAULT.with_branch_layer(0)),
    Variant("branches, intent with and without weak sources", _BRANCHES.replace(weak_intent="auto")),
)


def _design(config: dict[str, Any]) -> str:
    """ "one pass: 4 frozen + 2 shared (lora)", or "intent 4/full, jailbreak 4/lora, pii 2/lora" for the branch
    design (reports of older builds kept `method` at the top and have no `design`)."""
    if config.get("design") == "shared":
        shared = config["shared"]
        tuned = 6 - shared["frozen_layers"]
        return f"one pass: {shared['frozen_layers']} frozen + {tuned} shared ({shared['method']})"
    return ", ".join(
        f"{t} {config[t]['branch_layer']}/{config[t].get('method', config.get('method', 'full'))}" for t in TASKS
    )


def _kept(task: dict[str, Any]) -> float:
    """The validation metric of the epoch the build kept."""
    return float(task["history"][task["best_epoch"] - 1]["val_metric"])


def _row(name: str, directory: Path) -> dict[str, Any]:
    report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    training = report["training"]
    weak = training["intent"]["weak_sources"]["variants"]
    return {
        "variant": name,
        "design": _design(report["config"]),
        "config": report["config"],
        "build_key": report["build_key"],
        "build_s": report["timings"]["total_s"],
        "validation": {
            "intent_macro_f1": max(v["val_macro_f1"] for v in weak.values()),
            "jailbreak_f1": _kept(training["jailbreak"]),
            "pii_token_f1": _kept(training["pii"]),
        },
        "embedding_cosine": embedding_cosine(report),
        "test": {
            name: value
            for name, value, _, _ in target_rows(report)
            if "presidio" not in name and "embedding" not in name  # the embedding has a column of its own
        },
        "intent_weak_sources": weak,
    }


def rows_for_keys(labelled: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Rows for builds already in the cache, given as (label, build key)."""
    rows = []
    for label, key in labelled:
        directory = build_dir(key)
        if not is_complete(directory):
            raise FileNotFoundError(f"no complete build {key} in {directory}")
        rows.append(_row(label, directory) if (directory / "report.json").exists() else _twin_row(label, directory))
    return rows


def _twin_row(name: str, directory: Path) -> dict[str, Any]:
    """A speed twin (`write_speed_twin`): the previous build's held-out figures from reports/baseline.json, the
    twin's graph for the speed columns."""
    from build_engines.paths import REPORTS_DIR

    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    baseline = json.loads((REPORTS_DIR / "baseline.json").read_text(encoding="utf-8"))
    if manifest.get("design", {}).get("speed_twin_of") != baseline["build_key"]:
        raise FileNotFoundError(f"{directory} has no report.json and is not a speed twin of the baseline build")
    nan = float("nan")
    return {
        "variant": name,
        "design": baseline["design"],
        "config": {},
        "build_key": manifest["build_key"],
        "build_s": nan,
        "validation": baseline.get("validation") or {"intent_macro_f1": nan, "jailbreak_f1": nan, "pii_token_f1": nan},
        "embedding_cosine": baseline["figures"].get("embedding mean cosine to all-MiniLM-L6-v2", 1.0),
        "test": {k: v for k, v in baseline["figures"].items() if "presidio" not in k and "embedding" not in k},
        "intent_weak_sources": {},
    }


def _served_graph(directory: Path) -> Path:
    """The graph the build serves (int8 or fp32, per its manifest)."""
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    return directory / str(manifest.get("serving", {}).get("onnx_file", "model.onnx"))


def measure_speed(
    rows: list[dict[str, Any]],
    seq_len: int = 64,
    batches: tuple[int, ...] = (1, 32),
    threads: int = 2,
    seconds: float = 3.0,
    rounds: int = 3,
) -> None:
    """In-process onnxruntime seq/s of each row's SERVED graph, interleaved round by round so that every graph sees
    the same machine load; the best round counts. Adds `speed` to each row."""
    outputs = list(output_specs(14))
    sessions = [session(_served_graph(build_dir(r["build_key"])), threads) for r in rows]
    best: list[dict[int, float]] = [{b: 0.0 for b in batches} for _ in rows]
    for _ in range(rounds):
        for batch in batches:
            feed = {
                "input_ids": np.full((batch, seq_len), 2000, np.int64),
                "attention_mask": np.ones((batch, seq_len), np.int64),
            }
            for i, sess in enumerate(sessions):
                sess.run(outputs, feed)
                runs, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds:
                    sess.run(outputs, feed)
                    runs += 1
                best[i][batch] = max(best[i][batch], batch * runs / (time.perf_counter() - started))
    for row, speed in zip(rows, best, strict=True):
        row["speed"] = {"seq_len": seq_len, "threads": threads, "seq_per_s": {str(b): s for b, s in speed.items()}}


NOTES_MARKER = "<!-- notes: kept when the table above is regenerated -->"


def write_comparison(rows: list[dict[str, Any]], output: Path) -> str:
    output.mkdir(parents=True, exist_ok=True)
    previous = output / "design_comparison.md"
    kept = previous.read_text(encoding="utf-8").partition(NOTES_MARKER)[2] if previous.exists() else ""
    (output / "design_comparison.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    metrics = list(rows[0]["test"]) if rows else []
    batches = list(rows[0].get("speed", {}).get("seq_per_s", {})) if rows else []
    lines = [
        "# Design comparison",
        "",
        "Validation picks the defaults; held-out test figures are shown for the record (the fp32 graph's; a build",
        "that serves int8 gives its int8 figures in its report). Design: one pass = frozen lower layers + one",
        "shared fine-tuned copy of the upper layers for every output; branches = a frozen trunk + per-task copies.",
        "Throughput: in-process onnxruntime, all graphs measured in the same rounds, "
        + (
            f"sequence length {rows[0]['speed']['seq_len']}, {rows[0]['speed']['threads']} threads."
            if batches
            else "not measured."
        ),
        "",
        "| variant | design | val intent F1 | val jailbreak F1 | val PII F1 | test embedding cosine | "
        + " | ".join(f"test {m}" for m in metrics)
        + "".join(f" | seq/s batch {b}" for b in batches)
        + " |",
        "|" + "---|" * (6 + len(metrics) + len(batches)),
    ]
    for r in rows:
        v = r["validation"]
        lines.append(
            f"| {r['variant']} | {r['design']} | {v['intent_macro_f1']:.3f} | {v['jailbreak_f1']:.3f} "
            f"| {v['pii_token_f1']:.3f} | {r['embedding_cosine']:.4f} | "
            + " | ".join(f"{r['test'][m]:.3f}" for m in metrics)
            + "".join(f" | {r['speed']['seq_per_s'][b]:.1f}" for b in batches)
            + " |"
        )
    weak = [r for r in rows if len(r["intent_weak_sources"]) > 1]
    for r in weak:
        lines += [
            "",
            f"Intent weak sources (WordNet glosses, chatterbot turns), build `{r['build_key']}`:",
            "",
            "| intent training data | rows | val macro-F1 | test macro-F1 | test accuracy |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {w['train_rows']} | {w['val_macro_f1']:.3f} | {w['test_macro_f1']:.3f} | "
            f"{w['test_accuracy']:.3f} |"
            for name, w in r["intent_weak_sources"].items()
        ]
    lines += ["", NOTES_MARKER]
    text = "\n".join(lines) + (kept if kept.strip() else "\n")
    (output / "design_comparison.md").write_text(text, encoding="utf-8")
    return text


def compare(names: list[str] | None, output: Path, keys: list[tuple[str, str]] | None = None) -> str:
    """Build the VARIANTS whose name contains one of `names` (all when empty), or tabulate cached `keys`."""
    if keys:
        rows = rows_for_keys(keys)
    else:
        rows = []
        for variant in VARIANTS:
            if names and not any(n in variant.name for n in names):
                continue
            outcome = build(variant.config, install=False, presidio=False, int8_check=False)
            rows.append(_row(variant.name, outcome.directory))
    measure_speed(rows)
    return write_comparison(rows, output)


def write_speed_twin(baseline: dict[str, Any], calibration_texts: list[str]) -> Path:
    """A LATENCY twin of the previous default build (`reports/baseline.json`), for the serving and router benchmarks
    where that build is not in the cache: the branch design with the same layers, ops and served precision (int8
    task tops, the PII top's FFN down-projections fp32), the task layers copied from all-MiniLM-L6-v2 and the heads
    set to answer benign and no-PII, so that every request takes the routed path. Its outputs mean nothing; its
    cost per request is the previous build's. Written to the build cache as `<key>-speed-twin`."""
    import torch

    from build_engines.config import BuildConfig
    from build_engines.data.labels import INTENT_LABELS, JAILBREAK_LABELS, bio_tags
    from build_engines.encoder import encode, load_encoder, load_tokenizer
    from build_engines.export_onnx import export_signals, quantize_int8
    from build_engines.heads import SignalsModel, TaskTop

    config = BuildConfig(design="branches")
    key = f"{baseline['build_key']}-speed-twin"
    out = build_dir(key)
    out.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder()
    tags = bio_tags()
    tops = {
        "intent": TaskTop(encoder, config.intent.branch_layer, len(INTENT_LABELS), "sequence"),
        "jailbreak": TaskTop(encoder, config.jailbreak.branch_layer, len(JAILBREAK_LABELS), "sequence"),
        "pii": TaskTop(encoder, config.pii.branch_layer, len(tags), "token"),
    }
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for top in tops.values():
            # Each copied layer gets its own weights (x(1 + 1e-3 noise)): identical copies would be one initializer
            # after export and one computation after onnxruntime's common-subexpression elimination, so the twin
            # would run 6 layer passes, not the previous build's 14.
            for param in top.layers.parameters():
                param.mul_(1.0 + 1e-3 * torch.randn(param.shape, generator=generator))
            top.head.weight.mul_(0.01)
            top.head.bias.fill_(-10.0)
            top.head.bias[0] = 10.0  # "benign" / "O" / the first category
            top.eval()
    model = SignalsModel(encoder, tops["intent"], tops["jailbreak"], tops["pii"])
    fp32 = export_signals(model, out / "model.onnx")
    rows = [e.ids for e in encode(load_tokenizer(), calibration_texts)]
    quantize_int8(fp32, out / "model.int8.onnx", rows, ("intent", "jailbreak", "pii"), ffn_down_float=("pii",))
    load_tokenizer().save(str(out / "tokenizer.json"))
    manifest = {
        "labels": {"intent": list(INTENT_LABELS), "jailbreak": list(JAILBREAK_LABELS), "pii": list(tags)},
        "max_seq_length": 512,
        "embedding_dim": 384,
        "build_key": key,
        "base_model": "all-MiniLM-L6-v2",
        "thresholds": {"jailbreak": baseline.get("jailbreak_threshold", 0.7)},
        "design": {"speed_twin_of": baseline["build_key"], "note": "latency twin: outputs are not a classifier's"},
        "serving": {"onnx_file": "model.int8.onnx"},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (out / COMPLETE_MARKER).write_text(key + "\n", encoding="utf-8")
    return out


# --- validation sweeps of the one-pass training (no export, no test split) -----------------------------------


def parse_changes(items: list[str]) -> dict[str, dict[str, Any]]:
    """["shared.method=full", "pii_data.presidio_extra=2000", "seed=7"] -> {"shared": {...}, "pii_data": {...},
    "": {"seed": 7}}; values take the type of the field's default."""
    import dataclasses

    changes: dict[str, dict[str, Any]] = {}
    for item in items:
        path, _, raw = item.partition("=")
        group, _, name = path.rpartition(".")
        owner = getattr(_DEFAULT, group) if group else _DEFAULT
        fields = {f.name for f in dataclasses.fields(owner)}
        if name not in fields:
            raise SystemExit(f"sweep: {path!r} is not a setting (known in {group or 'BuildConfig'}: {sorted(fields)})")
        default = getattr(owner, name)
        value: Any = raw
        if isinstance(default, bool):
            value = raw.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, int):
            value = int(raw)
        elif isinstance(default, float):
            value = float(raw)
        changes.setdefault(group, {})[name] = value
    return changes


def sweep_config(changes: dict[str, dict[str, Any]]) -> BuildConfig:
    import dataclasses

    config = _DEFAULT.replace(**changes.get("", {}))
    nested = {g: dataclasses.replace(getattr(config, g), **c) for g, c in changes.items() if g}
    return config.replace(**nested)


def sweep(items: list[str], output: Path) -> dict[str, Any]:
    """Train the one-pass top with `items` changed (see `parse_changes`) exactly as `build` would, and record its
    per-epoch VALIDATION figures and the jailbreak threshold the build would serve; the test splits are never
    scored. One JSON line per run is appended to `output`."""
    from build_engines import pipeline
    from build_engines.data.labels import bio_tags
    from build_engines.encoder import load_encoder
    from build_engines.threads import choose_threads
    from build_engines.train import seed_everything

    config = sweep_config(parse_changes(items))
    if config.design != "shared":
        raise SystemExit("sweep: only the one-pass design (design=shared) is swept")
    timings: dict[str, float] = {"threads": choose_threads()}
    seed_everything(config.seed)
    intent, jailbreak, pii = pipeline.load_splits(config)
    result, threshold, info = pipeline._train_shared(
        load_encoder(), config, intent, jailbreak, pii, bio_tags(), timings
    )
    record = {
        "changes": items,
        "config": config.to_dict(),
        "build_key": pipeline.key_for(config),
        "best_epoch": result.best_epoch,
        "best_val_score": result.best_score,
        "served_threshold": threshold,
        "history": result.history,
        "train_rows": info["train_rows"],
        "timings": timings,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return record
