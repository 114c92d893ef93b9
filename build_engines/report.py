"""Markdown rendering of the build report (report.json is the source of truth)."""

from __future__ import annotations

from typing import Any

__all__ = ["TARGETS", "render_markdown", "served_figures", "target_rows"]

TARGETS = {
    "intent accuracy": 0.95,
    "intent macro-F1": 0.95,
    "jailbreak F1": 0.97,
    "jailbreak benign FPR (max)": 0.01,
    "jailbreak benign flagged rate, worst benign source (max)": 0.01,
    "PII entity micro-F1": 0.90,
    "PII-free prompts flagged as PII (max)": 0.01,
    "embedding mean cosine to all-MiniLM-L6-v2": 0.97,
}
"""Quality floors of the served model on the held-out test splits, at the served operating point. The PII-free
prompts are the held-out intent test prompts without a capitalised word inside a sentence (`likely_pii_free`)."""


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def served_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The held-out figures of the graph the router serves: the int8 graph's when it is served, else fp32's."""
    quantization = report.get("quantization") or {}
    return report["int8"] if quantization.get("serve_int8") and report.get("int8") else report["test"]  # type: ignore[no-any-return]


def target_rows(report: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    """(metric, value, target, met) on the held-out test splits, for the graph the router serves."""
    test = served_figures(report)
    jb = test["jailbreak"]["at_threshold"]
    values = {
        "intent accuracy": test["intent"]["accuracy"],
        "intent macro-F1": test["intent"]["macro_f1"],
        "jailbreak F1": jb["f1"],
        "jailbreak benign FPR (max)": jb["fpr"],
        "PII entity micro-F1": test["pii"]["micro"]["f1"],
        "PII-free prompts flagged as PII (max)": test["pii_free_prompts"]["clean"]["flagged_rate"],
        "embedding mean cosine to all-MiniLM-L6-v2": embedding_cosine(report),
    }
    benign = [v["flagged_rate"] for v in test["jailbreak"]["by_source"].values() if v.get("benign")]
    if benign:
        values["jailbreak benign flagged rate, worst benign source (max)"] = max(benign)
    rows = []
    for name, target in TARGETS.items():
        if name not in values:
            continue
        met = values[name] <= target if "max" in name else values[name] >= target
        rows.append((name, values[name], target, met))
    presidio = report.get("presidio_analyzer")
    if presidio:
        ours, theirs = test["pii"]["micro"]["f1"], presidio["micro"]["f1"]
        rows.append(("PII micro-F1 above presidio-analyzer", ours - theirs, 0.0, ours > theirs))
    return rows


def embedding_cosine(report: dict[str, Any]) -> float:
    """Mean cosine of the served graph's embedding to all-MiniLM-L6-v2's on held-out prompts (the int8 graph's when
    it is served); builds that kept the original encoder frozen checked equality within 1e-5 instead (cosine 1)."""
    served = (report.get("quantization") or {}).get("served_embedding")
    check = served if served else report["onnx"]["embedding_vs_sentence_transformers"]
    return float(check["cosine_mean"]) if "cosine_mean" in check else 1.0


def _design_sentence(report: dict[str, Any]) -> str:
    config = report["config"]
    if config.get("design") == "shared":
        shared = config["shared"]
        frozen, tuned = shared["frozen_layers"], 6 - shared["frozen_layers"]
        return (
            f"Design: one encoder pass (6 MiniLM layers) for every output: the original lower {frozen} layers, then "
            f"one fine-tuned copy of the upper {tuned} ({shared['method']}) shared by the intent, jailbreak and PII "
            "heads and by the embedding (mean-pooled, normalised), trained multi-task with an embedding-preservation "
            f"loss (weight {shared['embedding_weight']}) toward all-MiniLM-L6-v2's embedding."
        )
    return (
        "Design: the original MiniLM is the frozen trunk (its mean-pooled output is the embedding); each task branches "
        "off it with fine-tuned copies of the layers above "
        + ", ".join(f"{t} {config[t]['branch_layer']} ({config[t]['method']})" for t in ("intent", "jailbreak", "pii"))
        + "."
    )


def _before_after(report: dict[str, Any]) -> list[str]:
    baseline = report.get("baseline")
    if not baseline:
        return []
    rows = [
        [name, _f(baseline["figures"].get(name)), _f(value), _f(target), "yes" if met else "**no**"]
        for name, value, target, met in target_rows(report)
    ]
    return [
        "",
        f"Before: build `{baseline['build_key']}` ({baseline['design']}), on the held-out splits of its day (the test "
        "splits have grown since: chat-style intent prompts, chat-style attacks, wrapped and follow-up benign prompts; "
        "rows of floors it predates read n/a):",
        "",
        *_table(["metric", "before", "now", "target", "met now"], rows),
    ]


def _cache_pair_lines(pairs: dict[str, Any] | None) -> list[str]:
    """The semantic cache on the authored paraphrase / non-paraphrase pairs, original vs served embedding."""
    if not pairs:
        return []
    lines = [
        "## Semantic cache on held-out paraphrase pairs",
        "",
        "A hit is cosine >= the threshold; precision/recall of hits as paraphrase detection on the authored pair set "
        "(`data/authored/paraphrase_pairs.jsonl`, never used for training or selection), all-MiniLM-L6-v2's own "
        "embedding vs the served graph's, in the same run.",
        "",
    ]
    rows = []
    for threshold, by_model in pairs.items():
        for model, r in by_model.items():
            rows.append(
                [
                    threshold,
                    model,
                    str(r["n"]),
                    _f(r["precision"]),
                    _f(r["recall"]),
                    _f(r["f1"]),
                    _f(r["mean_cosine_positive"]),
                    _f(r["mean_cosine_negative"]),
                ]
            )
    lines += _table(
        [
            "threshold",
            "embedding",
            "pairs",
            "hit precision",
            "hit recall",
            "F1",
            "mean cos paraphrase",
            "mean cos other",
        ],
        rows,
    )
    return [*lines, ""]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _pii_free_lines(free: dict[str, Any] | None) -> list[str]:
    """The no-PII-expected check: held-out intent test prompts where the PII top finds an entity."""
    if not free:
        return []
    watched = ("math", "physics", "computer science", "chemistry", "engineering")
    by_category = free["clean_by_category"]
    lines = [
        "No PII expected (held-out intent test prompts): any entity found in "
        f"{_f(free['all']['flagged_rate'])} of all {free['all']['n']} prompts (these include historical figures "
        "and places, arguably PII-typed) and in "
        f"{_f(free['clean']['flagged_rate'])} of the {free['clean']['n']} without a capitalised word inside a "
        "sentence (should be ~0); by category there: "
        + ", ".join(f"{c} {_f(by_category[c]['flagged_rate'])}" for c in watched if c in by_category)
        + ". Types found there: "
        + (", ".join(f"{t} {n}" for t, n in free["clean_types_found"].items()) or "none")
        + ".",
        "",
    ]
    examples = free.get("clean_examples") or []
    if examples:
        lines += ["Examples:", ""]
        lines += [
            "- `" + e["text"][:100].replace("`", "'") + "` -> " + ", ".join(f"{v!r} {t}" for v, t in e["spans"])
            for e in examples[:5]
        ]
        lines.append("")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    test = report["test"]
    lines = [
        "# Classifier build report",
        "",
        f"Build key `{report['build_key']}`. {_design_sentence(report)} Build time "
        f"{report['timings']['total_s']:.0f} s on this machine. All figures are on held-out test splits that "
        "training and model selection never saw.",
        "",
        "## Targets",
        "",
        f"Figures of the served graph ({'int8' if served_figures(report) is not test else 'fp32'}).",
        "",
        *_table(
            ["metric", "value", "target", "met"],
            [[n, _f(v), _f(t), "yes" if m else "**no**"] for n, v, t, m in target_rows(report)],
        ),
        *_before_after(report),
        "",
        "## Intent (14 categories)",
        "",
        f"accuracy {_f(test['intent']['accuracy'])}, macro-F1 {_f(test['intent']['macro_f1'])}, "
        f"ECE {_f(test['intent']['ece'])}, n={test['intent']['n']}. "
        "Confusion matrix: `intent_confusion.png`.",
        "",
        *_table(
            ["category", "precision", "recall", "F1", "support"],
            [
                [k, _f(v["precision"]), _f(v["recall"]), _f(v["f1"]), str(v["support"])]
                for k, v in test["intent"]["per_class"].items()
            ],
        ),
        "",
        "Weak sources (WordNet glosses, chatterbot turns), chosen on validation:",
        "",
        *_table(
            ["variant", "train rows", "val macro-F1", "test macro-F1", "test accuracy"],
            [
                [
                    k,
                    str(v["train_rows"]),
                    _f(v["val_macro_f1"]),
                    _f(v["test_macro_f1"]),
                    _f(v["test_accuracy"]),
                ]
                for k, v in report["training"]["intent"]["weak_sources"]["variants"].items()
            ],
        ),
        f"\nchosen: **{report['training']['intent']['weak_sources']['chosen']}**",
        "",
        "## Jailbreak",
        "",
    ]
    jb = test["jailbreak"]
    lines += [
        f"Threshold {jb['at_threshold']['threshold']:.2f} picked on validation (the highest whose F1 is within "
        "0.01 of the best, with FPR <= 1%). "
        f"At it: precision {_f(jb['at_threshold']['precision'])}, recall {_f(jb['at_threshold']['recall'])}, "
        f"F1 {_f(jb['at_threshold']['f1'])}, benign FPR {_f(jb['at_threshold']['fpr'])}; at 0.5: "
        f"F1 {_f(jb['at_0.5']['f1'])}, FPR {_f(jb['at_0.5']['fpr'])}. ECE {_f(jb['summary']['ece'])}.",
        "",
        *_table(
            ["test source", "n", "flagged as jailbreak"],
            [[k, str(v["n"]), _f(v["flagged_rate"])] for k, v in jb["by_source"].items()],
        ),
        "",
        "Threshold sweep:",
        "",
        *_table(
            ["threshold", "precision", "recall", "F1", "benign FPR"],
            [
                [f"{r['threshold']:.2f}", _f(r["precision"]), _f(r["recall"]), _f(r["f1"]), _f(r["fpr"])]
                for r in jb["sweep"]
            ],
        ),
        "",
        "## PII (entity level, exact span after trimming punctuation)",
        "",
    ]
    pii = test["pii"]
    presidio = report.get("presidio_analyzer") or {"per_type": {}, "micro": {}}
    types = sorted(set(pii["per_type"]) | set(presidio["per_type"]))
    lines += [
        f"ours: micro P {_f(pii['micro']['precision'])} R {_f(pii['micro']['recall'])} "
        f"F1 {_f(pii['micro']['f1'])} "
        f"(overlap recall {_f(pii['overlap_recall'])}); presidio-analyzer "
        f"({presidio.get('spacy_model', 'not run')}): F1 {_f(presidio['micro'].get('f1'))}"
        + (
            f", on the types it supports F1 {_f(presidio['on_supported_types']['micro']['f1'])}"
            if "on_supported_types" in presidio
            else ""
        )
        + ".",
        "",
        *_table(
            ["type", "support", "ours F1", "presidio F1"],
            [
                [
                    t,
                    str(pii["per_type"].get(t, {}).get("support", 0)),
                    _f(pii["per_type"].get(t, {}).get("f1")),
                    _f(presidio["per_type"].get(t, {}).get("f1")),
                ]
                for t in types
            ],
        ),
        "",
        *_pii_free_lines(test.get("pii_free_prompts")),
        "## ONNX and int8",
        "",
    ]
    onnx = report["onnx"]
    int8 = report["int8"]
    speed = report["speed"]
    lines += [
        "max |torch - onnxruntime| per output: "
        + ", ".join(f"{k} {v:.2e}" for k, v in onnx["torch_vs_ort"]["max_abs_diff"].items())
        + " (pii_tag_ids: mismatch rate).",
        _embedding_line(onnx["embedding_vs_sentence_transformers"]),
        (
            "int8 (static: weights per channel, activation scales calibrated on training rows; the MatMuls of the "
            + (
                "shared fine-tuned layers and the heads, so the embedding is int8 too; the frozen lower layers stay "
                "fp32"
                if report["config"].get("design") == "shared"
                else "fine-tuned layers and heads; the trunk and so the embedding stay fp32"
            )
            + f"), held-out: intent macro-F1 {_f(int8['intent']['macro_f1'])}, "
            f"jailbreak F1 {_f(int8['jailbreak']['at_threshold']['f1'])}, PII F1 {_f(int8['pii']['micro']['f1'])}; "
            f"in-process ORT {speed['fp32_seq_per_s']:.0f} seq/s fp32 vs {speed['int8_seq_per_s']:.0f} int8 "
            "(batch 32, real test texts, build threads)."
        )
        if int8
        else f"int8 not evaluated; in-process ORT {speed['fp32_seq_per_s']:.0f} seq/s fp32.",
        *_quantization_lines(report.get("quantization")),
        *_served_embedding_lines(report.get("quantization")),
        "",
        *_cache_pair_lines(report.get("cache_pairs")),
        "## Data",
        "",
    ]
    for name, data in report["data"].items():
        counts = {split: sum(v.values()) for split, v in data["counts"].items()}
        lines.append(
            f"- **{name}**: train {counts['train']}, val {counts['val']}, test {counts['test']}. "
            + "; ".join(f"{s['name']} ({s['licence']})" for s in data["sources"])
            + "."
            + ("" if not data["notes"] else " " + " ".join(data["notes"]))
        )
    lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in report["timings"].items()), ""]
    return "\n".join(lines)


def _embedding_line(check: dict[str, Any]) -> str:
    if "cosine_mean" in check:
        return (
            f"embedding vs all-MiniLM-L6-v2 (sentence-transformers reference) on {check['texts']} held-out prompts: "
            f"mean cosine {check['cosine_mean']:.4f}, 5th percentile {check['cosine_p5']:.4f}, min "
            f"{check['cosine_min']:.4f} (target: mean >= {check['target_mean']})."
        )
    return f"embedding vs sentence-transformers reference: max abs diff {check['max_abs_diff']:.2e} (tolerance 1e-5)."


def _served_embedding_lines(choice: dict[str, Any] | None) -> list[str]:
    check = (choice or {}).get("served_embedding")
    return ["", "Served int8 graph's " + _embedding_line(check)] if check else []


def _quantization_lines(choice: dict[str, Any] | None) -> list[str]:
    if not choice or "validation_fp32" not in choice:
        return []
    before, after = choice["validation_fp32"], choice["validation_int8"]
    scores = ", ".join(f"{k} {_f(before[k])} -> {_f(after[k])}" for k in before)
    if "embedding_cosine_to_reference" in after:
        scores += (
            f"; int8 embedding's mean cosine to all-MiniLM-L6-v2 {after['embedding_cosine_to_reference']:.4f}"
            f" (to the fp32 graph's {after['embedding_cosine_to_fp32']:.4f})"
        )
    tasks = choice.get("int8_tasks", ["intent", "jailbreak", "pii"] if choice["serve_int8"] else [])
    partial = choice.get("ffn_down_fp32_tasks", [])
    named = [f"{t} (FFN down-projections fp32)" if t in partial else t for t in tasks]
    if tasks == ["top"]:
        served = "int8 shared top (the fine-tuned layers and every head), frozen lower layers fp32"
    else:
        served = f"int8 tops for {', '.join(named)}, the rest fp32" if tasks else "fp32"
    retry = choice.get("validation_int8_ffn_down_fp32") or {}
    lines = [
        "",
        f"Served graph: **{served}** (mode `{choice['mode']}`: a task's top is served in int8 when its validation "
        f"score stays within {choice['tolerance']} of fp32 and, in the one-pass design, the int8 embedding's mean "
        "cosine to all-MiniLM-L6-v2 on validation prompts stays at or above the embedding floor). "
        f"Validation fp32 -> all tops int8: {scores}. The int8 "
        "figures above are those of the all-tops graph."
        + (
            " A task that missed got a second try with its FFN down-projections (input: the GELU output, long-tailed)"
            f" in fp32: {', '.join(f'{k} {_f(v)}' for k, v in retry.items())}."
            if retry
            else ""
        ),
    ]
    check = choice.get("served_graph_check")
    if check:
        lines += [
            "",
            f"Served graph checks: embedding vs the fp32 graph max abs diff {check['embedding_vs_fp32']:.1e}; a row "
            f"alone vs padded in a batch of 8, max abs diff over all outputs {check['batch_vs_alone']:.1e} (fixed "
            "activation scales: a request's scores do not depend on its batch-mates).",
        ]
    return lines
