"""Triton python-backend model `signals`: every routing signal of a batch in as few onnxruntime calls as pay.

Installed as `model_repository/signals/1/model.py` by `python -m build_engines install-repo`. Triton hands
`execute` a LIST of requests (the dynamic batcher's batch). With ragged batching on (the default config) their
sequence lengths differ: the requests are sorted by length and cut into runs of similar length, each padded to
its own longest row and run as one session call, when that saves more padded tokens than a call costs (the
`bucket_call_tokens` parameter: the fixed cost of one call in padded token-rows; 0 pads the whole batch to its
longest row, one call). Results are handed back as views of the session's outputs (per-token outputs cut to
each request's length), and each request gets only the outputs it asked for.

A run in which no request asks for the PII outputs uses a second session: the same graph cut to the other
outputs (`onnx.utils.Extractor`), without the PII branch's layers. onnxruntime computes every node of a graph
whatever outputs a call fetches, so only a graph without those nodes saves their time (~30% of the pass). With
buckets on, the requests of a batch that need no PII are run apart from the others when the PII branch's share of
their padded token-rows (the share of the graph's nodes only it uses) is more than a call costs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from numpy.typing import NDArray

INPUTS = ("input_ids", "attention_mask")
TOKEN_OUTPUTS = ("pii_tag_ids", "pii_tag_probs")
PII_OUTPUTS = frozenset(TOKEN_OUTPUTS)

log = logging.getLogger(__name__)


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    return str(config.get("parameters", {}).get(key, {}).get("string_value", default))


@dataclass
class _Item:
    index: int  # position in the execute() list
    ids: NDArray[np.int64]
    mask: NDArray[np.int64]
    wanted: frozenset[str]

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.ids.shape[1])


def plan_runs(widths: list[int], rows: list[int], call_tokens: int) -> list[tuple[int, int]]:
    """Cut items sorted by width (ascending) into contiguous runs [start, end) that minimise the padded
    token-rows computed plus `call_tokens` per run (exact, by dynamic programming over the cut points)."""
    n = len(widths)
    if n <= 1 or call_tokens <= 0 or widths[0] == widths[-1]:
        return [(0, n)]
    best = [0] + [0] * n  # best[k]: cost of the first k items
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        cost, total_rows, start_best = -1, 0, 0
        for start in range(end - 1, -1, -1):
            total_rows += rows[start]
            c = best[start] + call_tokens + total_rows * widths[end - 1]
            if cost < 0 or c < cost:
                cost, start_best = c, start
        best[end], cut[end] = cost, start_best
    runs = []
    end = n
    while end > 0:
        runs.append((cut[end], end))
        end = cut[end]
    return runs[::-1]


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = int(_parameter(config, "intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = True
        # Spin-waiting intra-op threads starve Triton's own gRPC and scheduler threads on small CPU hosts.
        options.add_session_config_entry("session.intra_op.allow_spinning", _parameter(config, "allow_spinning", "0"))
        model_file = version_dir / _parameter(config, "onnx_file", "model.onnx")
        self.call_tokens = int(_parameter(config, "bucket_call_tokens", "0"))
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.outputs = [o["name"] for o in config["output"]]
        self.without_pii_outputs = [o for o in self.outputs if o not in PII_OUTPUTS]
        self.without_pii, self.pii_share = _pruned_session(model_file, self.without_pii_outputs, options)

    def _item(self, index: int, request: Any) -> _Item:
        ids, mask = (pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in INPUTS)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"input_ids {ids.shape} and attention_mask {mask.shape} must be equal [batch, seq]")
        if ids.shape[1] == 0:
            raise ValueError("empty sequence: send at least the [CLS] and [SEP] tokens")
        wanted = frozenset(request.requested_output_names()) or frozenset(self.outputs)
        return _Item(index, ids.astype(np.int64, copy=False), mask.astype(np.int64, copy=False), wanted)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        items: list[_Item] = []
        for i, request in enumerate(requests):
            try:
                items.append(self._item(i, request))
            except ValueError as e:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e)))
        for group in self._groups(items):
            group.sort(key=lambda item: item.width)
            for start, end in plan_runs([it.width for it in group], [it.rows for it in group], self.call_tokens):
                self._run(group[start:end], responses)
        return responses

    def _groups(self, items: list[_Item]) -> list[list[_Item]]:
        """The requests that need no PII apart from the others (they then run the graph without the PII branch)
        when that saves more than a call costs; with buckets off, all together."""
        lean = [it for it in items if not it.wanted & PII_OUTPUTS]
        full = [it for it in items if it.wanted & PII_OUTPUTS]
        if not lean or not full or self.without_pii is None or self.call_tokens <= 0:
            return [items] if items else []
        saved = self.pii_share * sum(it.rows * it.width for it in lean)
        return [full, lean] if saved > self.call_tokens else [items]

    def _run(self, items: list[_Item], responses: list[Any]) -> None:
        """One session call over `items` (sorted by width), padded to the longest; a response per item."""
        if len(items) == 1:  # one request: its own tensors, no padded copy
            all_ids, all_mask = items[0].ids, items[0].mask
        else:
            width = items[-1].width
            total = sum(it.rows for it in items)
            all_ids = np.zeros((total, width), dtype=np.int64)
            all_mask = np.zeros((total, width), dtype=np.int64)
            row = 0
            for it in items:
                all_ids[row : row + it.rows, : it.width] = it.ids
                all_mask[row : row + it.rows, : it.width] = it.mask
                row += it.rows
        session, names = self.session, self.outputs
        if self.without_pii is not None and not any(it.wanted & PII_OUTPUTS for it in items):
            session, names = self.without_pii, self.without_pii_outputs
        results = dict(zip(names, session.run(names, {"input_ids": all_ids, "attention_mask": all_mask}), strict=True))
        row = 0
        for it in items:
            tensors = []
            for name in names:
                if name not in it.wanted:  # Triton would drop it: do not copy it out
                    continue
                value = results[name][row : row + it.rows]
                if name in PII_OUTPUTS:
                    value = value[:, : it.width]
                tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(value)))  # a view unless cut
            responses[it.index] = pb_utils.InferenceResponse(output_tensors=tensors)
            row += it.rows

    def finalize(self) -> None:
        self.session = None
        self.without_pii = None


def _pruned_session(
    model_file: Path, outputs: list[str], options: ort.SessionOptions
) -> tuple[ort.InferenceSession | None, float]:
    """A session over the graph cut to `outputs`, warmed once, and the share of the whole graph's nodes it leaves
    out (a proxy of the time it saves: the layers are alike; 0.30 for a PII branch of 4 of 14 layer passes, ~0.01
    for a PII head on a shared trunk); None (with a log line) when it cannot be built, and then every batch runs the
    whole graph."""
    try:
        import onnx
        from onnx.utils import Extractor

        whole = onnx.load(str(model_file))
        graph = Extractor(whole).extract_model(list(INPUTS), outputs)
        share = 1.0 - len(graph.graph.node) / max(1, len(whole.graph.node))
        session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        row = np.array([[101, 102]], dtype=np.int64)
        session.run(outputs, {"input_ids": row, "attention_mask": np.ones_like(row)})
    except Exception as e:  # an optimisation only: never fail the model load over it
        log.warning("no PII-free graph (%r): every batch runs the whole graph", e)
        return None, 0.0
    return session, share
