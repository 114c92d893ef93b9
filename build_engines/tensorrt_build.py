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

A plan is served only once it answers as onnxruntime does: before it is written, every profile of it runs the
prompts of `plan_check_prompts.txt` (lengths 1..512, batches 1/16/64, see `plan_check`) beside onnxruntime on the
same graph, and a plan with NaN/inf or disagreement is refused (`PlanRejected`); the figures go into `engine.json`.
An FP16 build is refused before it starts when the graph holds a constant FP16 cannot represent.

The plan is rebuilt only when the graph, the TensorRT version, the GPU or the spec changed (`engine.json` keeps the
key), with a timing cache kept beside the repository, and replaced atomically (a running Triton keeps the file it
opened). TensorRT is pinned to the major version of the NGC release (`TENSORRT_MAJOR`): TensorRT 11 removed
`BuilderFlag.FP16`, and a plan loads only in the TensorRT that built it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from build_engines import plan_check
from build_engines.repository import gpu_signals_config, render_config

__all__ = [
    "PROMPTS_FILE",
    "TENSORRT_MAJOR",
    "EngineSpec",
    "IncompatibleGraph",
    "PlanRejected",
    "TensorRTUnavailable",
    "build_engine",
    "check_batches",
    "check_int8_graph",
    "check_plan",
    "fp16_unsafe_constants",
    "onnxruntime_runner",
    "plan_key",
    "profile_shapes",
    "reusable_plan",
    "reuse_checked_plan",
    "write_gpu_repository",
]

log = logging.getLogger(__name__)

Shape = tuple[int, int]
Profile = tuple[Shape, Shape, Shape]

ENGINE_FILE = "engine.json"
"""Written beside the plan: the key, spec, profiles and GPU the plan was built for, and its check against
onnxruntime (read by the builder's next run, tests and operators)."""

REJECTED_FILE = "engine.rejected.json"
"""The check of the last plan that was refused (not written), with what it missed."""

TENSORRT_MAJOR = 10
"""The TensorRT major version of the NGC release in deploy/Dockerfile (`NGC_TAG`); the builder refuses another."""

PROMPTS_FILE = Path(__file__).with_name("plan_check_prompts.txt")

FP16_MAX = 65504.0


class TensorRTUnavailable(RuntimeError):
    """`import tensorrt` failed: build engines inside an NGC TensorRT/Triton container."""


class IncompatibleGraph(ValueError):
    """The ONNX graph cannot be built with the asked precision (e.g. INT8 without TensorRT-compatible Q/DQ)."""


class PlanRejected(RuntimeError):
    """The plan returned NaN/inf or disagreed with onnxruntime; it was not written."""


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


def fp16_unsafe_constants(onnx_path: Path) -> list[tuple[str, float]]:
    """Float constants and initialisers holding a value FP16 cannot represent (|x| > 65504, inf, NaN).

    Under `BuilderFlag.FP16` such a constant becomes +-inf; an attention mask of -3.4e38 times 0 is then NaN for
    every real token. Returns (tensor name, worst value) per offending tensor."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    tensors = [(i.name, i) for i in graph.initializer]
    tensors += [
        (n.output[0], a.t) for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"
    ]
    found = []
    for name, tensor in tensors:
        if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            continue
        values = numpy_helper.to_array(tensor).astype(np.float64).ravel()
        bad = values[~np.isfinite(values) | (np.abs(values) > FP16_MAX)]
        if bad.size:
            found.append((name, float(bad[np.argmax(np.abs(np.nan_to_num(bad, nan=np.inf)))])))
    return found


def check_batches(tokenizer_path: Path, max_sequence: int, prompts_path: Path = PROMPTS_FILE) -> list[plan_check.Batch]:
    """The plan check's inputs: `plan_check_prompts.txt` tokenized by the served tokenizer (`tokenizer.json`)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_sequence)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls is None or sep is None:
        raise ValueError(f"{tokenizer_path} has no [CLS]/[SEP] tokens")
    texts = [
        line.replace("\\n", "\n")
        for line in prompts_path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    rows = [list(e.ids) for e in tokenizer.encode_batch(texts)]
    return plan_check.validation_batches(rows, cls, sep, max_sequence=max_sequence)


def onnxruntime_runner(onnx_path: Path) -> plan_check.Runner:
    """The reference: the same graph in onnxruntime on CPU, float32."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(ids: Any, mask: Any) -> dict[str, Any]:
        return dict(zip(names, session.run(names, {"input_ids": ids, "attention_mask": mask}), strict=True))

    return run


def check_plan(
    batches: list[plan_check.Batch],
    reference: list[plan_check.Outputs],
    profiles: dict[int, plan_check.Runner],
    thresholds: plan_check.Thresholds = plan_check.Thresholds(),
) -> dict[str, Any]:
    """Every profile's answers against the reference; `failures` lists what each profile missed."""
    report: dict[str, Any] = {"profiles": {}, "failures": []}
    for index, runner in sorted(profiles.items()):
        result = plan_check.compare_runs(batches, reference, plan_check.run_all(runner, batches), thresholds)
        report["profiles"][str(index)] = result
        report["failures"] += [f"profile {index}: {failure}" for failure in result["failures"]]
    report["passed"] = not report["failures"]
    return report


def gpu_identity() -> str | None:
    """`name, compute capability` of GPU 0 from nvidia-smi (the NVIDIA Container Toolkit mounts it); None when
    unknown: then a plan is never reused, since a plan runs only on the GPU model it was built for."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader", "--id=0"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def plan_key(onnx_path: Path, tensorrt_version: str, gpu: str, spec: EngineSpec) -> str:
    """What a plan depends on: the graph's bytes, the TensorRT version, the GPU model and the build spec."""
    digest = hashlib.sha256()
    with onnx_path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(json.dumps([tensorrt_version, gpu, asdict(spec)], sort_keys=True).encode())
    return digest.hexdigest()


def reusable_plan(plan_path: Path, key: str) -> bool:
    """A plan for this key is already there, and its check passed."""
    engine_file = plan_path.parent / ENGINE_FILE
    if not plan_path.is_file() or not engine_file.is_file():
        return False
    try:
        engine = json.loads(engine_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(engine.get("key") == key and engine.get("check", {}).get("passed") is True)


def reuse_checked_plan(plan_path: Path, key: str, cache_dir: Path | None) -> str | None:
    """Where a checked plan for `key` was found: "repository" (already at `plan_path`), "cache" (copied from
    `cache_dir/plans/<key>/` to `plan_path`, with its engine.json), or None: it must be built."""
    if reusable_plan(plan_path, key):
        return "repository"
    if cache_dir is None:
        return None
    stored = cache_dir / "plans" / key / plan_path.name
    if not reusable_plan(stored, key):
        return None
    _install(plan_path, stored.read_bytes(), (stored.parent / ENGINE_FILE).read_bytes())
    return "cache"


def _install(plan_path: Path, plan: bytes, engine_json: bytes) -> None:
    """The plan, then its engine.json. The old engine.json goes first: a run stopped in between leaves a plan
    without one, which is rebuilt, never a plan under another plan's key."""
    (plan_path.parent / ENGINE_FILE).unlink(missing_ok=True)
    _write_atomically(plan_path, plan)
    _write_atomically(plan_path.parent / ENGINE_FILE, engine_json)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write beside `path`, then rename over it: a Triton that has the old file open keeps reading the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _prefer_fp32_normalisation(trt: Any, network: Any, config: Any) -> int:
    """Ask for FP32 in the layer normalisations (TensorRT's advice for FP16 transformers); a preference, so the
    build never fails on it. Returns how many layers were marked."""
    marked = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            marked += 1
    if marked:
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    return marked


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    spec: EngineSpec = EngineSpec(),
    tokenizer_path: Path | None = None,
    cache_dir: Path | None = None,
    force: bool = False,
) -> Path:
    """Build, check against onnxruntime and write `plan_path` with `engine.json` beside it.

    `tokenizer_path` (default: `tokenizer.json` beside the graph) tokenizes the check's prompts. `cache_dir` keeps
    the timing cache and a copy of every checked plan (default: none kept). A checked plan for the same key, in the
    repository or in `cache_dir`, is used instead of a new build unless `force`."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(
            "TensorRT is not installed here; run `python3 -m build_engines tensorrt` "
            "in an NGC TensorRT or Triton container on a GPU host (the engine-builder image of deploy/Dockerfile)"
        ) from e
    version = str(trt.__version__)
    if int(version.split(".")[0]) != TENSORRT_MAJOR:
        raise TensorRTUnavailable(
            f"TensorRT {version} is not the {TENSORRT_MAJOR}.x of the NGC release this repository pins "
            "(deploy/Dockerfile NGC_TAG); Triton loads a plan only in the TensorRT that built it"
        )
    if spec.fp16 and (unsafe := fp16_unsafe_constants(onnx_path)):
        listed = ", ".join(f"{name} ({value:.3g})" for name, value in unsafe[:5])
        raise IncompatibleGraph(
            f"{onnx_path.name} holds constants FP16 cannot represent: {listed}; they become inf under FP16 "
            "(an attention mask of -3.4e38 gives NaN). Re-export it (build_engines.encoder.MASKED_SCORE) or use --fp32"
        )
    if spec.int8:
        log.info("%s: %d Q/DQ pairs, building with INT8 enabled", onnx_path.name, check_int8_graph(onnx_path))
    gpu = gpu_identity()
    key = plan_key(onnx_path, version, gpu or "unknown", spec)
    if not force and gpu is not None and (found := reuse_checked_plan(plan_path, key, cache_dir)):
        log.info("a checked plan of this graph for TensorRT %s on %s was in the %s; kept", version, gpu, found)
        return plan_path
    batches = check_batches(tokenizer_path or onnx_path.with_name("tokenizer.json"), spec.max_sequence)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only mode of TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_gib * (1 << 30)))
    if spec.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        log.info("%d normalisation layers kept in FP32", _prefer_fp32_normalisation(trt, network, config))
    if spec.int8:
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantisation: the graph's Q/DQ scales, checked above
    for minimum, optimum, maximum in profile_shapes(spec):
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            profile.set_shape(network.get_input(i).name, minimum, optimum, maximum)
        config.add_optimization_profile(profile)
    timing_file = cache_dir / f"timing-{_slug(version)}-{_slug(gpu or 'unknown')}.cache" if cache_dir else None
    cached = timing_file.read_bytes() if timing_file is not None and timing_file.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cached), False)
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the log above)")
    build_s = time.monotonic() - started
    if timing_file is not None:
        _write_atomically(timing_file, bytes(config.get_timing_cache().serialize()))
    plan = bytes(serialized)

    started = time.monotonic()
    report = _check_serialized(trt, logger, plan, onnx_path, batches, len(profile_shapes(spec)))
    report["seconds"] = round(time.monotonic() - started, 1)
    if not report["passed"]:  # the figures stay beside the (old, if any) plan for the operator; Triton ignores them
        _write_atomically(plan_path.parent / REJECTED_FILE, (json.dumps(report, indent=2) + "\n").encode())
        raise PlanRejected(
            f"the TensorRT plan disagrees with onnxruntime and was not written: {'; '.join(report['failures'])}"
        )
    engine = {
        "key": key,
        "source": onnx_path.name,
        "tensorrt": version,
        "gpu": gpu,
        "spec": asdict(spec),
        "profiles": [list(map(list, p)) for p in profile_shapes(spec)],
        "build_seconds": round(build_s, 1),
        "timing_cache": str(timing_file) if timing_file is not None else None,
        "check": report,
    }
    engine_json = (json.dumps(engine, indent=2) + "\n").encode()
    _install(plan_path, plan, engine_json)
    if cache_dir is not None:  # for the next pod or container on this kind of GPU
        _install(cache_dir / "plans" / key / plan_path.name, plan, engine_json)
    log.info("wrote %s (%d MiB), checked on %d batches per profile", plan_path, len(plan) >> 20, len(batches))
    return plan_path


def _check_serialized(
    trt: Any, logger: Any, plan: bytes, onnx_path: Path, batches: list[plan_check.Batch], profiles: int
) -> dict[str, Any]:
    """Run every profile of the plan with Polygraphy's TensorRT runner (NVIDIA's; it manages the CUDA buffers)."""
    from polygraphy.backend.trt import TrtRunner

    reference = plan_check.run_all(onnxruntime_runner(onnx_path), batches)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise RuntimeError("TensorRT could not load the plan it just built")
    # the plan's own input types (int64 as exported; TensorRT may narrow them): Polygraphy checks them
    types = {name: trt.nptype(engine.get_tensor_dtype(name)) for name in ("input_ids", "attention_mask")}
    runners: dict[int, plan_check.Runner] = {}
    active = []
    try:
        for index in range(profiles):
            runner = TrtRunner(engine, optimization_profile=index)
            runner.activate()
            active.append(runner)

            def run(ids: Any, mask: Any, runner: Any = runner) -> dict[str, Any]:
                feed = {
                    "input_ids": ids.astype(types["input_ids"]),
                    "attention_mask": mask.astype(types["attention_mask"]),
                }
                return {name: _host(value) for name, value in runner.infer(feed).items()}

            runners[index] = run
        return check_plan(batches, reference, runners)
    finally:
        for runner in active:
            runner.deactivate()


def _host(value: Any) -> Any:
    import numpy as np

    return np.array(value, copy=True)


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
