"""TensorRT engine builder for the `signals` ONNX graph, and the GPU model repository (NGC Triton image).

Runs where TensorRT exists (e.g. `nvcr.io/nvidia/tensorrt` or the Triton NGC image); on machines without it,
`build_engine` raises `TensorRTUnavailable` and only the configs can be written.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from build_engines.repository import gpu_signals_config, render_config

__all__ = ["EngineSpec", "TensorRTUnavailable", "build_engine", "profile_shapes", "write_gpu_repository"]

log = logging.getLogger(__name__)


class TensorRTUnavailable(RuntimeError):
    """`import tensorrt` failed: build engines inside an NGC TensorRT/Triton container."""


@dataclass(frozen=True)
class EngineSpec:
    max_batch: int = 64
    max_sequence: int = 512
    opt_batch: int = 16
    opt_sequence: int = 64
    fp16: bool = True
    int8: bool = False
    workspace_gib: float = 4.0


def profile_shapes(spec: EngineSpec) -> list[tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
    """(min, opt, max) [batch, sequence] per optimisation profile: short chat turns, and up to the max.

    Two profiles keep kernels tuned for the common short case without giving up long prompts.
    """
    short = min(128, spec.max_sequence)
    return [
        ((1, 1), (spec.opt_batch, min(spec.opt_sequence, short)), (spec.max_batch, short)),
        (
            (1, 1),
            (max(1, spec.opt_batch // 4), min(256, spec.max_sequence)),
            (spec.max_batch, spec.max_sequence),
        ),
    ]


def build_engine(onnx_path: Path, plan_path: Path, spec: EngineSpec = EngineSpec()) -> Path:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(
            "TensorRT is not installed here; run `python -m build_engines tensorrt` "
            "in an NGC TensorRT or Triton container on a GPU host"
        ) from e
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit by default since TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_gib * (1 << 30)))
    if spec.fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if spec.int8:
        # Without a calibrator, INT8 needs Q/DQ nodes in the graph; TensorRT keeps other layers in FP16/FP32.
        config.set_flag(trt.BuilderFlag.INT8)
    for minimum, optimum, maximum in profile_shapes(spec):
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            profile.set_shape(network.get_input(i).name, minimum, optimum, maximum)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    log.info("wrote %s (%d MiB)", plan_path, plan_path.stat().st_size >> 20)
    return plan_path


def write_gpu_repository(
    repository: Path, num_intents: int, artefacts: Path | None = None, max_batch_size: int = 64
) -> Path:
    """`<repository>/signals/config.pbtxt` (tensorrt_plan, KIND_GPU, dynamic batching).

    With `artefacts` (a build folder), tokenizer.json and manifest.json go beside the plan too, for the router.
    """
    model_dir = repository / "signals"
    model_dir.mkdir(parents=True, exist_ok=True)
    config = gpu_signals_config(num_intents, max_batch_size=max_batch_size)
    (model_dir / "config.pbtxt").write_text(render_config(config), encoding="utf-8")
    if artefacts is not None:
        version = model_dir / "1"
        version.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.json", "manifest.json"):
            shutil.copyfile(artefacts / name, version / name)
    return model_dir
