from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from build_engines.data.labels import INTENT_LABELS, bio_tags
from build_engines.repository import (
    ServingOptions,
    cpu_signals_config,
    gpu_signals_config,
    install_repository,
    parse_config,
    render_config,
)
from build_engines.tensorrt_build import EngineSpec, TensorRTUnavailable, build_engine, profile_shapes

CONTRACT = {
    "intent_probs": (mc.TYPE_FP32, [14]),
    "jailbreak_probs": (mc.TYPE_FP32, [2]),
    "pii_tag_ids": (mc.TYPE_INT64, [-1]),
    "pii_tag_probs": (mc.TYPE_FP32, [-1]),
    "embedding": (mc.TYPE_FP32, [384]),
}


def _check_contract(config: mc.ModelConfig) -> None:
    assert config.name == "signals"
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("input_ids", mc.TYPE_INT64, [-1]),
        ("attention_mask", mc.TYPE_INT64, [-1]),
    ]
    assert {o.name: (o.data_type, list(o.dims)) for o in config.output} == CONTRACT
    assert config.HasField("dynamic_batching")
    assert len(config.model_warmup) >= 1


def test_cpu_config_round_trips_and_meets_the_contract() -> None:
    config = parse_config(render_config(cpu_signals_config(len(INTENT_LABELS))))
    _check_contract(config)
    assert config.backend == "python"
    assert config.max_batch_size == 64
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert config.parameters["intra_op_threads"].string_value == "2"
    # the router's batches are padded each to its own longest row: ragged batching lets Triton join them, and
    # model.py runs them in length buckets
    assert all(i.allow_ragged_batch for i in config.input)
    assert int(config.parameters["bucket_call_tokens"].string_value) > 0


def test_cpu_config_without_ragged_batching() -> None:
    config = parse_config(render_config(cpu_signals_config(14, ServingOptions(ragged_batching=False))))
    assert not any(i.allow_ragged_batch for i in config.input)
    gpu = parse_config(render_config(gpu_signals_config(14)))
    assert not any(i.allow_ragged_batch for i in gpu.input)  # a TensorRT plan takes one padded tensor


def test_cpu_config_without_dynamic_batching() -> None:
    config = parse_config(render_config(cpu_signals_config(14, ServingOptions(dynamic_batching=False))))
    assert not config.HasField("dynamic_batching")


def test_gpu_config_is_tensorrt_on_gpu() -> None:
    config = parse_config(render_config(gpu_signals_config(14)))
    _check_contract(config)
    assert config.platform == "tensorrt_plan"
    assert config.default_model_filename == "model.plan"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU


def test_generated_gpu_repository_config_is_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "deploy" / "triton-gpu" / "model_repository" / "signals"
    if not (path / "config.pbtxt").exists():
        pytest.skip("deploy/triton-gpu not generated yet (python -m build_engines tensorrt --config-only)")
    _check_contract(parse_config((path / "config.pbtxt").read_text()))


def test_install_repository_lays_out_the_contract(tmp_path: Path) -> None:
    artefacts = tmp_path / "build"
    artefacts.mkdir()
    (artefacts / "model.onnx").write_bytes(b"onnx")
    (artefacts / "tokenizer.json").write_text("{}")
    manifest = {
        "labels": {
            "intent": list(INTENT_LABELS),
            "jailbreak": ["benign", "jailbreak"],
            "pii": list(bio_tags()),
        },
        "max_seq_length": 512,
        "embedding_dim": 384,
        "build_key": "k",
        "base_model": "all-MiniLM-L6-v2",
    }
    model_dir = install_repository(artefacts, tmp_path / "repo", manifest)
    files = sorted(p.name for p in (model_dir / "1").iterdir())
    assert files == ["manifest.json", "model.onnx", "model.py", "tokenizer.json"]
    assert json.loads((model_dir / "1" / "manifest.json").read_text())["labels"]["pii"][0] == "O"
    _check_contract(parse_config((model_dir / "config.pbtxt").read_text()))


def test_engine_profiles_cover_batch_and_sequence() -> None:
    spec = EngineSpec(max_batch=64, max_sequence=512)
    profiles = profile_shapes(spec)
    assert profiles[-1][2] == (64, 512)
    for minimum, optimum, maximum in profiles:
        assert all(a <= b <= c for a, b, c in zip(minimum, optimum, maximum, strict=True))


def test_engine_build_needs_tensorrt(tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(TensorRTUnavailable):
            build_engine(tmp_path / "model.onnx", tmp_path / "model.plan")
        pytest.skip("TensorRT is not installed here (only in NGC containers); the builder raised its clear error")


def test_cpu_config_carries_the_batching_options() -> None:
    options = ServingOptions(preferred_batch_sizes=(8, 16), max_queue_delay_us=500, bucket_call_tokens=64, instances=2)
    config = parse_config(render_config(cpu_signals_config(14, options)))
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.parameters["bucket_call_tokens"].string_value == "64"
    assert config.instance_group[0].count == 2


def _triton_model(monkeypatch: pytest.MonkeyPatch) -> Any:
    """build_engines/triton_model.py, importable outside Triton (its backend utilities stubbed)."""
    import importlib
    import sys
    import types

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    monkeypatch.delitem(sys.modules, "build_engines.triton_model", raising=False)
    return importlib.import_module("build_engines.triton_model")


def test_length_buckets_cut_where_padding_costs_more_than_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    plan_runs = _triton_model(monkeypatch).plan_runs
    widths = [12, 20, 28, 36, 44, 52, 60, 64]
    assert plan_runs(widths, [1] * 8, 0) == [(0, 8)]  # 0: one call, padded to the longest
    assert plan_runs([12, 64], [1, 1], 64) == [(0, 2)]  # splitting saves 52 token-rows, a call costs 64
    assert plan_runs([12, 64], [1, 1], 20) == [(0, 1), (1, 2)]
    assert plan_runs([30, 30, 30], [4, 4, 4], 1) == [(0, 3)]  # equal lengths: never cut
    runs = plan_runs(widths, [2] * 8, 64)
    assert runs[0][0] == 0 and runs[-1][1] == 8 and all(a[1] == b[0] for a, b in itertools.pairwise(runs))

    def cost(cuts: list[tuple[int, int]]) -> int:
        return sum(64 + 2 * (end - start) * widths[end - 1] for start, end in cuts)

    assert cost(runs) < cost([(0, 8)])
    assert cost(runs) <= min(cost([(0, k), (k, 8)]) for k in range(1, 8))


def test_requests_without_pii_run_apart_when_the_branch_costs_more_than_a_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    module = _triton_model(monkeypatch)
    model = module.TritonPythonModel()
    model.without_pii, model.call_tokens = object(), 16

    def item(index: int, width: int, wanted: tuple[str, ...]) -> Any:
        ids = np.ones((1, width), np.int64)
        return module._Item(index, ids, ids, frozenset(wanted))

    full, lean = item(0, 40, ("embedding", "pii_tag_ids")), item(1, 40, ("embedding",))
    model.pii_share = 0.3  # a PII branch of its own (40 token-rows x 0.3 = 12 < 16 < 80 x 0.3 = 24)
    assert model._groups([full, lean]) == [[full, lean]]
    lean2 = item(2, 40, ("intent_probs",))
    assert model._groups([full, lean, lean2]) == [[full], [lean, lean2]]
    model.pii_share = 0.01  # a PII head on a shared trunk: little to save
    assert model._groups([full, lean, lean2]) == [[full, lean, lean2]]
    assert model._groups([]) == []
