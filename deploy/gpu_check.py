"""Check the served `signals` graph on a GPU machine that has only torch, onnx, onnxruntime and tokenizers.

No TensorRT, no Triton, no Docker, no network: the ONNX graph (the one TensorRT compiles) is run on the GPU by a
small ONNX-to-torch interpreter, in FP32 and in FP16 (every float constant and weight cast to half, as a TensorRT
FP16 build does), and compared with onnxruntime on CPU (float32) on the plan check's prompts with its thresholds
(build_engines/plan_check.py: NaN/inf, intent top-1 >= 99%, jailbreak within 0.02, embedding cosine >= 0.999, PII
tags >= 99%). Then latency and sequences/s by batch (1, 8, 32, 128) and length (32, 128, 512), FP32 and FP16.

    # where the model is (the repository, after `make setup` / `python -m build_engines export`):
    python3 deploy/gpu_check.py pack --onnx deploy/artefacts/model.onnx --tokenizer deploy/artefacts/tokenizer.json \\
        --out gpu-bundle                       # weights stored FP16 (about 45 MB), the prompts, this script
    # on the GPU machine (exit status 1 when a check fails):
    python3 gpu-bundle/gpu_check.py run --bundle gpu-bundle --out benchmarks/results/gpu

The bundle's weights are FP16-rounded; the reference and both GPU runs use the same rounded weights, so the check
measures the precision of the computation, not of the storage. Small tensors (the attention-mask constant among
them) are kept exactly. The latencies are those of an eager PyTorch interpreter of the graph (one kernel launch per
ONNX node, no fusion): an upper bound for what a TensorRT plan of the same graph does on that GPU, not its figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

HERE = Path(__file__).resolve().parent
BENCH_BATCHES = (1, 8, 32, 128)
BENCH_LENGTHS = (32, 128, 512)
SMALL_TENSOR = 1024  # elements: tensors below this stay float32 in the bundle (constants, LayerNorm eps, masks)
MODEL_FILE = "model.fp16-weights.onnx"


def load_plan_check(bundle: Path | None = None) -> ModuleType:
    """build_engines/plan_check.py (numpy only), from the bundle or from the repository this script sits in."""
    for candidate in (bundle, HERE, HERE.parent / "build_engines"):
        if candidate is not None and (candidate / "plan_check.py").is_file():
            spec = importlib.util.spec_from_file_location("plan_check", candidate / "plan_check.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules["plan_check"] = module  # dataclasses resolve their module by name
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError("plan_check.py is neither in the bundle nor in build_engines/ beside deploy/")


# --- the bundle: weights stored FP16 -------------------------------------------------------------------------------


def store_weights_fp16(model: Any) -> Any:
    """The same graph with every float32 initialiser of SMALL_TENSOR elements or more stored as float16 and cast
    back to float32 by a Cast node of the same output name (half the size; small constants stay exact)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if init.data_type == onnx.TensorProto.FLOAT and array.size >= SMALL_TENSOR:
            if np.abs(array).max(initial=0.0) > 65504:
                raise ValueError(f"{init.name} holds values beyond FP16's range")
            kept.append(numpy_helper.from_array(array.astype(np.float16), f"{init.name}__fp16"))
            casts.append(helper.make_node("Cast", [f"{init.name}__fp16"], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return model


def pack(onnx_path: Path, tokenizer: Path, out: Path) -> Path:
    import onnx

    out.mkdir(parents=True, exist_ok=True)
    model = store_weights_fp16(onnx.load(str(onnx_path)))
    onnx.checker.check_model(model)
    onnx.save(model, str(out / MODEL_FILE))
    shutil.copyfile(tokenizer, out / "tokenizer.json")
    for source in (HERE / "gpu_check.py", HERE.parent / "build_engines" / "plan_check.py"):
        shutil.copyfile(source, out / source.name)
    shutil.copyfile(HERE.parent / "build_engines" / "plan_check_prompts.txt", out / "plan_check_prompts.txt")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"bundle {out}: {size / 1e6:.1f} MB ({MODEL_FILE} {(out / MODEL_FILE).stat().st_size / 1e6:.1f} MB)")
    return out


# --- the ONNX graph in torch -------------------------------------------------------------------------------------


class TorchGraph:
    """The ONNX graph's nodes, run in order with torch ops on `device`. `half`: every float tensor (weights,
    constants, and what a Cast to float produces) is float16, as in a TensorRT FP16 build."""

    def __init__(self, model: Any, device: str, half: bool) -> None:
        import torch
        from onnx import numpy_helper

        self.torch = torch
        self.device = torch.device(device)
        self.float = torch.float16 if half else torch.float32
        self.nodes = list(model.graph.node)
        self.outputs = [o.name for o in model.graph.output]
        self.constants: dict[str, Any] = {}
        for init in model.graph.initializer:
            self.constants[init.name] = self._tensor(numpy_helper.to_array(init))
        for node in self.nodes:
            if node.op_type == "Constant":
                self.constants[node.output[0]] = self._tensor(numpy_helper.to_array(_attr(node, "value")))
        self.nodes = [n for n in self.nodes if n.op_type != "Constant"]
        for node in self.nodes:
            if node.op_type not in OPS:
                raise NotImplementedError(f"ONNX op {node.op_type} ({node.name}) has no torch rule in gpu_check.py")

    def _tensor(self, array: NDArray[Any]) -> Any:
        tensor = self.torch.from_numpy(np.array(array, copy=True)).to(self.device)
        return tensor.to(self.float) if tensor.is_floating_point() else tensor

    def __call__(self, input_ids: NDArray[Any], attention_mask: NDArray[Any]) -> dict[str, NDArray[Any]]:
        return {k: v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy() for k, v in self.run(
            self.torch.from_numpy(input_ids).to(self.device), self.torch.from_numpy(attention_mask).to(self.device)
        ).items()}  # fmt: skip

    def run(self, input_ids: Any, attention_mask: Any) -> dict[str, Any]:
        values = dict(self.constants)
        values["input_ids"], values["attention_mask"] = input_ids, attention_mask
        with self.torch.inference_mode():
            for node in self.nodes:
                inputs = [values[name] if name else None for name in node.input]
                result = OPS[node.op_type](self, node, *inputs)
                for name, value in zip(node.output, result if isinstance(result, tuple) else (result,), strict=False):
                    values[name] = value
        return {name: values[name] for name in self.outputs}


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _ints(tensor: Any) -> list[int]:
    return [int(v) for v in tensor.reshape(-1).tolist()]


def _reshape(g: TorchGraph, node: Any, x: Any, shape: Any) -> Any:
    target = _ints(shape)
    target = [x.shape[i] if v == 0 and not _attr(node, "allowzero", 0) else v for i, v in enumerate(target)]
    return x.reshape(target)


def _slice(g: TorchGraph, node: Any, x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    index = [slice(None)] * x.dim()
    axis_list = _ints(axes) if axes is not None else list(range(len(_ints(starts))))
    step_list = _ints(steps) if steps is not None else [1] * len(axis_list)
    for axis, start, end, step in zip(axis_list, _ints(starts), _ints(ends), step_list, strict=True):
        if step != 1:
            raise NotImplementedError("Slice with a step other than 1")
        size = x.shape[axis]
        start = max(0, min(size, start + size if start < 0 else start))
        end = max(0, min(size, end + size if end < 0 else end))
        index[axis] = slice(start, end)
    return x[tuple(index)]


def _cast(g: TorchGraph, node: Any, x: Any) -> Any:
    from onnx import TensorProto

    to = _attr(node, "to")
    types = {
        TensorProto.FLOAT: g.float,  # "float" is the network's precision: half in an FP16 run
        TensorProto.FLOAT16: g.float,
        TensorProto.DOUBLE: g.float,
        TensorProto.INT64: g.torch.int64,
        TensorProto.INT32: g.torch.int32,
        TensorProto.BOOL: g.torch.bool,
    }
    return x.to(types[to])


def _reduce(kind: str) -> Callable[..., Any]:
    def rule(g: TorchGraph, node: Any, x: Any, axes_input: Any = None) -> Any:
        axes = _attr(node, "axes")
        if axes is None and axes_input is not None:
            axes = _ints(axes_input)
        keep = bool(_attr(node, "keepdims", 1))
        dims = list(axes) if axes else list(range(x.dim()))
        if kind == "sum":
            return x.sum(dim=dims, keepdim=keep)
        if kind == "mean":
            return x.mean(dim=dims, keepdim=keep)
        if kind == "l2":
            return g.torch.linalg.vector_norm(x.float(), dim=dims, keepdim=keep).to(x.dtype)
        return x.amax(dim=dims, keepdim=keep)

    return rule


def _clip(g: TorchGraph, node: Any, x: Any, low: Any = None, high: Any = None) -> Any:
    return g.torch.clamp(x, min=None if low is None else low.item(), max=None if high is None else high.item())


def _gemm(g: TorchGraph, node: Any, a: Any, b: Any, c: Any = None) -> Any:
    a = a.t() if _attr(node, "transA", 0) else a
    b = b.t() if _attr(node, "transB", 0) else b
    out = _attr(node, "alpha", 1.0) * (a @ b)
    return out if c is None else out + _attr(node, "beta", 1.0) * c


def _layer_norm(g: TorchGraph, node: Any, x: Any, scale: Any, bias: Any = None) -> Any:
    axis = _attr(node, "axis", -1)
    return g.torch.nn.functional.layer_norm(x, tuple(x.shape[axis:]), scale, bias, _attr(node, "epsilon", 1e-5))


def _constant_of_shape(g: TorchGraph, node: Any, shape: Any) -> Any:
    from onnx import numpy_helper

    value = _attr(node, "value")
    fill = numpy_helper.to_array(value).reshape(-1)[0] if value is not None else np.float32(0)
    tensor = g._tensor(np.full(_ints(shape), fill))
    return tensor


def _argmax(g: TorchGraph, node: Any, x: Any) -> Any:
    if _attr(node, "select_last_index", 0):
        raise NotImplementedError("ArgMax with select_last_index")
    return g.torch.argmax(x, dim=_attr(node, "axis", 0), keepdim=bool(_attr(node, "keepdims", 1)))


def _unsqueeze(g: TorchGraph, node: Any, x: Any, axes: Any = None) -> Any:
    dims = _ints(axes) if axes is not None else list(_attr(node, "axes"))
    rank = x.dim() + len(dims)
    for axis in sorted(a + rank if a < 0 else a for a in dims):
        x = x.unsqueeze(axis)
    return x


def _squeeze(g: TorchGraph, node: Any, x: Any, axes: Any = None) -> Any:
    dims = _ints(axes) if axes is not None else _attr(node, "axes")
    return x.squeeze() if dims is None else x.squeeze(tuple(dims))


def _expand(g: TorchGraph, node: Any, x: Any, shape: Any) -> Any:
    target = g.torch.broadcast_shapes(tuple(x.shape), tuple(_ints(shape)))
    return x.expand(target)


def _gather(g: TorchGraph, node: Any, x: Any, index: Any) -> Any:
    axis = _attr(node, "axis", 0) % x.dim()
    index = g.torch.where(index < 0, index + x.shape[axis], index)
    picked = g.torch.index_select(x, axis, index.reshape(-1))
    return picked.reshape((*x.shape[:axis], *index.shape, *x.shape[axis + 1 :]))


def _binary(op: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    return lambda g, node, a, b: op(a, b)


def _unary(op: Callable[[Any], Any]) -> Callable[..., Any]:
    return lambda g, node, x: op(x)


OPS: dict[str, Callable[..., Any]] = {
    "Identity": _unary(lambda x: x),
    "Add": _binary(lambda a, b: a + b),
    "Sub": _binary(lambda a, b: a - b),
    "Mul": _binary(lambda a, b: a * b),
    "Div": _binary(lambda a, b: a / b if a.is_floating_point() else a // b),
    "Pow": _binary(lambda a, b: a**b),
    "MatMul": _binary(lambda a, b: a @ b),
    "Equal": _binary(lambda a, b: a == b),
    "Less": _binary(lambda a, b: a < b),
    "Greater": _binary(lambda a, b: a > b),
    "Max": lambda g, node, a, b: g.torch.maximum(a, b),
    "Min": lambda g, node, a, b: g.torch.minimum(a, b),
    "Sqrt": _unary(lambda x: x.sqrt()),
    "Erf": _unary(lambda x: x.erf()),
    "Tanh": _unary(lambda x: x.tanh()),
    "Relu": _unary(lambda x: x.relu()),
    "Sigmoid": _unary(lambda x: x.sigmoid()),
    "Neg": _unary(lambda x: -x),
    "Not": _unary(lambda x: ~x),
    "Where": lambda g, node, c, a, b: g.torch.where(c, a, b),
    "Gather": _gather,
    "Concat": lambda g, node, *xs: g.torch.cat(xs, dim=_attr(node, "axis")),
    "Reshape": _reshape,
    "Transpose": lambda g, node, x: x.permute(*(_attr(node, "perm") or reversed(range(x.dim())))),
    "Shape": lambda g, node, x: g.torch.tensor(list(x.shape), dtype=g.torch.int64, device=x.device),
    "Slice": _slice,
    "Cast": _cast,
    "Softmax": lambda g, node, x: g.torch.softmax(x, dim=_attr(node, "axis", -1)),
    "LayerNormalization": _layer_norm,
    "ReduceSum": _reduce("sum"),
    "ReduceMean": _reduce("mean"),
    "ReduceMax": _reduce("max"),
    "ReduceL2": _reduce("l2"),
    "Clip": _clip,
    "Gemm": _gemm,
    "ConstantOfShape": _constant_of_shape,
    "ArgMax": _argmax,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Expand": _expand,
}


# --- the check and the benchmark --------------------------------------------------------------------------------


def onnxruntime_runner(path: Path) -> Callable[[NDArray[Any], NDArray[Any]], dict[str, NDArray[Any]]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda ids, mask: dict(
        zip(names, session.run(names, {"input_ids": ids, "attention_mask": mask}), strict=True)
    )


def tokenized_prompts(tokenizer_path: Path, prompts_path: Path, max_sequence: int) -> tuple[list[list[int]], int, int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_sequence)
    texts = [
        line.replace("\\n", "\n")
        for line in prompts_path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls is None or sep is None:
        raise ValueError(f"{tokenizer_path} has no [CLS]/[SEP] tokens")
    return [list(e.ids) for e in tokenizer.encode_batch(texts)], cls, sep


def check(
    plan_check: ModuleType, graph: TorchGraph, batches: Sequence[Any], reference: Sequence[Any]
) -> dict[str, Any]:
    candidate = plan_check.run_all(graph, batches)
    result: dict[str, Any] = plan_check.compare_runs(batches, reference, candidate)
    return result


def _sync(graph: TorchGraph) -> None:
    if graph.device.type == "cuda":
        graph.torch.cuda.synchronize()


def bench(
    graph: TorchGraph, rows: Callable[[int], list[int]], batches: Sequence[int], lengths: Sequence[int], iters: int
) -> list[dict[str, Any]]:
    """p50/mean latency of one call and sequences/s, per batch x length (every row of that many real tokens)."""
    torch = graph.torch
    out = []
    for length in lengths:
        row = rows(length)
        for batch in batches:
            ids = torch.tensor([row] * batch, dtype=torch.int64, device=graph.device)
            mask = torch.ones_like(ids)
            try:
                for _ in range(3):
                    graph.run(ids, mask)
                _sync(graph)
                times = []
                for _ in range(iters):
                    start = time.perf_counter()
                    graph.run(ids, mask)
                    _sync(graph)
                    times.append(time.perf_counter() - start)
            except torch.cuda.OutOfMemoryError:  # reported, not fatal: the other shapes still run
                out.append({"batch": batch, "length": length, "error": "out of memory"})
                torch.cuda.empty_cache()
                continue
            mean = statistics.fmean(times)
            out.append(
                {
                    "batch": batch,
                    "length": length,
                    "p50_ms": round(statistics.median(times) * 1000, 3),
                    "mean_ms": round(mean * 1000, 3),
                    "sequences_per_s": round(batch / mean, 1),
                    "iterations": iters,
                }
            )
    return out


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(device)))
    return f"CPU ({platform.processor() or platform.machine()})"


def _driver() -> str | None:
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "--id=0"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def run(args: argparse.Namespace) -> int:
    import onnx
    import torch

    bundle: Path | None = args.bundle
    model_path = args.onnx or (bundle / MODEL_FILE if bundle else None)
    tokenizer_path = args.tokenizer or (bundle / "tokenizer.json" if bundle else None)
    if model_path is None or tokenizer_path is None:
        raise SystemExit("run: give --bundle, or --onnx and --tokenizer")
    plan_check = load_plan_check(bundle)
    prompts_path = next(
        p for p in ((bundle or HERE), HERE.parent / "build_engines") if (p / "plan_check_prompts.txt").is_file()
    )
    prompts, cls, sep = tokenized_prompts(tokenizer_path, prompts_path / "plan_check_prompts.txt", args.max_sequence)
    batches = plan_check.validation_batches(prompts, cls, sep, max_sequence=args.max_sequence)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = onnx.load(str(model_path))
    started = time.perf_counter()
    reference = plan_check.run_all(onnxruntime_runner(model_path), batches)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": _device_name(device),
        "driver": _driver(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        # what the FP32 and FP16 matmuls may do on this torch (TF32 / reduced-precision reductions change figures)
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "fp16_reduced_precision_reduction": bool(torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction),
        "graph": str(model_path.name),
        "graph_bytes": model_path.stat().st_size,
        "reference": "onnxruntime CPU float32, same graph and weights",
        "reference_seconds": round(time.perf_counter() - started, 1),
        "checks": {},
        "bench": {},
    }
    body = [t for r in prompts for t in r if t not in (cls, sep)]

    def row(length: int) -> list[int]:
        return [cls, *[body[i % len(body)] for i in range(length - 2)], sep][:length]

    failed = []
    for precision in args.precisions:
        graph = TorchGraph(model, device, half=precision == "fp16")
        report = check(plan_check, graph, batches, reference)
        result["checks"][precision] = report
        failed += [f"{precision}: {f}" for f in report["failures"]]
        print(f"{precision}: {'passed' if report['passed'] else 'FAILED'} {json.dumps(report['figures'])}", flush=True)
        if args.iterations:
            result["bench"][precision] = bench(graph, row, args.batches, args.lengths, args.iterations)
        del graph
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    result["failures"] = failed
    result["passed"] = not failed
    if args.out is not None:
        write(result, args.out)
    print(markdown(result))
    return 0 if not failed else 1


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")


def write(result: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_check_{result['date'][:10]}_{_slug(result['device'])}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / f"{stem}.md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {out / stem}.json and .md")
    return out / f"{stem}.json"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# The signals graph on {result['device']} ({result['date']})",
        "",
        f"torch {result['torch']}, CUDA {result['cuda']}, driver {result['driver']}; reference: {result['reference']}.",
        "Latencies: eager PyTorch interpreter of the ONNX graph (no fusion), not a TensorRT plan.",
        "",
        "| precision | passed | rows | intent top-1 | jailbreak max diff | embedding min cos | PII tags | NaN/inf |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for precision, report in result["checks"].items():
        f = report["figures"]
        lines.append(
            f"| {precision} | {'yes' if report['passed'] else 'NO'} | {f['rows']} | {f['intent_top1_agreement']:.4f} | "
            f"{f['jailbreak_max_abs_diff']:.5f} | {f['embedding_min_cosine']:.6f} | {f['pii_tag_agreement']:.4f} | "
            f"{f['nonfinite_values'] or 'none'} |"
        )
    for failure in result.get("failures", []):
        lines.append(f"\nFAILED: {failure}")
    if result["bench"]:
        lines += [
            "",
            "| precision | batch | length | p50 ms | mean ms | sequences/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for precision, rows in result["bench"].items():
            for r in rows:
                if "error" in r:
                    lines.append(f"| {precision} | {r['batch']} | {r['length']} | {r['error']} | | |")
                else:
                    lines.append(
                        f"| {precision} | {r['batch']} | {r['length']} | {r['p50_ms']:.2f} | {r['mean_ms']:.2f} | "
                        f"{r['sequences_per_s']:.0f} |"
                    )
    return "\n".join(lines) + "\n"


def _csv_ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="the graph with FP16-stored weights, the tokenizer, the prompts and the scripts")
    p.add_argument("--onnx", type=Path, required=True)
    p.add_argument("--tokenizer", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("run", help="check FP32 and FP16 on the GPU against onnxruntime, then measure")
    p.add_argument("--bundle", type=Path, help="a folder written by `pack`")
    p.add_argument("--onnx", type=Path, help="a graph instead of the bundle's")
    p.add_argument("--tokenizer", type=Path, help="its tokenizer.json")
    p.add_argument("--out", type=Path, help="folder for gpu_check_<date>_<device>.{json,md}")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--precisions", type=lambda s: tuple(s.split(",")), default=("fp32", "fp16"))
    p.add_argument("--max-sequence", type=int, default=512)
    p.add_argument("--batches", type=_csv_ints, default=BENCH_BATCHES)
    p.add_argument("--lengths", type=_csv_ints, default=BENCH_LENGTHS)
    p.add_argument("--iterations", type=int, default=20, help="timed calls per shape (0: no benchmark)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pack":
        pack(args.onnx, args.tokenizer, args.out)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
