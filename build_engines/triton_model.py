"""Triton python-backend model `signals`: every routing signal of a batch in one onnxruntime call.

Installed as `model_repository/signals/1/model.py` by `python -m build_engines install-repo`. Triton hands
`execute` a LIST of requests (the dynamic batcher's batch); their sequence lengths may differ, so rows are
padded to the longest, run as one session call, and split back (per-token outputs cut to each request's
length).

A batch in which no request asks for the PII outputs runs a second session: the same graph cut to the other
outputs (`onnx.utils.Extractor`), without the PII branch's layers. onnxruntime computes every node of a graph
whatever outputs a call fetches, so only a graph without those nodes saves their time (~30% of the pass).
"""

from __future__ import annotations

import json
import logging
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
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.outputs = [o["name"] for o in config["output"]]
        self.without_pii_outputs = [o for o in self.outputs if o not in PII_OUTPUTS]
        self.without_pii = _pruned_session(model_file, self.without_pii_outputs, options)

    def _check(self, request: Any) -> tuple[NDArray[Any], NDArray[Any]]:
        ids, mask = (pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in INPUTS)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"input_ids {ids.shape} and attention_mask {mask.shape} must be equal [batch, seq]")
        if ids.shape[1] == 0:
            raise ValueError("empty sequence: send at least the [CLS] and [SEP] tokens")
        return ids.astype(np.int64, copy=False), mask.astype(np.int64, copy=False)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        valid: list[tuple[int, NDArray[Any], NDArray[Any]]] = []
        for i, request in enumerate(requests):
            try:
                ids, mask = self._check(request)
                valid.append((i, ids, mask))
            except ValueError as e:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e)))
        if valid:
            width = max(ids.shape[1] for _, ids, _ in valid)
            rows = sum(ids.shape[0] for _, ids, _ in valid)
            all_ids = np.zeros((rows, width), dtype=np.int64)
            all_mask = np.zeros((rows, width), dtype=np.int64)
            row = 0
            for _, ids, mask in valid:
                all_ids[row : row + ids.shape[0], : ids.shape[1]] = ids
                all_mask[row : row + ids.shape[0], : ids.shape[1]] = mask
                row += ids.shape[0]
            session, names = self.session, self.outputs
            wanted = {name for i, _, _ in valid for name in requests[i].requested_output_names()}
            if self.without_pii is not None and not wanted & PII_OUTPUTS:
                session, names = self.without_pii, self.without_pii_outputs
            results = dict(
                zip(names, session.run(names, {"input_ids": all_ids, "attention_mask": all_mask}), strict=True)
            )
            row = 0
            for i, ids, _ in valid:
                n, length = ids.shape
                tensors = []
                for name in names:
                    value = results[name][row : row + n]
                    if name in TOKEN_OUTPUTS:
                        value = value[:, :length]
                    tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(value)))
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                row += n
        return responses

    def finalize(self) -> None:
        self.session = None
        self.without_pii = None


def _pruned_session(model_file: Path, outputs: list[str], options: ort.SessionOptions) -> ort.InferenceSession | None:
    """A session over the graph cut to `outputs`, warmed once; None (with a log line) when it cannot be built,
    and then every batch runs the whole graph."""
    try:
        import onnx
        from onnx.utils import Extractor

        graph = Extractor(onnx.load(str(model_file))).extract_model(list(INPUTS), outputs)
        session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        row = np.array([[101, 102]], dtype=np.int64)
        session.run(outputs, {"input_ids": row, "attention_mask": np.ones_like(row)})
    except Exception as e:  # an optimisation only: never fail the model load over it
        log.warning("no PII-free graph (%r): every batch runs the whole graph", e)
        return None
    return session
