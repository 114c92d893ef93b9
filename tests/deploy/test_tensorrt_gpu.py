"""The TensorRT plan build itself, where TensorRT and a GPU exist (the engine-builder image on a GPU host; skipped
elsewhere): a plan of a small graph is built, checked against onnxruntime, written with its figures, then reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from build_engines.paths import encoder_path
from build_engines.tensorrt_build import ENGINE_FILE, EngineSpec, build_engine, gpu_identity
from tests.unit.tiny_signals import tiny_graph

pytestmark = pytest.mark.gpu


def test_plan_is_checked_written_and_reused(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (NGC TensorRT image on a GPU host)")
    pytest.importorskip("polygraphy", reason="polygraphy is not installed (deploy/requirements-engine.txt)")
    if gpu_identity() is None:
        pytest.skip("no GPU (nvidia-smi) here")
    graph = tiny_graph(tmp_path / "model.onnx", decisive=20.0)
    plan = tmp_path / "repo" / "signals" / "1" / "model.plan"
    spec = EngineSpec(max_batch=64, max_sequence=512)
    build_engine(graph, plan, spec, tokenizer_path=encoder_path() / "tokenizer.json", cache_dir=tmp_path / "cache")
    engine = json.loads((plan.parent / ENGINE_FILE).read_text())
    assert engine["check"]["passed"], engine["check"]["failures"]
    for profile in engine["check"]["profiles"].values():
        assert profile["figures"]["nonfinite_values"] == {} and profile["batch_sizes"] == [1, 16, 64]
        assert profile["sequence_lengths"] == [1, 512]
    written = plan.stat().st_mtime_ns
    build_engine(graph, plan, spec, tokenizer_path=encoder_path() / "tokenizer.json", cache_dir=tmp_path / "cache")
    assert plan.stat().st_mtime_ns == written, "the same graph on the same GPU and TensorRT was rebuilt"
    assert any((tmp_path / "cache").glob("timing-*.cache"))
