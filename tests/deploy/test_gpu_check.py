"""deploy/gpu_check.py on CPU (the same code runs on a GPU with --device cuda): its ONNX-to-torch interpreter equals
onnxruntime in FP32, its FP16 run passes the plan check for the FP16-safe export and catches the float32-minimum
mask's NaN, and its bundle stores the weights in FP16 and runs from the bundle alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx
import pytest
import torch

from build_engines import encoder
from build_engines.paths import encoder_path
from tests.unit.tiny_signals import tiny_graph

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import gpu_check  # noqa: E402

TOKENIZER = encoder_path() / "tokenizer.json"


@pytest.fixture(scope="module")
def plan_check() -> ModuleType:
    return gpu_check.load_plan_check()


@pytest.fixture(scope="module")
def batches(plan_check: ModuleType) -> list[Any]:
    prompts, cls, sep = gpu_check.tokenized_prompts(TOKENIZER, ROOT / "build_engines" / "plan_check_prompts.txt", 512)
    every = plan_check.validation_batches(prompts, cls, sep, max_sequence=512)
    small = [b for b in every if b.shape[0] * b.shape[1] <= 4096]  # CPU: every length, the batches that are cheap
    return small + [b for b in every if b.shape[0] == 64][:1]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("gpu_check")
    safe = tiny_graph(work / "safe.onnx", decisive=20.0)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(encoder, "MASKED_SCORE", float(torch.finfo(torch.float32).min))
        unsafe = tiny_graph(work / "unsafe.onnx", decisive=20.0)
    return {"safe": safe, "unsafe": unsafe}


def _check(plan_check: ModuleType, path: Path, batches: list[Any], half: bool) -> dict[str, Any]:
    reference = plan_check.run_all(gpu_check.onnxruntime_runner(path), batches)
    graph = gpu_check.TorchGraph(onnx.load(str(path)), "cpu", half=half)
    return gpu_check.check(plan_check, graph, batches, reference)


def test_fp32_interpreter_equals_onnxruntime(
    plan_check: ModuleType, batches: list[Any], graphs: dict[str, Path]
) -> None:
    report = _check(plan_check, graphs["safe"], batches, half=False)
    figures = report["figures"]
    assert report["passed"] and report["sequence_lengths"] == [1, 512] and 64 in report["batch_sizes"]
    assert figures["intent_top1_agreement"] == 1.0 and figures["pii_tag_agreement"] == 1.0
    assert figures["jailbreak_max_abs_diff"] < 1e-5 and figures["embedding_min_cosine"] > 1 - 1e-6


def test_fp16_passes_with_the_fp16_safe_mask(
    plan_check: ModuleType, batches: list[Any], graphs: dict[str, Path]
) -> None:
    report = _check(plan_check, graphs["safe"], batches, half=True)
    assert report["passed"], report["failures"]
    assert report["figures"]["jailbreak_max_abs_diff"] > 0, "the FP16 run computed in FP32"


def test_fp16_of_the_float32_minimum_mask_is_refused(
    plan_check: ModuleType, batches: list[Any], graphs: dict[str, Path]
) -> None:
    """The failure the FP16-safe export removes: -3.4e38 becomes -inf in FP16, 0 * -inf is NaN."""
    report = _check(plan_check, graphs["unsafe"], batches, half=True)
    assert not report["passed"]
    assert any("NaN/inf values in intent_probs" in f for f in report["failures"]), report["failures"]
    assert _check(plan_check, graphs["unsafe"], batches[:5], half=False)["passed"]  # FP32 is fine


def test_unknown_ops_are_named(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Celu", ["input_ids"], ["y"], name="c")], "g", [x], [y])
    )
    with pytest.raises(NotImplementedError, match="Celu"):
        gpu_check.TorchGraph(model, "cpu", half=False)


def test_bundle_stores_weights_fp16_and_runs_alone(graphs: dict[str, Path], tmp_path: Path) -> None:
    bundle = gpu_check.pack(graphs["safe"], TOKENIZER, tmp_path / "bundle")
    assert {p.name for p in bundle.iterdir()} == {
        gpu_check.MODEL_FILE,
        "tokenizer.json",
        "gpu_check.py",
        "plan_check.py",
        "plan_check_prompts.txt",
    }
    packed = onnx.load(str(bundle / gpu_check.MODEL_FILE))
    big = [i for i in packed.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert big and all(int(torch.tensor(list(i.dims)).prod()) >= gpu_check.SMALL_TENSOR for i in big)
    assert (bundle / gpu_check.MODEL_FILE).stat().st_size < 0.6 * graphs["safe"].stat().st_size
    # the bundle alone, elsewhere: no repository beside it
    alone = tmp_path / "elsewhere"
    shutil.copytree(bundle, alone)
    result = subprocess.run(
        [sys.executable, str(alone / "gpu_check.py"), "run", "--bundle", str(alone), "--device", "cpu",
         "--precisions", "fp16", "--max-sequence", "64", "--iterations", "1", "--batches", "1,2", "--lengths", "32",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    written = list((tmp_path / "out").glob("gpu_check_*_cpu*.json"))
    assert len(written) == 1 and "| fp16 | yes |" in written[0].with_suffix(".md").read_text()


def test_pack_refuses_weights_beyond_fp16() -> None:
    from onnx import helper, numpy_helper

    big = numpy_helper.from_array(torch.full((2048,), 1e6).numpy(), "w")
    model = helper.make_model(helper.make_graph([], "g", [], [], [big]))
    with pytest.raises(ValueError, match="beyond FP16"):
        gpu_check.store_weights_fp16(model)
