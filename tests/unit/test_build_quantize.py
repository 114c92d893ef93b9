"""Static int8 quantisation of the `signals` graph touches the task tops only (the trunk, so the embedding, stays
fp32), and a row's outputs do not depend on the rows batched with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import BertConfig, BertModel

from build_engines.export_onnx import TRUNK_PREFIXES, export_signals, is_ffn_down, quantize_int8, session
from build_engines.heads import SignalsModel, TaskTop


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=8000, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64
    )
    config._attn_implementation = "eager"
    encoder = BertModel(config, add_pooling_layer=False).eval()
    model = SignalsModel(
        encoder,
        TaskTop(encoder, 2, 14, "sequence"),
        TaskTop(encoder, 2, 2, "sequence"),
        TaskTop(encoder, 1, 5, "token"),
    )
    with torch.no_grad():  # "fine-tune": tops that still equal the trunk would share its weights in the export
        for top in (model.intent, model.jailbreak, model.pii):
            for parameter in top.parameters():
                parameter.add_(0.01 * torch.randn_like(parameter))
    folder = tmp_path_factory.mktemp("quantize")
    fp32 = export_signals(model, folder / "model.onnx")
    return fp32, quantize_int8(fp32, folder / "model.int8.onnx", CALIBRATION)


CALIBRATION = [list(np.random.default_rng(i).integers(1, 8000, size=4 + i % 9)) for i in range(24)]


def _matmul_weights(path: Path) -> tuple[set[str], set[str]]:
    """(names of quantised MatMul nodes, names of float MatMul nodes)."""
    graph = onnx.load(str(path)).graph
    dequantised = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    quantised = {n.name for n in matmuls if n.input[1] in dequantised}
    plain = {n.name for n in matmuls if n.input[1] not in dequantised}
    return quantised, plain


def test_only_task_tops_are_quantised(graphs: tuple[Path, Path]) -> None:
    _, int8 = graphs
    quantised, plain = _matmul_weights(int8)
    assert quantised, "no MatMul was quantised"
    assert not any(name.startswith(TRUNK_PREFIXES) for name in quantised)
    trunk_float = [name for name in plain if name.startswith(TRUNK_PREFIXES)]
    assert trunk_float, "the trunk's MatMuls should stay float"


def test_embedding_is_unchanged_and_heads_stay_close(graphs: tuple[Path, Path]) -> None:
    fp32, int8 = graphs
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 8000, size=(3, 11)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[2, 7:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    outputs = ["embedding", "intent_probs"]
    (emb_a, intent_a), (emb_b, intent_b) = (session(p, threads=1).run(outputs, feeds) for p in (fp32, int8))
    assert np.abs(emb_a - emb_b).max() <= 1e-6
    assert np.abs(intent_a - intent_b).max() < 0.05


def test_a_subset_of_tops_leaves_the_other_tasks_exact(graphs: tuple[Path, Path], tmp_path: Path) -> None:
    fp32, _ = graphs
    partial = quantize_int8(fp32, tmp_path / "partial.onnx", CALIBRATION, tasks=["intent"])
    quantised, _ = _matmul_weights(partial)
    assert quantised and all(name.startswith("/intent/") for name in quantised)
    ids = np.random.default_rng(1).integers(1, 8000, size=(2, 9)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    outputs = ["jailbreak_probs", "pii_tag_probs", "embedding"]
    for a, b in zip(*(session(p, threads=1).run(outputs, feeds) for p in (fp32, partial)), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_row_scores_the_same_alone_and_in_a_padded_batch(graphs: tuple[Path, Path]) -> None:
    """Fixed (calibrated) activation scales: batch-mates and padding do not move a request's scores, which dynamic
    quantisation (scales computed per call) did."""
    _, int8 = graphs
    sess = session(int8, threads=1)
    short = np.random.default_rng(2).integers(1, 8000, size=(1, 6)).astype(np.int64)
    batch = np.zeros((2, 15), dtype=np.int64)
    batch[0, :6], batch[1] = short[0], 7999  # a longer batch-mate with other activations; row 0 is padded
    mask = (batch != 0).astype(np.int64)
    outputs = ["intent_probs", "jailbreak_probs", "pii_tag_probs"]
    alone = sess.run(outputs, {"input_ids": short, "attention_mask": np.ones_like(short)})
    together = sess.run(outputs, {"input_ids": batch, "attention_mask": mask})
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a[0], b[0][: a.shape[1]], atol=1e-5)  # token outputs: the row's own length


def test_ffn_down_projections_can_stay_float_for_one_task(graphs: tuple[Path, Path], tmp_path: Path) -> None:
    fp32, _ = graphs
    graph = quantize_int8(fp32, tmp_path / "mixed.onnx", CALIBRATION, ffn_down_float=["pii"])
    quantised, plain = _matmul_weights(graph)
    pii_down = {n for n in plain if n.startswith("/pii/") and is_ffn_down(n)}
    assert pii_down, "the PII top's FFN down-projections should stay float"
    assert not any(n.startswith("/pii/") and is_ffn_down(n) for n in quantised)
    assert any(n.startswith("/pii/") and not is_ffn_down(n) for n in quantised)
    assert any(n.startswith("/intent/") and is_ffn_down(n) for n in quantised)
