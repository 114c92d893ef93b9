"""The GPU model repository and the TensorRT builder, as far as they can be checked without TensorRT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from build_engines.__main__ import main as build_engines_main
from build_engines.repository import parse_config
from build_engines.tensorrt_build import EngineSpec, IncompatibleGraph, check_int8_graph, profile_shapes
from router_service.settings import parse_settings

ROOT = Path(__file__).resolve().parents[2]
GPU_CONFIG = ROOT / "deploy" / "triton-gpu" / "model_repository" / "signals" / "config.pbtxt"
ROUTER_MAX_SEQUENCE = 512  # the router truncates to the manifest's max_seq_length, 512 for MiniLM


def test_committed_gpu_config_is_what_the_builder_writes(tmp_path: Path) -> None:
    build_engines_main(["tensorrt", "--config-only", "--repository", str(tmp_path)])
    assert (tmp_path / "signals" / "config.pbtxt").read_text() == GPU_CONFIG.read_text(), (
        "regenerate: python -m build_engines tensorrt --config-only"
    )


def test_gpu_config_profiles_cover_every_batch_and_sequence_the_router_sends() -> None:
    config = parse_config(GPU_CONFIG.read_text())
    assert config.platform == "tensorrt_plan" and config.HasField("dynamic_batching")
    assert config.max_batch_size >= parse_settings([]).max_batch  # the router's rows per call fit one request
    spec = EngineSpec(max_batch=config.max_batch_size)
    profiles = profile_shapes(spec)
    listed = [int(p) for group in config.instance_group for p in group.profile]
    assert sorted(set(listed)) == list(range(len(profiles))), "the config must list every profile of the plan"
    for index in listed:
        minimum, optimum, maximum = profiles[index]
        assert minimum == (1, 1) and maximum == (config.max_batch_size, ROUTER_MAX_SEQUENCE)
        assert all(a <= b <= c for a, b, c in zip(minimum, optimum, maximum, strict=True))


def test_engine_spec_rejects_an_optimum_outside_the_range() -> None:
    with pytest.raises(ValueError, match="opt_sequence"):
        EngineSpec(max_sequence=128, opt_sequence=256)


def _qdq_graph(path: Path, zero_point: np.ndarray) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [
        numpy_helper.from_array(np.array(0.1, dtype=np.float32), "scale"),
        numpy_helper.from_array(zero_point, "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], name="q0"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], name="dq0"),
    ]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits)), str(path))
    return path


def test_int8_accepts_symmetric_signed_qdq(tmp_path: Path) -> None:
    assert check_int8_graph(_qdq_graph(tmp_path / "m.onnx", np.array(0, dtype=np.int8))) == 1


def test_int8_refuses_uint8_activations_with_zero_points(tmp_path: Path) -> None:
    with pytest.raises(IncompatibleGraph, match="signed int8"):
        check_int8_graph(_qdq_graph(tmp_path / "m.onnx", np.array(128, dtype=np.uint8)))


def test_int8_refuses_a_graph_without_qdq(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    onnx.save(
        helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])),
        str(tmp_path / "m.onnx"),
    )
    with pytest.raises(IncompatibleGraph, match="nothing to run in INT8"):
        check_int8_graph(tmp_path / "m.onnx")


def test_builder_names_the_missing_export(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"lacks model.onnx.*build_engines export"):
        build_engines_main(["tensorrt", "--artefacts", str(tmp_path), "--repository", str(tmp_path / "repo")])


def test_builder_refuses_profiles_shorter_than_the_routers_prompts(tmp_path: Path) -> None:
    for name in ("model.onnx", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "manifest.json").write_text(json.dumps({"max_seq_length": 512}))
    with pytest.raises(SystemExit, match="up to 512 tokens"):
        build_engines_main(["tensorrt", "--artefacts", str(tmp_path), "--max-sequence", "128", "--opt-sequence", "64"])


def test_builders_int8_graph_is_refused_with_a_reason() -> None:
    """The build's own model.int8.onnx (onnxruntime static QDQ, uint8 activations) is not TensorRT INT8."""
    from build_engines.cache import build_dir, is_complete
    from build_engines.config import BuildConfig
    from build_engines.pipeline import key_for

    directory = build_dir(key_for(BuildConfig()))
    if not is_complete(directory) or not (directory / "model.int8.onnx").exists():
        pytest.skip("no complete build with an int8 graph in the cache yet (make setup)")
    with pytest.raises(IncompatibleGraph):
        check_int8_graph(directory / "model.int8.onnx")


def test_export_writes_what_the_images_copy(tmp_path: Path) -> None:
    """`python -m build_engines export --output deploy/artefacts` (docs/deploy.md), into a scratch folder here."""
    import subprocess
    import sys

    from build_engines.cache import build_dir, is_complete
    from build_engines.config import BuildConfig
    from build_engines.pipeline import key_for

    if not is_complete(build_dir(key_for(BuildConfig()))):
        pytest.skip("no complete build in the cache yet (make setup)")
    out = tmp_path / "artefacts"
    result = subprocess.run(
        [sys.executable, "-m", "build_engines", "export", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY deploy/artefacts"):
            for source in line.split()[1:-1]:
                name = source.removeprefix("deploy/artefacts").strip("/")
                assert not name or (out / name).exists(), f"the Dockerfile copies {source}; export did not write it"
    assert (out / "model.onnx").exists(), "the engine builder needs the fp32 graph"
    manifest = json.loads((out / "manifest.json").read_text())
    assert int(manifest.get("max_seq_length", 512)) <= EngineSpec().max_sequence
