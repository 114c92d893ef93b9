"""Each image of deploy/Dockerfile installs what its entry point imports: the modules a real run of the entry point
loads, mapped to their distributions, must come from the image's requirements file (or their dependencies) or the
base image. A builder image without tritonclient, say, fails here rather than on a GPU host."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _closure(requirements_file: Path) -> set[str]:
    """Distributions (normalised names) the file installs, with their dependencies and requested extras."""
    todo = []
    for line in requirements_file.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            todo.append(Requirement(line))
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        key = name + "[" + ",".join(sorted(req.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        for raw in requires:
            dep = Requirement(raw)
            env = [{"extra": extra} for extra in req.extras] or [{"extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(e) for e in env):
                todo.append(dep)
    return {k.split("[", 1)[0] for k in seen}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_PROBE = """
import ast, json, sys
from importlib import metadata
from pathlib import Path
PROJECT = {"router_service", "cache_service", "build_engines", "local_stack", "wire"}
candidates = metadata.packages_distributions()
def owner(name, path):
    path = str(Path(path).resolve())
    for dist_name in candidates.get(name.split(".")[0], []):
        dist = metadata.distribution(dist_name)
        if any(str(Path(dist.locate_file(f)).resolve()) == path for f in dist.files or () if f.suffix == ".py"):
            return dist.metadata["Name"]
    return None
imported = set()
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if name.split(".")[0] not in PROJECT or not path or not path.endswith(".py"):
        continue
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported |= {node.module} | {node.module + "." + a.name for a in node.names}
dists = set()
for name in imported:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if module is None or name.split(".")[0] in PROJECT | set(sys.stdlib_module_names) or not path:
        continue
    found = owner(name, path)
    if found:
        dists.add(found)
print(json.dumps(sorted(dists)))
"""


def _loaded_distributions(code: str) -> set[str]:
    """Distributions of the third-party modules that the project's own modules imported while `code` ran (what a
    library imports optionally, when present, is its own business)."""
    result = subprocess.run(
        [sys.executable, "-c", code + _PROBE], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {_norm(d) for d in json.loads(result.stdout.strip().splitlines()[-1])} - {"triton-semantic-router"}


def test_engine_builder_image_has_what_the_tensorrt_command_imports(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None, None])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [None, None])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["input_ids"], ["y"])], "g", [x], [y])),
              str(tmp_path / "model.onnx"))  # fmt: skip
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "manifest.json").write_text(json.dumps({"max_seq_length": 512}))
    code = (
        "from build_engines.__main__ import main\n"
        "try:\n"
        f"    main(['tensorrt', '--artefacts', {str(tmp_path)!r}, '--repository', {str(tmp_path / 'repo')!r}])\n"
        "except SystemExit as e:\n"
        "    assert 'TensorRT is not installed' in str(e), e\n"  # got as far as the engine build
    )
    loaded = _loaded_distributions(code)
    provided = _closure(ROOT / "deploy" / "requirements-engine.txt") | {"tensorrt"}  # the NGC TensorRT image's own
    assert loaded <= provided, f"the engine-builder image lacks {sorted(loaded - provided)}"


@pytest.mark.parametrize("service", ["router_service", "cache_service"])
def test_service_image_has_what_the_services_import(service: str) -> None:
    code = f"import {service}.__main__, {service}.app\n"
    loaded = _loaded_distributions(code)
    provided = _closure(ROOT / "deploy" / "requirements-serve.txt")
    assert loaded <= provided, f"the service image lacks {sorted(loaded - provided)} for {service}"


def test_triton_cpu_image_has_what_the_python_model_imports() -> None:
    tree = ast.parse((ROOT / "build_engines" / "triton_model.py").read_text())
    tops = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    tops |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0
    }
    third_party = tops - set(sys.stdlib_module_names) - {"__future__", "triton_python_backend_utils"}
    needed = {_norm(t) for t in third_party}  # numpy, onnxruntime: module and distribution names agree
    provided = _closure(ROOT / "deploy" / "requirements-triton-cpu.txt")
    assert needed <= provided, f"the triton-cpu image lacks {sorted(needed - provided)}"
