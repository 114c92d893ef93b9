"""ONNX export of the `signals` graph (dynamic batch and sequence axes), numeric check, int8 task tops."""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from build_engines.encoder import pad_batch
from build_engines.heads import SignalsModel
from build_engines.shared import SharedSignalsModel

__all__ = [
    "INPUTS",
    "OPSET",
    "TRUNK_PREFIXES",
    "compare_with_torch",
    "export_signals",
    "is_ffn_down",
    "quantize_int8",
    "session",
]

INPUTS = ("input_ids", "attention_mask")
OPSET = 17


def export_signals(model: SignalsModel | SharedSignalsModel, path: Path) -> Path:
    model.eval()
    ids, mask = pad_batch([[101, 7592, 2088, 102], [101, 7592, 102]])
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    dynamic.update({name: {0: "batch"} for name in SignalsModel.OUTPUTS})
    dynamic["pii_tag_ids"] = dynamic["pii_tag_probs"] = {0: "batch", 1: "sequence"}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (ids, mask),
        str(path),
        input_names=list(INPUTS),
        output_names=list(SignalsModel.OUTPUTS),
        dynamic_axes=dynamic,
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    return path


def session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session; `threads` defaults to torch's current count (see `threads.choose_threads`)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads if threads is not None else torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare_with_torch(
    model: SignalsModel | SharedSignalsModel,
    onnx_path: Path,
    rows: Sequence[Sequence[int]],
    seed: int,
    batches: int = 8,
) -> dict[str, Any]:
    """Max abs difference per output between PyTorch and ORT on random batches of real token rows.

    Batch sizes and lengths vary, so the dynamic axes are exercised; pii tag ids compare as a mismatch rate.
    """
    rng = random.Random(seed)
    sess = session(onnx_path)
    worst: dict[str, float] = dict.fromkeys(SignalsModel.OUTPUTS, 0.0)
    shapes = []
    for _ in range(batches):
        batch = [rows[rng.randrange(len(rows))] for _ in range(rng.choice([1, 2, 5, 16, 33]))]
        ids, mask = pad_batch(batch)
        shapes.append(list(ids.shape))
        with torch.no_grad():
            expected = [t.numpy() for t in model(ids, mask)]
        got = sess.run(list(SignalsModel.OUTPUTS), {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        for name, e, g in zip(SignalsModel.OUTPUTS, expected, got, strict=True):
            real = mask.numpy().astype(bool) if e.ndim == 2 and name.startswith("pii") else np.ones(e.shape, bool)
            if name == "pii_tag_ids":
                diff = float((e[real] != g[real]).mean())
            else:
                diff = float(np.abs(e[real].astype(np.float64) - g[real]).max())
            worst[name] = max(worst[name], diff)
    return {"max_abs_diff": worst, "batch_shapes": shapes, "opset": OPSET}


# Node-name prefixes of the frozen trunk in the exported graph (module paths of `SignalsModel`).
TRUNK_PREFIXES = ("/trunk.", "/embeddings/")


def is_ffn_down(node_name: str) -> bool:
    """The feed-forward down-projection of a BERT layer (`.../layers.N/output/dense/MatMul` in the export)."""
    return "/output/dense/" in node_name and "/attention/" not in node_name


def quantize_int8(
    source: Path,
    target: Path,
    calibration: Sequence[Sequence[int]],
    tasks: Sequence[str] = ("intent", "jailbreak", "pii"),
    ffn_down_float: Sequence[str] = (),
) -> Path:
    """Static (calibrated) int8 quantisation of the weight MatMuls of the given TASK TOPS.

    Weights: int8, symmetric, per output channel. Activations: uint8 with FIXED scales calibrated (min/max) on
    `calibration`, token-id rows from the training splits, run one row at a time. Fixed scales make every row's
    result independent of the rows it is batched with: dynamic quantisation scales activations per call, so a
    request's scores moved (PII token probabilities by up to ~0.1) with its batch-mates and padding. The MatMul
    outputs stay float (ORT fuses each quantised MatMul into MatMulIntegerToFloat).

    `ffn_down_float`: tasks (among `tasks`) whose feed-forward down-projections stay fp32. Their input is the GELU
    output, whose long tail a single min/max scale resolves poorly; the build uses this for a task whose fully
    int8 top misses the validation tolerance.

    The trunk always stays fp32: its output is the sentence embedding, which must equal sentence-transformers'
    within 1e-5 (the semantic cache and tool selection compare it with vectors from other processes). Each task's
    outputs depend only on the trunk and its own top, so quantising one top leaves the others' outputs exact."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    if not any(n.name.startswith(TRUNK_PREFIXES) for n in matmuls):
        raise ValueError(f"no trunk nodes named {TRUNK_PREFIXES} in {source}: the export's node names changed")
    prefixes = tuple(f"/{task}/" for task in tasks)
    keep = tuple(f"/{task}/" for task in ffn_down_float)
    chosen = [
        n.name
        for n in matmuls
        if n.name.startswith(prefixes)
        and n.input[1] in weights
        and not (n.name.startswith(keep) and is_ffn_down(n.name))  # startswith(()) is False
    ]
    if not chosen:
        shutil.copyfile(source, target)
        return target
    if not calibration:
        raise ValueError("static int8 needs calibration rows")

    class _Rows(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._rows = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
            row = next(self._rows, None)
            if row is None:
                return None
            ids = np.asarray([row], dtype=np.int64)
            return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    quantize_static(
        str(source),
        str(target),
        _Rows(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=chosen,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={
            "WeightSymmetric": True,
            "ActivationSymmetric": False,
            "OpTypesToExcludeOutputQuantization": ["MatMul"],
            # A tensor the trunk shares with a top (the hidden state at the branch layer) gets its own Q/DQ pair
            # per quantised consumer; without this the trunk's next layer would read the dequantised copy too.
            "DedicatedQDQPair": True,
        },
    )
    return target
