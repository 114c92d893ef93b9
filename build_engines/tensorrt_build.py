"""TensorRT engine builder for the `signals` ONNX graph, and the GPU model repository (NGC Triton image).

Runs where TensorRT exists (the `engine-builder` image of deploy/Dockerfile, based on `nvcr.io/nvidia/tensorrt`);
on machines without it, `build_engine` raises `TensorRTUnavailable` and only the configs can be written.

Precision: FP16 kernels over the fp32 graph (`model.onnx`) by default. INT8 only from a graph whose Q/DQ nodes carry
calibrated, TensorRT-compatible scales (signed int8, zero points 0: TensorRT's explicit quantisation); the build's
`model.int8.onnx` quantises activations to uint8 with zero points (onnxruntime's static QDQ) and is refused with a
message, rather than setting an INT8 flag that would change nothing.

Every optimisation profile covers the whole served range — batch 1..max_batch, sequence 1..max_sequence (512, the
router's truncation length) — and they differ only in the shape they are tuned for, so whichever profile Triton
picks for a request, the request fits.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from build_engines.repository import gpu_signals_config, render_config

__all__ = [
    "EngineSpec",
    "IncompatibleGraph",
    "TensorRTUnavailable",
    "build_engine",
    "check_int8_graph",
    "profile_shapes",
    "write_gpu_repository",
]

log = logging.getLogger(__name__)

Shape = tuple[int, int]
Profile = tuple[Shape, Shape, Shape]

ENGINE_FILE = "engine.json"
"""Written beside the plan: the spec and the profiles the plan was built with (read by tests and operators)."""


class TensorRTUnavailable(RuntimeError):
    """`import tensorrt` failed: build engines inside an NGC TensorRT/Triton container."""


class IncompatibleGraph(ValueError):
    """The ONNX graph cannot be built with the asked precision (e.g. INT8 without TensorRT-compatible Q/DQ)."""


@dataclass(frozen=True)
class EngineSpec:
    max_batch: int = 64
    max_sequence: int = 512
    opt_batch: int = 16
    opt_sequence: int = 64
    fp16: bool = True
    int8: bool = False
    workspace_gib: float = 4.0

    def __post_init__(self) -> None:
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(f"opt_batch {self.opt_batch} must be in 1..max_batch ({self.max_batch})")
        if not 1 <= self.opt_sequence <= self.max_sequence:
            raise ValueError(f"opt_sequence {self.opt_sequence} must be in 1..max_sequence ({self.max_sequence})")


def profile_shapes(spec: EngineSpec) -> list[Profile]:
    """(min, opt, max) [batch, sequence] per optimisation profile.

    Both cover [1, 1]..[max_batch, max_sequence]; the first is tuned for short chat turns at a typical batch, the
    second for long prompts at a smaller batch (TensorRT picks kernels per profile for its `opt` shape).
    """
    full: Shape = (spec.max_batch, spec.max_sequence)
    short: Shape = (spec.opt_batch, spec.opt_sequence)
    long: Shape = (max(1, spec.opt_batch // 4), max(spec.opt_sequence, min(256, spec.max_sequence)))
    profiles: list[Profile] = [((1, 1), short, full)]
    if long != short:
        profiles.append(((1, 1), long, full))
    return profiles


def check_int8_graph(onnx_path: Path) -> int:
    """Number of Q/DQ pairs in a graph TensorRT can build in INT8; raises `IncompatibleGraph` otherwise.

    TensorRT's explicit quantisation takes QuantizeLinear/DequantizeLinear with signed int8 and zero points of 0
    (symmetric scales). Without such nodes an INT8 flag has nothing to act on: there is no calibrator here.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    graph = model.graph
    initialisers = {i.name: i for i in graph.initializer}
    constants = {
        n.output[0]: a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"
    }
    quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    if not quantizers:
        raise IncompatibleGraph(f"{onnx_path.name} has no QuantizeLinear nodes: nothing to run in INT8")
    for node in quantizers:
        if len(node.input) < 3 or not node.input[2]:  # no zero point: ONNX quantises to uint8
            raise IncompatibleGraph(
                f"{onnx_path.name}: {node.name} has no zero point, so it quantises to uint8; "
                "TensorRT needs signed int8 with zero points 0"
            )
        tensor = initialisers.get(node.input[2]) or constants.get(node.input[2])
        if tensor is None:
            raise IncompatibleGraph(f"{onnx_path.name}: the zero point of {node.name} is not a constant")
        values = numpy_helper.to_array(tensor)
        if values.dtype != np.int8 or np.any(values != 0):
            raise IncompatibleGraph(
                f"{onnx_path.name}: {node.name} quantises to {values.dtype} with zero point(s) "
                f"{np.unique(values)[:4].tolist()}; TensorRT needs signed int8 with zero points 0 (symmetric). "
                "Re-quantise the graph symmetrically (e.g. NVIDIA ModelOpt) or build FP16 from model.onnx"
            )
    return len(quantizers)


def build_engine(onnx_path: Path, plan_path: Path, spec: EngineSpec = EngineSpec()) -> Path:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(
            "TensorRT is not installed here; run `python -m build_engines tensorrt` "
            "in an NGC TensorRT or Triton container on a GPU host (the engine-builder image of deploy/Dockerfile)"
        ) from e
    if spec.int8:
        log.info("%s: %d Q/DQ pairs, building with INT8 enabled", onnx_path.name, check_int8_graph(onnx_path))
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
    if spec.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if spec.int8:
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantisation: the graph's Q/DQ scales, checked above
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
    engine = {"source": onnx_path.name, "tensorrt": trt.__version__, "spec": asdict(spec)}
    engine["profiles"] = [list(map(list, p)) for p in profile_shapes(spec)]
    (plan_path.parent / ENGINE_FILE).write_text(json.dumps(engine, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s (%d MiB)", plan_path, plan_path.stat().st_size >> 20)
    return plan_path


def write_gpu_repository(
    repository: Path,
    num_intents: int,
    artefacts: Path | None = None,
    max_batch_size: int = 64,
    spec: EngineSpec | None = None,
) -> Path:
    """`<repository>/signals/config.pbtxt` (tensorrt_plan, KIND_GPU, dynamic batching, every profile listed).

    With `artefacts` (a build folder), tokenizer.json and manifest.json go beside the plan too, for the router.
    """
    spec = spec or EngineSpec(max_batch=max_batch_size, opt_batch=min(16, max_batch_size))
    if spec.max_batch != max_batch_size:
        raise ValueError(f"engine max batch {spec.max_batch} != config max_batch_size {max_batch_size}")
    model_dir = repository / "signals"
    model_dir.mkdir(parents=True, exist_ok=True)
    config = gpu_signals_config(num_intents, max_batch_size=max_batch_size)
    for group in config.instance_group:  # the instances may use every profile of the plan
        group.profile.extend(str(i) for i in range(len(profile_shapes(spec))))
    (model_dir / "config.pbtxt").write_text(render_config(config), encoding="utf-8")
    if artefacts is not None:
        version = model_dir / "1"
        version.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.json", "manifest.json"):
            shutil.copyfile(artefacts / name, version / name)
    return model_dir
