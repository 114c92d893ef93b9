"""The TensorRT builder's check of a plan against onnxruntime, on CPU: the comparison itself (pure), the inputs
it runs, the reuse key, and the whole check with onnxruntime standing in for the plan's profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from build_engines import plan_check
from build_engines.paths import encoder_path
from build_engines.plan_check import Agreement, Batch, Thresholds, compare_runs, rows_of_length, validation_batches
from build_engines.tensorrt_build import (
    ENGINE_FILE,
    EngineSpec,
    check_batches,
    check_plan,
    onnxruntime_runner,
    plan_key,
    reusable_plan,
)
from tests.unit.tiny_signals import tiny_graph

CLS, SEP = 101, 102


def _outputs(rows: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    intent = rng.dirichlet(np.full(14, 0.3), rows).astype(np.float32)
    jailbreak = rng.dirichlet([1.0, 1.0], rows).astype(np.float32)
    embedding = rng.normal(size=(rows, 384)).astype(np.float32)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    return {
        "intent_probs": intent,
        "jailbreak_probs": jailbreak,
        "pii_tag_ids": rng.integers(0, 33, (rows, width)).astype(np.int64),
        "pii_tag_probs": rng.random((rows, width)).astype(np.float32),
        "embedding": embedding,
    }


def _mask(rows: int, width: int) -> np.ndarray:
    mask = np.zeros((rows, width), np.int64)
    for i in range(rows):
        mask[i, : 1 + i % width] = 1
    return mask


def _copy(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in outputs.items()}


def _failures(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], mask: np.ndarray) -> list[str]:
    agreement = Agreement()
    agreement.add(reference, candidate, mask)
    return agreement.failures(Thresholds())


def test_identical_outputs_pass() -> None:
    ref = _outputs(200, 32)
    assert _failures(ref, _copy(ref), _mask(200, 32)) == []


def test_nan_anywhere_a_router_reads_is_refused() -> None:
    ref, mask = _outputs(200, 32), _mask(200, 32)
    for name in ("intent_probs", "jailbreak_probs", "embedding"):
        cand = _copy(ref)
        cand[name][7, 0] = np.nan
        failures = _failures(ref, cand, mask)
        assert any(f"NaN/inf values in {name}" in f for f in failures), (name, failures)
    cand = _copy(ref)
    cand["pii_tag_probs"][0, 0] = np.inf  # a real token (every row has at least one)
    assert any("pii_tag_probs" in f for f in _failures(ref, cand, mask))


def test_nan_jailbreak_scores_cannot_pass_the_threshold() -> None:
    """`NaN >= threshold` is False in the router, so NaN must fail here even if NaN counting were skipped."""
    ref, mask = _outputs(20, 8), _mask(20, 8)
    cand = _copy(ref)
    cand["jailbreak_probs"][:] = np.nan
    agreement = Agreement()
    agreement.add(ref, cand, mask)
    agreement.nonfinite.clear()
    assert any("jailbreak probability" in f for f in agreement.failures())


def test_values_at_padding_are_not_compared() -> None:
    ref, mask = _outputs(50, 32), _mask(50, 32)
    cand = _copy(ref)
    cand["pii_tag_ids"][~mask.astype(bool)] += 1
    cand["pii_tag_probs"][~mask.astype(bool)] = np.nan
    assert _failures(ref, cand, mask) == []


@pytest.mark.parametrize(("flipped", "passes"), [(1, True), (2, True), (3, False)])
def test_intent_top1_agreement_threshold(flipped: int, passes: bool) -> None:
    ref, mask = _outputs(200, 8), _mask(200, 8)
    cand = _copy(ref)
    for row in range(flipped):
        cand["intent_probs"][row] = np.roll(cand["intent_probs"][row], 1)
        assert cand["intent_probs"][row].argmax() != ref["intent_probs"][row].argmax()
    assert (_failures(ref, cand, mask) == []) is passes  # 198/200 = 0.99 passes, 197/200 fails


@pytest.mark.parametrize(("shift", "passes"), [(0.019, True), (0.021, False)])
def test_jailbreak_difference_threshold(shift: float, passes: bool) -> None:
    ref, mask = _outputs(40, 8), _mask(40, 8)
    ref["jailbreak_probs"][:] = [0.5, 0.5]
    cand = _copy(ref)
    cand["jailbreak_probs"][3] = [0.5 - shift, 0.5 + shift]
    assert (_failures(ref, cand, mask) == []) is passes


@pytest.mark.parametrize(("angle", "passes"), [(0.04, True), (0.05, False)])  # cos 0.9992 / 0.99875
def test_embedding_cosine_threshold(angle: float, passes: bool) -> None:
    ref, mask = _outputs(10, 8), _mask(10, 8)
    cand = _copy(ref)
    e = ref["embedding"][0].astype(np.float64)
    other = np.zeros_like(e)
    other[np.argmin(np.abs(e))] = 1.0
    other -= other.dot(e) * e
    other /= np.linalg.norm(other)
    cand["embedding"][0] = (np.cos(angle) * e + np.sin(angle) * other).astype(np.float32)
    assert (_failures(ref, cand, mask) == []) is passes


def test_pii_tag_agreement_counts_real_tokens_only() -> None:
    rows, width = 10, 100
    ref = _outputs(rows, width)
    mask = np.ones((rows, width), np.int64)
    cand = _copy(ref)
    cand["pii_tag_ids"][0, :10] += 1  # 10 of 1000 real tokens: 0.99, passes
    assert _failures(ref, cand, mask) == []
    cand["pii_tag_ids"][1, :1] += 1
    assert any("PII tag agreement" in f for f in _failures(ref, cand, mask))


def test_nothing_compared_is_a_failure() -> None:
    assert Agreement().failures() == ["nothing was compared"]


def test_rows_have_exact_lengths_of_real_tokens() -> None:
    prompts = [[CLS, 5, 6, 7, SEP], [CLS, 8, 9, SEP]]
    rows = rows_of_length(prompts, [1, 2, 3, 7, 20], CLS, SEP)
    assert [len(r) for r in rows] == [1, 2, 3, 7, 20]
    assert rows[0] == [CLS] and rows[1] == [CLS, SEP] and rows[2] == [CLS, 5, SEP]
    assert rows[3] == [CLS, 8, 9, 5, 6, 7, SEP]  # the second row starts at the second prompt
    assert all(t not in (CLS, SEP) for r in rows for t in r[1:-1])


def test_validation_batches_cover_lengths_1_to_512_at_batches_1_16_64() -> None:
    prompts = [[CLS, *range(1000 + i, 1000 + i + 5 + i % 30), SEP] for i in range(50)]
    batches = validation_batches(prompts, CLS, SEP, max_sequence=512)
    sizes = {b.shape[0] for b in batches}
    assert sizes == {1, 16, 64} | {len(prompts) % 16} - {0} or sizes >= {1, 16, 64}
    single = {int(b.attention_mask.sum()) for b in batches if b.shape[0] == 1}
    assert {1, 2, 64, 128, 256, 511, 512} <= single
    for size in (16, 64):
        mixed = [b for b in batches if b.shape[0] == size and b.shape[1] == 512]
        assert mixed, f"no batch of {size} reaches 512 tokens"
        lengths = mixed[0].attention_mask.sum(1)
        assert lengths.min() == 1 and lengths.max() == 512
    assert all(b.shape[0] in (1, 16, 64) for b in batches)
    assert max(b.shape[1] for b in batches) == 512


def test_check_batches_tokenize_the_committed_prompts() -> None:
    batches = check_batches(encoder_path() / "tokenizer.json", 512)
    lengths = sorted({int(n) for b in batches for n in b.attention_mask.sum(1)})
    assert lengths[0] == 1 and lengths[-1] == 512
    assert len([b for b in batches if b.shape[0] == 1]) > 50


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("graphs")
    return {"a": tiny_graph(work / "a.onnx", seed=0, decisive=20.0), "b": tiny_graph(work / "b.onnx", seed=1)}


def _small_batches() -> list[Batch]:
    return [b for b in check_batches(encoder_path() / "tokenizer.json", 512) if b.shape[1] <= 128][:24]


def test_check_plan_passes_a_profile_that_answers_as_onnxruntime(graphs: dict[str, Path]) -> None:
    batches = _small_batches()
    reference = plan_check.run_all(onnxruntime_runner(graphs["a"]), batches)
    runner = onnxruntime_runner(graphs["a"])
    report = check_plan(batches, reference, {0: runner, 1: runner})
    assert report["passed"] and report["failures"] == []
    figures = report["profiles"]["1"]["figures"]
    assert figures["intent_top1_agreement"] == 1.0 and figures["embedding_min_cosine"] > 0.99999
    json.dumps(report)  # goes into engine.json


def test_check_plan_refuses_a_profile_of_another_model(graphs: dict[str, Path]) -> None:
    batches = _small_batches()
    reference = plan_check.run_all(onnxruntime_runner(graphs["a"]), batches)
    report = check_plan(batches, reference, {0: onnxruntime_runner(graphs["a"]), 1: onnxruntime_runner(graphs["b"])})
    assert not report["passed"]
    assert report["failures"] and all(f.startswith("profile 1:") for f in report["failures"])
    assert any("embedding cosine" in f for f in report["failures"])


def test_compare_runs_reports_by_batch_size() -> None:
    batches = [Batch(np.ones((n, 4), np.int64), np.ones((n, 4), np.int64)) for n in (1, 16, 1)]
    outputs = [_outputs(b.shape[0], 4, seed=i) for i, b in enumerate(batches)]
    result = compare_runs(batches, outputs, [_copy(o) for o in outputs])
    assert result["passed"] and result["batch_sizes"] == [1, 16]
    assert result["by_batch_size"]["1"]["rows"] == 2 and result["figures"]["rows"] == 18
    with pytest.raises(ValueError, match="3 batches"):
        compare_runs(batches, outputs, outputs[:2])


def test_plan_key_changes_with_every_input(tmp_path: Path) -> None:
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"graph-1")
    spec = EngineSpec()
    key = plan_key(graph, "10.13.3", "NVIDIA H100 80GB HBM3, 9.0", spec)
    assert key == plan_key(graph, "10.13.3", "NVIDIA H100 80GB HBM3, 9.0", EngineSpec())
    assert key != plan_key(graph, "10.13.4", "NVIDIA H100 80GB HBM3, 9.0", spec)
    assert key != plan_key(graph, "10.13.3", "NVIDIA L4, 8.9", spec)
    assert key != plan_key(graph, "10.13.3", "NVIDIA H100 80GB HBM3, 9.0", EngineSpec(fp16=False))
    graph.write_bytes(b"graph-2")
    assert key != plan_key(graph, "10.13.3", "NVIDIA H100 80GB HBM3, 9.0", spec)


def _engine(directory: Path, **fields: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ENGINE_FILE).write_text(json.dumps(fields))
    return directory / "model.plan"


def test_a_plan_is_reused_only_for_its_key_and_a_passed_check(tmp_path: Path) -> None:
    plan = _engine(tmp_path / "1", key="k", check={"passed": True})
    assert not reusable_plan(plan, "k"), "no plan file yet"
    plan.write_bytes(b"plan")
    assert reusable_plan(plan, "k")
    assert not reusable_plan(plan, "other")
    _engine(tmp_path / "1", key="k", check={"passed": False})
    assert not reusable_plan(plan, "k")
    _engine(tmp_path / "1", key="k")  # written before plans were checked
    assert not reusable_plan(plan, "k")
    (tmp_path / "1" / ENGINE_FILE).write_text("{not json")
    assert not reusable_plan(plan, "k")


def test_a_checked_plan_is_taken_from_the_cache_folder(tmp_path: Path) -> None:
    """A new pod (empty repository) reuses the plan an earlier pod built on the same kind of GPU."""
    from build_engines.tensorrt_build import reuse_checked_plan

    plan = tmp_path / "repo" / "signals" / "1" / "model.plan"
    cache = tmp_path / "cache"
    assert reuse_checked_plan(plan, "k", cache) is None and reuse_checked_plan(plan, "k", None) is None
    stored = _engine(cache / "plans" / "k", key="k", check={"passed": True})
    stored.write_bytes(b"plan bytes")
    assert reuse_checked_plan(plan, "other", cache) is None
    assert reuse_checked_plan(plan, "k", cache) == "cache"
    assert plan.read_bytes() == b"plan bytes" and json.loads((plan.parent / ENGINE_FILE).read_text())["key"] == "k"
    assert reuse_checked_plan(plan, "k", cache) == "repository"
