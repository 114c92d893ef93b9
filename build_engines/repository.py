"""The Triton model repository: config.pbtxt rendering (CPU python backend, GPU TensorRT), manifest, install.

Configs are built as `ModelConfig` protobufs and printed with protobuf's text format, so what we write is
exactly what Triton parses; `parse_config` reads one back for validation.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from build_engines.paths import PACKAGE_DIR

__all__ = [
    "MODEL_NAME",
    "ServingOptions",
    "cpu_signals_config",
    "gpu_signals_config",
    "install_repository",
    "output_specs",
    "parse_config",
    "render_config",
]

MODEL_NAME = "signals"
INPUT_NAMES = ("input_ids", "attention_mask")


def output_specs(num_intents: int) -> dict[str, tuple[int, mc.DataType.ValueType, list[int]]]:
    """Output name -> (index, dtype, dims after the batch dim), the contract of docs/internals.md."""
    return {
        "intent_probs": (0, mc.TYPE_FP32, [num_intents]),
        "jailbreak_probs": (1, mc.TYPE_FP32, [2]),
        "pii_tag_ids": (2, mc.TYPE_INT64, [-1]),
        "pii_tag_probs": (3, mc.TYPE_FP32, [-1]),
        "embedding": (4, mc.TYPE_FP32, [384]),
    }


@dataclass(frozen=True)
class ServingOptions:
    max_batch_size: int = 64
    max_queue_delay_us: int = 0
    """0: a batch is whatever queued while the instance was busy, so an idle server answers at once and a busy
    one still batches (measured in benchmarks/serving: the 2 ms delay of earlier builds only added latency)."""
    dynamic_batching: bool = True
    instances: int = 1
    intra_op_threads: int = 2
    warmup_sequence_length: int = 32
    onnx_file: str = "model.onnx"
    allow_spinning: bool = False
    """onnxruntime's spin-waiting intra-op threads: faster alone, but they starve Triton's threads on 2 cores."""
    ragged_batching: bool = True
    """Let the dynamic batcher join requests of different sequence lengths (the router's batches are each padded
    to their own longest row, so without it Triton runs them one by one); model.py pads them in length buckets."""
    bucket_call_tokens: int = 16
    """model.py cuts a batch of requests sorted by length into runs of similar length, one onnxruntime call each,
    when that saves more padded token-rows than this (the fixed cost of a call); 0: one call, padded to the longest.
    16 measured best of 16/64 on mixed lengths (benchmarks/serving; a 1-row call costs ~5 ms + ~0.4 ms a token on
    2 cores, i.e. ~14 token-rows); with 0 (one call, padded) ragged batching lost ~30% to equal-shapes-only there."""
    preferred_batch_sizes: tuple[int, ...] = ()
    """Batch sizes the dynamic batcher waits for (up to the queue delay) before it runs a smaller batch."""


def _io(config: mc.ModelConfig, num_intents: int, ragged: bool = False) -> None:
    for name in INPUT_NAMES:
        config.input.append(mc.ModelInput(name=name, data_type=mc.TYPE_INT64, dims=[-1], allow_ragged_batch=ragged))
    for name, (_, dtype, dims) in sorted(output_specs(num_intents).items(), key=lambda kv: kv[1][0]):
        config.output.append(mc.ModelOutput(name=name, data_type=dtype, dims=dims))


def _warmup(config: mc.ModelConfig, batch_sizes: tuple[int, ...], length: int) -> None:
    for batch in batch_sizes:
        sample = mc.ModelWarmup(name=f"batch{batch}_seq{length}", batch_size=batch, count=2)
        for name in INPUT_NAMES:
            sample.inputs[name].CopyFrom(mc.ModelWarmup.Input(data_type=mc.TYPE_INT64, dims=[length], zero_data=True))
        config.model_warmup.append(sample)


def cpu_signals_config(num_intents: int, options: ServingOptions = ServingOptions()) -> mc.ModelConfig:
    """python backend + onnxruntime on CPU (the Triton in nvidia-pytriton has only the python backend)."""
    config = mc.ModelConfig(name=MODEL_NAME, backend="python", max_batch_size=options.max_batch_size)
    _io(config, num_intents, options.ragged_batching)
    config.instance_group.append(mc.ModelInstanceGroup(count=options.instances, kind=mc.ModelInstanceGroup.KIND_CPU))
    if options.dynamic_batching:
        config.dynamic_batching.SetInParent()  # present even when every field keeps its default
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
        config.dynamic_batching.preferred_batch_size.extend(options.preferred_batch_sizes)
    config.parameters["intra_op_threads"].string_value = str(options.intra_op_threads)
    config.parameters["onnx_file"].string_value = options.onnx_file
    config.parameters["allow_spinning"].string_value = "1" if options.allow_spinning else "0"
    config.parameters["bucket_call_tokens"].string_value = str(options.bucket_call_tokens)
    _warmup(config, (1, min(16, options.max_batch_size)), options.warmup_sequence_length)
    return config


def gpu_signals_config(
    num_intents: int, max_batch_size: int = 64, instances: int = 1, max_queue_delay_us: int = 500
) -> mc.ModelConfig:
    """The same contract served from a TensorRT plan on GPU (NGC Triton image)."""
    config = mc.ModelConfig(
        name=MODEL_NAME,
        platform="tensorrt_plan",
        max_batch_size=max_batch_size,
        default_model_filename="model.plan",
    )
    _io(config, num_intents)
    config.instance_group.append(mc.ModelInstanceGroup(count=instances, kind=mc.ModelInstanceGroup.KIND_GPU))
    config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    _warmup(config, (1, min(16, max_batch_size)), 32)
    return config


def render_config(config: mc.ModelConfig) -> str:
    header = "# Generated by build_engines/repository.py (python -m build_engines); do not edit by hand.\n"
    return header + str(text_format.MessageToString(config))


def parse_config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def install_repository(
    artefacts: Path, repository: Path, manifest: dict[str, Any], options: ServingOptions = ServingOptions()
) -> Path:
    """Write `<repository>/signals/{config.pbtxt, 1/{model.py, <served graph>.onnx, tokenizer.json, manifest.json}}`"""
    model_dir = repository / MODEL_NAME
    version = model_dir / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PACKAGE_DIR / "triton_model.py", version / "model.py")
    for stale in version.glob("*.onnx"):  # a graph an earlier install served (fp32 vs int8 tops)
        stale.unlink()
    for name in (options.onnx_file, "tokenizer.json"):
        target = version / name
        target.unlink(missing_ok=True)
        shutil.copyfile(artefacts / name, target)
    (version / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    config = cpu_signals_config(len(manifest["labels"]["intent"]), options)
    (model_dir / "config.pbtxt").write_text(render_config(config), encoding="utf-8")
    return model_dir
