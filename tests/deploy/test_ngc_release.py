"""One NVIDIA release for the GPU stack: named once (deploy/Dockerfile's NGC_TAG), used by every NGC image the
Dockerfile, compose and Kubernetes run; the TensorRT the builder accepts is that release's major; python3 is what
every container command calls (NVIDIA's images document `python3`)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from build_engines.tensorrt_build import TENSORRT_MAJOR

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
# The TensorRT major of each NGC release (NVIDIA's container release notes): TensorRT 10 from 24.05 on. Bumping
# NGC_TAG past this table asks whoever bumps it to check the major and the builder's API use (TensorRT 11 removed
# BuilderFlag.FP16/INT8) before the plan build breaks on a GPU host.
NGC_TENSORRT_MAJOR = {"25.10": 10}
RELEASE = re.compile(r"\b\d{2}\.\d{2}-py3\b|nvcr\.io/nvidia/(tritonserver|tensorrt):[^$\s\"']+")


def _ngc_tag() -> str:
    tags = re.findall(r"^ARG NGC_TAG=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert len(tags) == 1, f"deploy/Dockerfile must set NGC_TAG exactly once, found {tags}"
    return tags[0]


def _deploy_files() -> list[Path]:
    files = [ROOT / "docker-compose.yml", *ROOT.glob("deploy/compose/*.y*ml")]
    files += [p for p in (ROOT / "deploy" / "k8s").rglob("*") if p.suffix in (".yaml", ".yml")]
    return files


def test_the_release_is_named_in_the_dockerfile_only() -> None:
    _ngc_tag()
    for path in _deploy_files():
        found = RELEASE.findall(path.read_text())
        assert not found, f"{path.relative_to(ROOT)} names an NGC release itself; use deploy/Dockerfile's images"


def test_every_ngc_image_of_the_dockerfile_takes_the_tag() -> None:
    stages = re.findall(r"^FROM (\S+) AS (\S+)$", DOCKERFILE.read_text(), re.M)
    ngc = {stage: image for image, stage in stages if image.startswith("nvcr.io/")}
    assert set(ngc) >= {"engine-builder", "triton-gpu", "triton-cpu", "loadtest"}
    for stage, image in ngc.items():
        assert re.fullmatch(r"nvcr\.io/nvidia/(tensorrt|tritonserver):\$\{NGC_TAG\}-py3(-sdk)?", image), (stage, image)


def test_tensorrt_major_is_the_releases() -> None:
    tag = _ngc_tag()
    assert tag in NGC_TENSORRT_MAJOR, f"NGC {tag}: add its TensorRT major to NGC_TENSORRT_MAJOR (release notes)"
    assert NGC_TENSORRT_MAJOR[tag] == TENSORRT_MAJOR


def test_compose_builds_the_gpu_images_from_the_dockerfile() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.M))
    for name in ("engine-builder", "triton", "loadtest"):
        build = services[name]["build"]
        assert build["dockerfile"] == "deploy/Dockerfile" and build["target"] in stages, name


def test_k8s_images_are_the_dockerfiles_targets() -> None:
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.M))
    for path in (ROOT / "deploy" / "k8s").rglob("*.yaml"):
        for image in re.findall(r"(?:image|newName):\s*(semantic-router/[a-z-]+)", path.read_text()):
            target = image.removeprefix("semantic-router/")
            assert target in stages | {"service", "triton"}, (
                f"{path.relative_to(ROOT)}: {image} is no Dockerfile target"
            )


def test_containers_call_python3() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert '"python",' not in dockerfile and 'ENTRYPOINT ["python3"' in dockerfile
    for path in _deploy_files():
        text = path.read_text()
        assert not re.search(r"""(^|[\s\["'>])python(\s|",|'|$)""", _without_comments(text), re.M), (
            f"{path.relative_to(ROOT)} calls `python`; NVIDIA's images document python3"
        )


def _without_comments(text: str) -> str:
    return "\n".join(line.split(" #", 1)[0] for line in text.splitlines() if not line.lstrip().startswith("#"))
