"""The build: data -> training -> ONNX export and checks -> held-out evaluation -> report -> model repository.

Everything lands in the cache directory of the build key first; a build whose key is already complete only
re-installs the model repository and the committed reports from there.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import f1_score

from build_engines.cache import COMPLETE_MARKER, build_dir, build_key, input_files, is_complete
from build_engines.config import TASKS, BuildConfig
from build_engines.data.common import DataSplits, TextExample, read_jsonl
from build_engines.data.intent import load_intent
from build_engines.data.jailbreak import load_jailbreak
from build_engines.data.labels import INTENT_LABELS, JAILBREAK_LABELS, bio_tags
from build_engines.data.pii import PiiExample, load_pii
from build_engines.encoder import (
    MAX_SEQ_LENGTH,
    encode,
    load_encoder,
    load_tokenizer,
    pad_batch,
    sentence_embedding,
)
from build_engines.evaluate import (
    evaluate_intent,
    evaluate_jailbreak,
    evaluate_pii,
    evaluate_pii_free,
    presidio_baseline,
    run_signals,
    save_json,
    write_confusion_png,
)
from build_engines.export_onnx import compare_with_torch, export_signals, quantize_int8, session
from build_engines.heads import SignalsModel
from build_engines.metrics import binary_at_threshold, span_scores
from build_engines.package import write_package
from build_engines.paths import AUTHORED_DIR, MODEL_REPOSITORY_DIR, PACKAGE_DIR, REPO_ROOT, REPORTS_DIR
from build_engines.report import render_markdown
from build_engines.repository import ServingOptions, install_repository
from build_engines.shared import (
    Metric,
    SharedResult,
    SharedSignalsModel,
    Task,
    TaskData,
    predict_shared,
    teacher_embeddings,
    train_shared,
)
from build_engines.threads import choose_threads
from build_engines.train import TrainResult, predict, seed_everything, train_top, trunk_features
from wire.bio import spans_to_bio, trim_span
from wire.pii_rules import detect

__all__ = ["BuildOutcome", "build", "install_from_cache", "key_for", "load_splits"]

log = logging.getLogger(__name__)
REPORT_FILES = ("report.json", "report.md", "intent_confusion.png")


@dataclass(frozen=True)
class BuildOutcome:
    key: str
    directory: Path
    cached: bool
    seconds: float


SHARED_INPUTS = (REPO_ROOT / "wire" / "bio.py", REPO_ROOT / "wire" / "pii_rules.py")
"""Code outside this package that the build runs (BIO encoding of the PII labels, the PII decoder that model
selection scores with): part of the build key."""


def key_for(config: BuildConfig) -> str:
    extra = [*SHARED_INPUTS, *(Path(x) for x in config.external_intent)]
    return build_key(input_files(PACKAGE_DIR, extra), REPO_ROOT, config.to_dict())


def install_from_cache(
    directory: Path,
    repository: Path = MODEL_REPOSITORY_DIR,
    reports: Path | None = None,
    options: ServingOptions | None = None,
) -> Path:
    """The model repository from a build (or installed package) directory; `reports`: also copy the build's report
    files there (`python -m build_engines ship` does, into the checkout; a plain build or install never writes
    into the checkout beyond the git-ignored model repository)."""
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    onnx_file = manifest.get("serving", {}).get("onnx_file", "model.onnx")
    model_dir = install_repository(directory, repository, manifest, options or ServingOptions(onnx_file=onnx_file))
    if reports is not None:
        reports.mkdir(parents=True, exist_ok=True)
        for name in REPORT_FILES:
            if (directory / name).exists():
                shutil.copyfile(directory / name, reports / name)
    return model_dir


# --- metrics used for model selection (validation split only) ---------------------------------------


def _macro_f1(probs: list[NDArray[Any]], labels: Sequence[int]) -> float:
    return float(f1_score(list(labels), [int(p.argmax()) for p in probs], average="macro"))


def _binary_f1(probs: list[NDArray[Any]], labels: Sequence[int]) -> float:
    return float(f1_score(list(labels), [int(p[1] >= 0.5) for p in probs]))


def _pick_threshold(
    probs: list[NDArray[Any]], labels: Sequence[int], max_fpr: float = 0.01, f1_slack: float = 0.01
) -> float:
    """On validation: the HIGHEST threshold whose F1 is within `f1_slack` of the best F1 among thresholds with
    benign FPR <= max_fpr. F1 is flat over a wide range; a blocked benign user costs more than a missed
    near-duplicate attack, so ties go to the conservative end."""
    scores = np.array([p[1] for p in probs])
    y = np.array(labels)
    candidates = [binary_at_threshold(scores, y, t) for t in np.round(np.arange(0.05, 0.96, 0.01), 2)]
    allowed = [c for c in candidates if c["fpr"] <= max_fpr] or candidates
    best = max(c["f1"] for c in allowed)
    return float(max(c["threshold"] for c in allowed if c["f1"] >= best - f1_slack))


# --- the build --------------------------------------------------------------------------------------


def load_splits(config: BuildConfig) -> tuple[DataSplits, DataSplits, DataSplits]:
    """The intent, jailbreak and PII splits of `config`, as the build trains and evaluates on them (seeded: the
    test splits are the same for every caller: the build, `ship`'s re-evaluation, the quality gate, benchmarks)."""
    intent = load_intent(
        AUTHORED_DIR,
        seed=config.seed,
        val_fraction=config.val_fraction,
        weak=config.weak_intent != "off",
        external=list(config.external_intent),
    )
    jailbreak = load_jailbreak(AUTHORED_DIR, intent, seed=config.seed, val_fraction=config.val_fraction)
    return intent, jailbreak, _load_pii(config, intent)


def _load_pii(config: BuildConfig, intent: DataSplits) -> DataSplits:
    """PII splits plus the training-only additions of `config.pii_data`; PII-free prompts come from the intent
    TRAINING split (never its validation or test split) and the authored benign training prompts."""
    extra = config.pii_data
    free: list[str] = []
    if extra.pii_free_prompts:
        free = [r.text for r in intent.train if r.source == "authored"]
        free += [str(r["text"]) for r in read_jsonl(AUTHORED_DIR / "benign_train.jsonl")]
    return load_pii(
        seed=config.seed,
        val_fraction=config.val_fraction,
        presidio_extra=extra.presidio_extra,
        train_only_per_template=extra.train_only_per_template,
        pii_free=free,
        templated_pii_free=extra.templated_pii_free,
    )


def _rows(tokenizer_max: int, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in encode(load_tokenizer(tokenizer_max), texts)]


def _train_intent(
    encoder: Any, config: BuildConfig, data: DataSplits, timings: dict[str, float]
) -> tuple[TrainResult, dict[str, Any]]:
    """Train with and without the weak sources; keep the variant with the better validation macro-F1."""
    task = config.intent
    authored = [r for r in data.train if r.source == "authored"]
    weak = [r for r in data.train if r.source != "authored"]
    started = time.perf_counter()
    feats = trunk_features(
        encoder,
        task.branch_layer,
        _rows(task.max_length, [r.text for r in data.train]),
        desc="intent trunk",
    )
    val_feats = trunk_features(encoder, task.branch_layer, _rows(task.max_length, [r.text for r in data.val]))
    test_feats = trunk_features(encoder, task.branch_layer, _rows(task.max_length, [r.text for r in data.test]))
    timings["intent_features_s"] = time.perf_counter() - started
    label = {name: i for i, name in enumerate(INTENT_LABELS)}
    val = (val_feats, [label[r.label] for r in data.val])
    test_y = [label[r.label] for r in data.test]
    variants = {"authored": [i for i, r in enumerate(data.train) if r.source == "authored"]}
    if weak and config.weak_intent in ("auto", "on"):
        variants["authored+weak"] = list(range(len(data.train)))
    if config.weak_intent == "on":
        variants.pop("authored")
    results: dict[str, TrainResult] = {}
    ablation: dict[str, Any] = {}
    for name, index in variants.items():
        result = train_top(
            f"intent[{name}]",
            encoder,
            config,
            task,
            "sequence",
            len(INTENT_LABELS),
            ([feats[i] for i in index], [label[data.train[i].label] for i in index]),
            val,
            _macro_f1,
        )
        test_probs = predict(result.top, test_feats, "sequence")
        results[name] = result
        ablation[name] = {
            "train_rows": len(index),
            "val_macro_f1": result.best_val,
            "best_epoch": result.best_epoch,
            "test_macro_f1": _macro_f1(test_probs, test_y),
            "test_accuracy": float(np.mean([int(p.argmax()) == y for p, y in zip(test_probs, test_y, strict=True)])),
            "train_s": result.seconds,
        }
    chosen = max(results, key=lambda k: results[k].best_val)
    timings["intent_train_s"] = sum(r.seconds for r in results.values())
    return results[chosen], {
        "variants": ablation,
        "chosen": chosen,
        "authored_rows": len(authored),
        "weak_rows": len(weak),
    }


def _train_jailbreak(
    encoder: Any, config: BuildConfig, data: DataSplits, timings: dict[str, float]
) -> tuple[TrainResult, float]:
    task = config.jailbreak
    started = time.perf_counter()
    feats = trunk_features(
        encoder,
        task.branch_layer,
        _rows(task.max_length, [r.text for r in data.train]),
        batch_size=32,
        desc="jailbreak trunk",
    )
    val_feats = trunk_features(
        encoder, task.branch_layer, _rows(task.max_length, [r.text for r in data.val]), batch_size=32
    )
    timings["jailbreak_features_s"] = time.perf_counter() - started
    y = [JAILBREAK_LABELS.index(r.label) for r in data.train]
    val_y = [JAILBREAK_LABELS.index(r.label) for r in data.val]
    result = train_top("jailbreak", encoder, config, task, "sequence", 2, (feats, y), (val_feats, val_y), _binary_f1)
    timings["jailbreak_train_s"] = result.seconds
    return result, _pick_threshold(predict(result.top, val_feats, "sequence"), val_y)


def _pii_rows(
    rows: Sequence[PiiExample], max_length: int, tags: Sequence[str]
) -> tuple[list[list[int]], list[list[int]]]:
    tag_ids = {t: i for i, t in enumerate(tags)}
    encoded = encode(load_tokenizer(max_length), [r.text for r in rows])
    return [e.ids for e in encoded], [
        spans_to_bio(e.offsets, r.spans, tag_ids) for e, r in zip(encoded, rows, strict=True)
    ]


def _entity_f1(rows: Sequence[PiiExample], max_length: int, tags: Sequence[str]) -> Any:
    """Validation metric of the PII top: entity micro-F1 as the held-out evaluation computes it (the model's tags
    merged with the rule spans by `wire.pii_rules.detect`, exact spans), so the chosen epoch is the best at what is
    reported."""
    encoded = encode(load_tokenizer(max_length), [r.text for r in rows])
    gold = [sorted({trim_span(r.text, s) for s in r.spans}) for r in rows]

    def metric(probs: list[NDArray[Any]], _labels: Any) -> float:
        predicted = [
            sorted(set(detect(r.text, e.offsets, [tags[int(t)] for t in p.argmax(1)])))
            for r, e, p in zip(rows, encoded, probs, strict=True)
        ]
        return float(span_scores(gold, predicted)["micro"]["f1"])

    return metric


def _train_pii(
    encoder: Any, config: BuildConfig, data: DataSplits, tags: Sequence[str], timings: dict[str, float]
) -> TrainResult:
    task = config.pii
    started = time.perf_counter()
    ids, labels = _pii_rows(data.train, task.max_length, tags)
    val_ids, val_labels = _pii_rows(data.val, task.max_length, tags)
    feats = trunk_features(encoder, task.branch_layer, ids, desc="pii trunk")
    val_feats = trunk_features(encoder, task.branch_layer, val_ids)
    timings["pii_features_s"] = time.perf_counter() - started
    metric = _entity_f1(data.val, task.max_length, tags)
    result = train_top(
        "pii", encoder, config, task, "token", len(tags), (feats, labels), (val_feats, val_labels), metric
    )
    timings["pii_train_s"] = result.seconds
    return result


def _train_shared(
    encoder: Any,
    config: BuildConfig,
    intent: DataSplits,
    jailbreak: DataSplits,
    pii: DataSplits,
    tags: Sequence[str],
    timings: dict[str, float],
) -> tuple[SharedResult, float, dict[str, Any]]:
    """The one-pass model: frozen-layer features of every task's rows, the teacher embedding of each, multi-task
    training of the shared top; the jailbreak threshold is then picked on validation as in the branch design."""
    settings = config.shared
    k = settings.frozen_layers
    started = time.perf_counter()
    intent_label = {name: i for i, name in enumerate(INTENT_LABELS)}

    def task_data(task: Task, ids: list[list[int]], labels: list[Any], desc: str) -> TaskData:
        feats = trunk_features(encoder, k, ids, batch_size=32, desc=desc)
        return TaskData(feats, labels, teacher_embeddings(encoder, k, feats))

    def text_task(task: Task, rows: Sequence[TextExample], label: Callable[[TextExample], int], desc: str) -> TaskData:
        return task_data(task, _rows(settings.max_length, [r.text for r in rows]), [label(r) for r in rows], desc)

    def intent_of(r: TextExample) -> int:
        return intent_label[r.label]

    def jailbreak_of(r: TextExample) -> int:
        return JAILBREAK_LABELS.index(r.label)

    authored = [r for r in intent.train if r.source == "authored"] if config.weak_intent == "off" else intent.train
    train: dict[Task, TaskData] = {
        "intent": text_task("intent", authored, intent_of, "intent features"),
        "jailbreak": text_task("jailbreak", jailbreak.train, jailbreak_of, "jailbreak features"),
        "pii": task_data("pii", *_pii_rows(pii.train, settings.max_length, tags), "pii features"),
    }
    val: dict[Task, TaskData] = {
        "intent": text_task("intent", intent.val, intent_of, "intent val"),
        "jailbreak": text_task("jailbreak", jailbreak.val, jailbreak_of, "jailbreak val"),
        "pii": task_data("pii", *_pii_rows(pii.val, settings.max_length, tags), "pii val"),
    }
    timings["shared_features_s"] = time.perf_counter() - started
    metrics: dict[Task, Metric] = {
        "intent": _macro_f1,
        "jailbreak": _binary_f1,
        "pii": _entity_f1(pii.val, settings.max_length, tags),
    }
    result = train_shared(
        encoder, settings, config.seed, config.head_lr_multiplier, len(INTENT_LABELS), len(tags), train, val, metrics
    )
    timings["shared_train_s"] = result.seconds
    jailbreak_val, _ = predict_shared(result.top, "jailbreak", val["jailbreak"])
    threshold = _pick_threshold(jailbreak_val, val["jailbreak"].labels)
    rows = {task: len(data.features) for task, data in train.items()}
    return result, threshold, {"train_rows": rows, "intent_rows": len(authored)}


def _shared_training_report(
    result: SharedResult, threshold: float, info: dict[str, Any], test: dict[str, Any]
) -> dict[str, Any]:
    """The shared run's history, and per task the view the report and the comparison read (`history` of
    validation metrics, `best_epoch`)."""

    def task_history(task: str) -> list[dict[str, float]]:
        return [{"epoch": h["epoch"], "val_metric": h[f"val_{task}"]} for h in result.history]

    intent_best = result.history[result.best_epoch - 1]["val_intent"]
    return {
        "shared": {"history": result.history, "best_epoch": result.best_epoch, "seconds": result.seconds, **info},
        "intent": {
            "history": task_history("intent"),
            "best_epoch": result.best_epoch,
            "weak_sources": {
                "variants": {
                    "authored": {
                        "train_rows": info["intent_rows"],
                        "val_macro_f1": intent_best,
                        "best_epoch": result.best_epoch,
                        "test_macro_f1": test["intent"]["macro_f1"],
                        "test_accuracy": test["intent"]["accuracy"],
                        "train_s": result.seconds,
                    }
                },
                "chosen": "authored",
                "authored_rows": info["intent_rows"],
                "weak_rows": 0,
            },
        },
        "jailbreak": {
            "history": task_history("jailbreak"),
            "best_epoch": result.best_epoch,
            "threshold_from_validation": threshold,
        },
        "pii": {"history": task_history("pii"), "best_epoch": result.best_epoch},
    }


def _embedding_fidelity(onnx_path: Path, texts: Sequence[str]) -> dict[str, Any]:
    """Cosine of the graph's `embedding` to all-MiniLM-L6-v2's sentence embedding (a fresh HF BertModel with
    sentence-transformers' mean pooling) on held-out prompts; the one-pass design's target is a mean >= 0.97."""
    from transformers import BertModel

    from build_engines.paths import encoder_path

    reference_model: BertModel = BertModel.from_pretrained(str(encoder_path()), add_pooling_layer=False)
    reference_model.eval()  # type: ignore[no-untyped-call]
    tokenizer = load_tokenizer(256, compat=False)  # as sentence-transformers, its max_seq_length for this model
    rows = [e.ids for e in encode(tokenizer, texts)]
    served_rows = [e.ids for e in encode(load_tokenizer(256), texts)]
    sess = session(onnx_path)
    cosines: list[float] = []
    for start in range(0, len(rows), 16):
        ids, mask = pad_batch(rows[start : start + 16])
        expected = sentence_embedding(reference_model, ids, mask).numpy().astype(np.float64)
        ids, mask = pad_batch(served_rows[start : start + 16])
        got = sess.run(["embedding"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        cosines += list((expected * got).sum(1) / np.linalg.norm(got, axis=1))
    values = np.array(cosines)
    return {
        "texts": len(texts),
        "cosine_mean": float(values.mean()),
        "cosine_p5": float(np.percentile(values, 5)),
        "cosine_min": float(values.min()),
        "target_mean": 0.97,
        "passed": float(values.mean()) >= 0.97,
    }


CACHE_THRESHOLDS = (0.8, 0.92)
"""The router's fallback cache threshold (no `similarity_threshold` anywhere in the config) and deploy/config.yaml's."""


def _paraphrase_figures(onnx_path: Path) -> dict[str, Any]:
    """The cache's hit precision/recall on the authored paraphrase / non-paraphrase pairs (held out: no training
    or selection reads them) with all-MiniLM-L6-v2's own embedding and the served graph's, at the cache's default
    thresholds."""
    from transformers import BertModel

    from build_engines.paraphrase import cache_pair_scores, load_pairs, onnx_embedder
    from build_engines.paths import encoder_path

    reference_model: BertModel = BertModel.from_pretrained(str(encoder_path()), add_pooling_layer=False)
    reference_model.eval()  # type: ignore[no-untyped-call]
    tokenizer = load_tokenizer(compat=False)

    def original(texts: Sequence[str]) -> NDArray[np.float32]:
        rows = [e.ids for e in encode(tokenizer, texts)]
        out = []
        for start in range(0, len(rows), 16):
            ids, mask = pad_batch(rows[start : start + 16])
            out.append(sentence_embedding(reference_model, ids, mask).numpy())
        embeddings: NDArray[np.float32] = np.concatenate(out).astype(np.float32)
        return embeddings

    pairs = load_pairs()
    served = onnx_embedder(onnx_path, encoder_path() / "tokenizer.json")
    return {
        f"{threshold:.2f}": {
            "all-MiniLM-L6-v2": cache_pair_scores(original, pairs, threshold),
            "served": cache_pair_scores(served, pairs, threshold),
        }
        for threshold in CACHE_THRESHOLDS
    }


def _baseline_figures() -> dict[str, Any] | None:
    """The previous default build's held-out figures (reports/baseline.json), for the report's before/after."""
    path = REPORTS_DIR / "baseline.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None  # type: ignore[no-any-return]


def _embedding_check(onnx_path: Path, texts: Sequence[str]) -> dict[str, Any]:
    """ORT `embedding` vs a fresh HF BertModel (default attention) + sentence-transformers mean pooling."""
    from transformers import BertModel

    from build_engines.paths import encoder_path

    reference_model: BertModel = BertModel.from_pretrained(str(encoder_path()), add_pooling_layer=False)
    reference_model.eval()  # type: ignore[no-untyped-call]
    tokenizer = load_tokenizer(256)  # sentence-transformers' max_seq_length for this model
    rows = [e.ids for e in encode(tokenizer, texts)]
    sess = session(onnx_path)
    worst = 0.0
    for start in range(0, len(rows), 16):
        ids, mask = pad_batch(rows[start : start + 16])
        expected = sentence_embedding(reference_model, ids, mask).numpy()
        got = sess.run(["embedding"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        worst = max(worst, float(np.abs(expected.astype(np.float64) - got).max()))
    return {"max_abs_diff": worst, "texts": len(texts), "tolerance": 1e-5, "passed": worst <= 1e-5}


def _served_graph_check(served: Path, fp32: Path, rows: Sequence[Sequence[int]]) -> dict[str, float]:
    """What serving relies on, measured on the graph Triton serves: its embedding equals the fp32 graph's (only task
    tops are quantised), and a row's outputs do not depend on the rows batched with it (each row alone vs the
    same rows padded together in batches of 8)."""
    outputs = ["intent_probs", "jailbreak_probs", "pii_tag_probs", "embedding"]
    served_sess, fp32_sess = session(served), session(fp32)
    worst = {"embedding_vs_fp32": 0.0, "batch_vs_alone": 0.0}
    for start in range(0, len(rows), 8):
        chunk = rows[start : start + 8]
        ids, mask = pad_batch(chunk)
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        together = served_sess.run(outputs, feeds)
        reference = fp32_sess.run(["embedding"], feeds)[0]
        worst["embedding_vs_fp32"] = max(worst["embedding_vs_fp32"], float(np.abs(together[3] - reference).max()))
        for i, row in enumerate(chunk):
            one = np.asarray([row], dtype=np.int64)
            alone = served_sess.run(outputs, {"input_ids": one, "attention_mask": np.ones_like(one)})
            for a, b in zip(alone, together, strict=True):
                # every output is [batch, width]; a per-token row is compared over the row's own length
                diff = np.abs(a[0] - b[i][: a.shape[1]])
                worst["batch_vs_alone"] = max(worst["batch_vs_alone"], float(diff.max()))
    return worst


def _evaluate_all(
    onnx_path: Path,
    intent: DataSplits,
    jailbreak: DataSplits,
    pii: DataSplits,
    tags: Sequence[str],
    threshold: float,
) -> dict[str, Any]:
    sess = session(onnx_path)
    tokenizer = load_tokenizer()
    return {
        "intent": evaluate_intent(sess, tokenizer, intent.test, INTENT_LABELS),
        "jailbreak": evaluate_jailbreak(sess, tokenizer, jailbreak.test, threshold),
        "pii": evaluate_pii(sess, tokenizer, pii.test, tags),
        "pii_free_prompts": evaluate_pii_free(sess, tokenizer, intent.test, tags),
    }


def _validation_scores(
    onnx_path: Path,
    intent: DataSplits,
    jailbreak: DataSplits,
    pii: DataSplits,
    tags: Sequence[str],
    threshold: float,
) -> dict[str, float]:
    """Each task's headline score on its VALIDATION split (for choices; test figures are only reported)."""
    sess = session(onnx_path)
    tokenizer = load_tokenizer()
    return {
        "intent_macro_f1": float(evaluate_intent(sess, tokenizer, intent.val, INTENT_LABELS)["macro_f1"]),
        "jailbreak_f1": float(evaluate_jailbreak(sess, tokenizer, jailbreak.val, threshold)["at_threshold"]["f1"]),
        "pii_micro_f1": float(evaluate_pii(sess, tokenizer, pii.val, tags)["micro"]["f1"]),
    }


def _choose_quantization(
    config: BuildConfig,
    fp32: Path,
    int8: Path,
    intent: DataSplits,
    jailbreak: DataSplits,
    pii: DataSplits,
    tags: Sequence[str],
    threshold: float,
    with_ffn_down_fp32: Callable[[Sequence[str]], Path],
) -> dict[str, Any]:
    """Which task tops to serve in int8: ("auto") each task whose validation score stays within the tolerance of
    fp32 with every top quantised; a task that misses gets a second try with its feed-forward down-projections in
    fp32 (`with_ffn_down_fp32(tasks)` writes that graph); a task that misses both stays fp32 ("on": all fully int8,
    "off": none). A task's outputs depend only on the trunk and its own top, so each graph's per-task scores are
    those of any graph that quantises that top the same way."""
    before = _validation_scores(fp32, intent, jailbreak, pii, tags, threshold)
    after = _validation_scores(int8, intent, jailbreak, pii, tags, threshold)

    def within(scores: dict[str, float]) -> dict[str, bool]:
        return {task: before[key] - scores[key] <= config.quantize_tolerance for task, key in _SCORE_OF_TASK.items()}

    full_ok = within(after)
    retry: dict[str, float] = {}
    ffn_down_float: list[str] = []
    if config.quantize == "on":
        tasks = list(TASKS)
    elif config.quantize == "auto":
        tasks = [task for task in TASKS if full_ok[task]]
        missed = [task for task in TASKS if not full_ok[task]]
        if missed:
            scores = _validation_scores(with_ffn_down_fp32(missed), intent, jailbreak, pii, tags, threshold)
            retry_ok = within(scores)
            retry = {_SCORE_OF_TASK[task]: scores[_SCORE_OF_TASK[task]] for task in missed}
            ffn_down_float = [task for task in missed if retry_ok[task]]
            tasks += ffn_down_float
    else:
        tasks = []
    return {
        "mode": config.quantize,
        "tolerance": config.quantize_tolerance,
        "validation_fp32": before,
        "validation_int8": after,
        "within_tolerance": full_ok,
        "validation_int8_ffn_down_fp32": retry,
        "int8_tasks": [t for t in TASKS if t in tasks],
        "ffn_down_fp32_tasks": ffn_down_float,
        "serve_int8": bool(tasks),
    }


_SCORE_OF_TASK = {"intent": "intent_macro_f1", "jailbreak": "jailbreak_f1", "pii": "pii_micro_f1"}


def _quantized_parts(config: BuildConfig) -> tuple[str, ...]:
    """Module names whose weight MatMuls may be int8: the task tops, or the shared top (layers and heads)."""
    return ("top",) if config.design == "shared" else TASKS


def _mean_cosine(a: Path, b: Path, rows: Sequence[Sequence[int]]) -> float:
    """Mean cosine between two graphs' embeddings over token rows."""
    ea = np.stack(run_signals(session(a), rows, ["embedding"])["embedding"])
    eb = np.stack(run_signals(session(b), rows, ["embedding"])["embedding"])
    return float((ea * eb).sum(1).mean())


def _choose_shared_quantization(
    config: BuildConfig,
    fp32: Path,
    int8: Path,
    intent: DataSplits,
    jailbreak: DataSplits,
    pii: DataSplits,
    tags: Sequence[str],
    threshold: float,
    with_ffn_down_fp32: Callable[[Sequence[str]], Path],
) -> dict[str, Any]:
    """The shared top in int8 ("auto") when every task's validation score stays within the tolerance of fp32 AND
    the int8 embedding keeps the embedding's contract on validation prompts: a mean cosine to all-MiniLM-L6-v2's
    sentence embedding (the space the semantic cache and tool selection compare in) of at least
    `shared.min_embedding_cosine`, the floor the training's epoch selection holds too; else the same with the FFN
    down-projections in fp32; else fp32 ("on": int8 whatever; "off": fp32). The cosine to the fp32 graph is
    reported beside it."""
    texts = [r.text for r in intent.val + jailbreak.val]
    rows = [e.ids for e in encode(load_tokenizer(), texts)]
    before = _validation_scores(fp32, intent, jailbreak, pii, tags, threshold)

    def check(graph: Path) -> tuple[dict[str, float], float, bool]:
        scores = _validation_scores(graph, intent, jailbreak, pii, tags, threshold)
        cosine = _mean_cosine(fp32, graph, rows)
        reference = _embedding_fidelity(graph, texts)["cosine_mean"]
        scores["embedding_cosine_to_reference"] = reference
        ok = (
            all(before[k] - scores[k] <= config.quantize_tolerance for k in before)
            and reference >= config.shared.min_embedding_cosine
        )
        return scores, cosine, ok

    after, cosine, full_ok = check(int8)
    retry: dict[str, float] = {}
    ffn_down_float: list[str] = []
    serve = config.quantize == "on" or (config.quantize == "auto" and full_ok)
    if config.quantize == "auto" and not full_ok:
        retry_scores, retry_cosine, retry_ok = check(with_ffn_down_fp32(["top"]))
        retry = {**retry_scores, "embedding_cosine_to_fp32": retry_cosine}
        if retry_ok:
            serve, ffn_down_float = True, ["top"]
    return {
        "mode": config.quantize,
        "tolerance": config.quantize_tolerance,
        "validation_fp32": before,
        "validation_int8": {**after, "embedding_cosine_to_fp32": cosine},
        "within_tolerance": {"top": full_ok},
        "validation_int8_ffn_down_fp32": retry,
        "int8_tasks": ["top"] if serve else [],
        "ffn_down_fp32_tasks": ffn_down_float,
        "serve_int8": serve,
    }


def _calibration_rows(
    config: BuildConfig, intent: DataSplits, jailbreak: DataSplits, pii: DataSplits, per_task: int = 100
) -> list[list[int]]:
    """Token rows for the static int8 calibration: a seeded sample of each task's TRAINING split (validation and
    test never set a quantisation scale)."""
    rng = random.Random(config.seed)
    texts: list[str] = []
    for splits in (intent, jailbreak, pii):
        rows = list(splits.train)
        texts += [r.text for r in rng.sample(rows, min(per_task, len(rows)))]
    return [e.ids for e in encode(load_tokenizer(), texts)]


def _throughput(onnx_path: Path, texts: Sequence[str], batch_size: int = 32) -> float:
    """Sequences per second of in-process ORT over real texts (a quick figure for the design comparison)."""
    sess = session(onnx_path)
    rows = [e.ids for e in encode(load_tokenizer(), texts)]
    run_signals(sess, rows[:batch_size], ["intent_probs"])
    started = time.perf_counter()
    run_signals(
        sess,
        rows,
        ["intent_probs", "jailbreak_probs", "pii_tag_ids", "pii_tag_probs", "embedding"],
        batch_size=batch_size,
        desc="throughput",
    )
    return len(rows) / (time.perf_counter() - started)


def build(
    config: BuildConfig, *, force: bool = False, install: bool = True, presidio: bool = True, int8_check: bool = True
) -> BuildOutcome:
    """Build (or take from the cache) everything for `config`; `presidio`/`int8_check` add the baseline and the
    int8 graph's evaluation to the report."""
    started = time.perf_counter()
    key = key_for(config)
    out = build_dir(key)
    if is_complete(out) and not force:
        log.info("build %s is cached in %s", key, out)
        if install:
            install_from_cache(out)
            log.info("installed %s and the reports from the cache", MODEL_REPOSITORY_DIR)
        return BuildOutcome(key, out, True, time.perf_counter() - started)
    out.mkdir(parents=True, exist_ok=True)
    timings_threads = choose_threads()
    seed_everything(config.seed)
    timings: dict[str, float] = {"threads": timings_threads}

    t = time.perf_counter()
    intent, jailbreak, pii = load_splits(config)
    tags = bio_tags()
    timings["data_s"] = time.perf_counter() - t

    encoder = load_encoder()
    model: SignalsModel | SharedSignalsModel
    if config.design == "shared":
        shared_result, threshold, shared_info = _train_shared(encoder, config, intent, jailbreak, pii, tags, timings)
        model = SharedSignalsModel(encoder, shared_result.top)
    else:
        intent_result, intent_ablation = _train_intent(encoder, config, intent, timings)
        jailbreak_result, threshold = _train_jailbreak(encoder, config, jailbreak, timings)
        pii_result = _train_pii(encoder, config, pii, tags, timings)
        model = SignalsModel(encoder, intent_result.top, jailbreak_result.top, pii_result.top)

    t = time.perf_counter()
    onnx_path = export_signals(model, out / "model.onnx")
    sample_rows = [e.ids for e in encode(load_tokenizer(), [r.text for r in jailbreak.test[::7] + pii.test[::7]])]
    onnx_check = compare_with_torch(model, onnx_path, sample_rows, config.seed)
    check_texts = [r.text for r in (intent.test[::9] + jailbreak.test[::23])]
    embedding_check = (
        _embedding_fidelity(onnx_path, check_texts)
        if config.design == "shared"
        else _embedding_check(onnx_path, check_texts)
    )
    timings["export_s"] = time.perf_counter() - t

    t = time.perf_counter()
    results = _evaluate_all(onnx_path, intent, jailbreak, pii, tags, threshold)
    perf_texts = [r.text for r in intent.test[:96] + jailbreak.test[:: max(1, len(jailbreak.test) // 96)]]
    speed = {"fp32_seq_per_s": _throughput(onnx_path, perf_texts)}
    int8 = None
    quantization: dict[str, Any] = {"mode": config.quantize, "serve_int8": False}
    calibration: list[list[int]] = []
    if int8_check or config.quantize != "off":
        calibration = _calibration_rows(config, intent, jailbreak, pii)
        quantized = quantize_int8(onnx_path, out / "model.int8.onnx", calibration, _quantized_parts(config))
        int8 = _evaluate_all(quantized, intent, jailbreak, pii, tags, threshold)
        speed["int8_seq_per_s"] = _throughput(quantized, perf_texts)
        served_path = out / "model.served-int8.onnx"

        def quantize_tops(tasks: Sequence[str], ffn_down_float: Sequence[str]) -> Path:
            return quantize_int8(onnx_path, served_path, calibration, tasks, ffn_down_float=ffn_down_float)

        choose = _choose_shared_quantization if config.design == "shared" else _choose_quantization
        quantization = choose(
            config,
            onnx_path,
            quantized,
            intent,
            jailbreak,
            pii,
            tags,
            threshold,
            lambda tasks: quantize_tops(tasks, ffn_down_float=tasks),
        )
        chosen, keep = quantization["int8_tasks"], quantization["ffn_down_fp32_tasks"]
        if quantization["serve_int8"] and (set(chosen) != set(_quantized_parts(config)) or keep):
            # serve the tops as chosen; the report's int8 figures stay those of the all-tops graph
            quantize_tops(chosen, keep).replace(quantized)
            quantization["served_graph_note"] = (
                "model.int8.onnx quantises only int8_tasks, with fp32 FFN down-projections in ffn_down_fp32_tasks"
            )
        if quantization["serve_int8"]:
            quantization["served_graph_check"] = _served_graph_check(quantized, onnx_path, sample_rows[:48])
            if config.design == "shared":  # the cache embeds with the served graph: its held-out fidelity
                quantization["served_embedding"] = _embedding_fidelity(quantized, check_texts)
    timings["evaluate_s"] = time.perf_counter() - t
    baseline = presidio_baseline(pii.test) if presidio else None
    served_onnx = quantized if int8 is not None and quantization["serve_int8"] else onnx_path
    cache_pairs = _paraphrase_figures(served_onnx) if config.design == "shared" else None

    tokenizer = load_tokenizer(MAX_SEQ_LENGTH)
    tokenizer.save(str(out / "tokenizer.json"))
    serving_file = "model.int8.onnx" if quantization["serve_int8"] else "model.onnx"
    manifest = {
        "labels": {"intent": list(INTENT_LABELS), "jailbreak": list(JAILBREAK_LABELS), "pii": list(tags)},
        "max_seq_length": MAX_SEQ_LENGTH,
        "embedding_dim": 384,
        "build_key": key,
        "base_model": "all-MiniLM-L6-v2",
        "thresholds": {"jailbreak": threshold},
        "design": (
            {"shared": {"frozen_layers": config.shared.frozen_layers, "method": config.shared.method}}
            if config.design == "shared"
            else {
                t: {"branch_layer": getattr(config, t).branch_layer, "method": getattr(config, t).method} for t in TASKS
            }
        ),
        "serving": {"onnx_file": serving_file},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if config.design == "shared" and shared_result.lora:
        write_package(
            out / "package",
            top=shared_result.top,
            factors=shared_result.lora,
            scaling=shared_result.lora_scaling,
            frozen_layers=config.shared.frozen_layers,
            manifest=manifest,
            quantization=quantization,
            calibration=calibration if quantization["serve_int8"] else [],
            served_graph=out / serving_file,
            check_rows=sample_rows[:64],
        )
    timings["total_s"] = time.perf_counter() - started
    report = {
        "build_key": key,
        "config": config.to_dict(),
        "timings": timings,
        "data": {
            name: {
                "counts": d.counts(lambda r: r.label if isinstance(r, TextExample) else "sentences"),
                "by_source": d.counts(lambda r: r.source),
                "sources": [vars(s) for s in d.sources],
                "notes": d.notes,
            }
            for name, d in (("intent", intent), ("jailbreak", jailbreak), ("pii", pii))
        },
        "training": (
            _shared_training_report(shared_result, threshold, shared_info, results)
            if config.design == "shared"
            else {
                "intent": {
                    "history": intent_result.history,
                    "best_epoch": intent_result.best_epoch,
                    "weak_sources": intent_ablation,
                },
                "jailbreak": {
                    "history": jailbreak_result.history,
                    "best_epoch": jailbreak_result.best_epoch,
                    "threshold_from_validation": threshold,
                },
                "pii": {"history": pii_result.history, "best_epoch": pii_result.best_epoch},
            }
        ),
        "test": results,
        "presidio_analyzer": baseline,
        "onnx": {"torch_vs_ort": onnx_check, "embedding_vs_sentence_transformers": embedding_check},
        "speed": speed,
        "int8": int8,
        "quantization": quantization,
        "cache_pairs": cache_pairs,
        "baseline": _baseline_figures(),
    }
    save_json(report, out / "report.json")
    write_confusion_png(
        results["intent"]["confusion_matrix"],
        INTENT_LABELS,
        "intent (held-out test)",
        out / "intent_confusion.png",
    )
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (out / COMPLETE_MARKER).write_text(key + "\n", encoding="utf-8")
    if install:
        install_from_cache(out)
    log.info("build %s done in %.0f s", key, time.perf_counter() - started)
    return BuildOutcome(key, out, False, time.perf_counter() - started)


def evaluate_graph(config: BuildConfig, onnx_path: Path) -> dict[str, Any]:
    """Held-out figures of any `signals` graph (e.g. a re-quantised one), with the cached threshold."""
    key = key_for(config)
    manifest = json.loads((build_dir(key) / "manifest.json").read_text(encoding="utf-8"))
    intent, jailbreak, pii = load_splits(config)
    return _evaluate_all(
        onnx_path, intent, jailbreak, pii, manifest["labels"]["pii"], manifest["thresholds"]["jailbreak"]
    )
