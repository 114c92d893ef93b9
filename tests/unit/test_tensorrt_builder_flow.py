"""`build_engine`'s control flow on CPU, with stand-ins for the two things only a GPU host has: the `tensorrt`
module (a builder that returns bytes) and Polygraphy's TensorRT runner (onnxruntime on a tiny graph, or a broken
profile). The real TensorRT path is exercised by tests/deploy/test_tensorrt_gpu.py where TensorRT exists."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from build_engines import tensorrt_build
from build_engines.paths import encoder_path
from build_engines.tensorrt_build import (
    ENGINE_FILE,
    REJECTED_FILE,
    EngineSpec,
    IncompatibleGraph,
    PlanRejected,
    TensorRTUnavailable,
    build_engine,
    onnxruntime_runner,
)
from tests.unit.tiny_signals import tiny_graph

SPEC = EngineSpec(max_batch=64, max_sequence=128, opt_sequence=64)


class _Layer:
    type = "NORMALIZATION"
    num_outputs = 1

    def __init__(self) -> None:
        self.precision: Any = None
        self.outputs: dict[int, Any] = {}

    def set_output_type(self, index: int, kind: Any) -> None:
        self.outputs[index] = kind


class _Network:
    num_inputs = 2
    num_layers = 1

    def __init__(self) -> None:
        self.layer = _Layer()

    def get_input(self, i: int) -> Any:
        return types.SimpleNamespace(name=("input_ids", "attention_mask")[i])

    def get_layer(self, i: int) -> _Layer:
        return self.layer


class _Cache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b"+"


class _Config:
    def __init__(self) -> None:
        self.flags: set[str] = set()
        self.profiles: list[Any] = []
        self.cache = _Cache(b"")

    def set_memory_pool_limit(self, *_: Any) -> None: ...

    def set_flag(self, flag: str) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile: Any) -> None:
        self.profiles.append(profile)

    def create_timing_cache(self, data: bytes) -> _Cache:
        return _Cache(bytes(data))

    def set_timing_cache(self, cache: _Cache, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return True

    def get_timing_cache(self) -> _Cache:
        return self.cache


class FakeTensorRT(types.ModuleType):
    """The parts of the TensorRT 10 Python API build_engine calls."""

    def __init__(self, version: str = "10.13.3.9") -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.builds = 0
        self.configs: list[_Config] = []
        fake = self

        class Builder:
            def __init__(self, logger: Any) -> None: ...

            def create_network(self, flags: int) -> _Network:
                return _Network()

            def create_builder_config(self) -> _Config:
                fake.configs.append(_Config())
                return fake.configs[-1]

            def create_optimization_profile(self) -> Any:
                return types.SimpleNamespace(set_shape=lambda *a: None)

            def build_serialized_network(self, network: Any, config: Any) -> bytes:
                fake.builds += 1
                return b"PLAN-%d" % fake.builds

        self.Builder = Builder
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
        self.OnnxParser = type(
            "OnnxParser", (), {"__init__": lambda self, network, logger: None, "parse_from_file": lambda self, p: True}
        )
        engine = types.SimpleNamespace(get_tensor_dtype=lambda name: "INT64")
        self.Runtime = type(
            "Runtime", (), {"__init__": lambda self, logger: None, "deserialize_cuda_engine": lambda self, plan: engine}
        )
        self.nptype = lambda kind: {"INT64": np.int64}[kind]
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", PREFER_PRECISION_CONSTRAINTS="PREFER")
        self.LayerType = types.SimpleNamespace(NORMALIZATION="NORMALIZATION")
        self.float32 = "float32"


class Profiles:
    """What each optimisation profile of the 'plan' answers: onnxruntime on `graph`, NaN for `broken` ones."""

    graph: Path
    broken: ClassVar[set[int]] = set()


class FakeRunner:
    def __init__(self, engine: Any, optimization_profile: int = 0) -> None:
        self.profile = optimization_profile
        self.run = onnxruntime_runner(Profiles.graph)

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def infer(self, feed: dict[str, Any]) -> dict[str, Any]:
        out = dict(self.run(feed["input_ids"], feed["attention_mask"]))
        if self.profile in Profiles.broken:
            out["jailbreak_probs"] = np.full_like(out["jailbreak_probs"], np.nan)
        return out


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeTensorRT:
    trt = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    polygraphy_trt = types.ModuleType("polygraphy.backend.trt")
    polygraphy_trt.TrtRunner = FakeRunner  # type: ignore[attr-defined]
    for name in ("polygraphy", "polygraphy.backend"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "polygraphy.backend.trt", polygraphy_trt)
    monkeypatch.setattr(tensorrt_build, "gpu_identity", lambda: "NVIDIA H100 80GB HBM3, 9.0")
    Profiles.graph = tiny_graph(tmp_path / "model.onnx", decisive=20.0)
    Profiles.broken = set()
    return trt


def _build(tmp_path: Path, **kwargs: Any) -> Path:
    plan = tmp_path / "repo" / "signals" / "1" / "model.plan"
    return build_engine(
        Profiles.graph, plan, SPEC, tokenizer_path=encoder_path() / "tokenizer.json", cache_dir=tmp_path / "cache",
        **kwargs,
    )  # fmt: skip


def test_a_plan_that_answers_as_onnxruntime_is_written_with_its_figures(fake_gpu: FakeTensorRT, tmp_path: Path) -> None:
    plan = _build(tmp_path)
    assert plan.read_bytes() == b"PLAN-1"
    engine = json.loads((plan.parent / ENGINE_FILE).read_text())
    assert engine["check"]["passed"] and set(engine["check"]["profiles"]) == {"0", "1"}
    profile = engine["check"]["profiles"]["0"]
    assert profile["batch_sizes"] == [1, 16, 64] and profile["sequence_lengths"] == [1, 128]
    assert profile["figures"]["intent_top1_agreement"] == 1.0
    assert engine["tensorrt"] == "10.13.3.9" and engine["gpu"].startswith("NVIDIA H100")
    config = fake_gpu.configs[0]
    assert {"FP16", "PREFER"} <= config.flags and len(config.profiles) == 2
    assert list((tmp_path / "cache").glob("timing-10.13.3.9-nvidia-h100-80gb-hbm3-9.0.cache"))
    assert (tmp_path / "cache" / "plans" / engine["key"] / "model.plan").read_bytes() == b"PLAN-1"


def test_the_same_graph_is_not_rebuilt_and_force_rebuilds(fake_gpu: FakeTensorRT, tmp_path: Path) -> None:
    plan = _build(tmp_path)
    _build(tmp_path)
    assert fake_gpu.builds == 1 and plan.read_bytes() == b"PLAN-1"
    (plan.parent / ENGINE_FILE).unlink()
    plan.unlink()  # a new pod: empty repository, the cache volume kept
    _build(tmp_path)
    assert fake_gpu.builds == 1 and plan.read_bytes() == b"PLAN-1"
    _build(tmp_path, force=True)
    assert fake_gpu.builds == 2 and plan.read_bytes() == b"PLAN-2"
    timing = next((tmp_path / "cache").glob("timing-*.cache"))
    assert timing.read_bytes() == b"++", "the second build did not start from the first one's timing cache"


def test_a_profile_answering_nan_is_refused_and_nothing_is_written(fake_gpu: FakeTensorRT, tmp_path: Path) -> None:
    Profiles.broken = {1}
    with pytest.raises(PlanRejected, match=r"profile 1: .*NaN/inf values in jailbreak_probs"):
        _build(tmp_path)
    repo = tmp_path / "repo" / "signals" / "1"
    assert not (repo / "model.plan").exists() and not (repo / ENGINE_FILE).exists()
    rejected = json.loads((repo / REJECTED_FILE).read_text())
    assert rejected["profiles"]["0"]["passed"] and not rejected["profiles"]["1"]["passed"]
    assert not list((tmp_path / "cache").glob("plans/*"))


def test_a_refused_plan_leaves_the_served_one_in_place(fake_gpu: FakeTensorRT, tmp_path: Path) -> None:
    plan = _build(tmp_path)
    Profiles.broken = {0}
    with pytest.raises(PlanRejected):
        _build(tmp_path, force=True)
    assert plan.read_bytes() == b"PLAN-1" and json.loads((plan.parent / ENGINE_FILE).read_text())["check"]["passed"]


def test_another_tensorrt_major_is_refused(
    fake_gpu: FakeTensorRT, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT("11.1.0"))
    with pytest.raises(TensorRTUnavailable, match=r"TensorRT 11\.1\.0 is not the 10\.x"):
        _build(tmp_path)


def test_an_fp16_build_of_the_float32_minimum_mask_is_refused(
    fake_gpu: FakeTensorRT, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch

    from build_engines import encoder

    monkeypatch.setattr(encoder, "MASKED_SCORE", float(torch.finfo(torch.float32).min))
    Profiles.graph = tiny_graph(tmp_path / "old.onnx")
    with pytest.raises(IncompatibleGraph, match="FP16 cannot represent"):
        _build(tmp_path)
    assert fake_gpu.builds == 0
