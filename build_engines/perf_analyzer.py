"""Install Triton's real `perf_analyzer` (from the tritonclient 2.51.0 wheel) into the cache, idempotently.

The `perf-analyzer` package on PyPI is an empty placeholder and newer binaries need glibc 2.38; the 2.51.0
wheel's binary runs here with `libb64.so.0d` and `libcudart.so.12` taken from nvidia_pytriton.libs.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from build_engines.paths import cache_root, site_packages

__all__ = ["PERF_ANALYZER_VERSION", "ensure_perf_analyzer"]

PERF_ANALYZER_VERSION = "2.51.0"
_MEMBER = f"tritonclient-{PERF_ANALYZER_VERSION}.data/data/bin/perf_analyzer"
_LIBS = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


def _install_dir() -> Path:
    return cache_root() / "perf_analyzer" / PERF_ANALYZER_VERSION


def _wrapper(binary: Path, libs: Path) -> str:
    return (
        "#!/bin/sh\n"
        "# perf_analyzer from tritonclient " + PERF_ANALYZER_VERSION + " with its two libraries (installed by\n"
        "# build_engines.perf_analyzer.ensure_perf_analyzer)\n"
        f'LD_LIBRARY_PATH="{libs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" exec "{binary}" "$@"\n'
    )


def ensure_perf_analyzer(wheel_dir: Path | None = None) -> Path:
    """Path of a runnable `perf_analyzer` (a wrapper that sets LD_LIBRARY_PATH); downloads only when missing.

    `wheel_dir` may hold an already downloaded tritonclient-2.51.0 wheel (offline installs).
    """
    root = _install_dir()
    wrapper = root / "bin" / "perf_analyzer"
    binary = root / "libexec" / "perf_analyzer"
    libs = root / "lib"
    if wrapper.exists() and binary.exists() and all((libs / name).exists() for name in _LIBS):
        return wrapper
    for folder in (wrapper.parent, binary.parent, libs):
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        wheels = sorted((wheel_dir or Path(scratch)).glob(f"tritonclient-{PERF_ANALYZER_VERSION}-*.whl"))
        if not wheels:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    f"tritonclient=={PERF_ANALYZER_VERSION}",
                    "-d",
                    scratch,
                ],
                check=True,
            )
            wheels = sorted(Path(scratch).glob(f"tritonclient-{PERF_ANALYZER_VERSION}-*.whl"))
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(_MEMBER) as src, binary.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    bundled = site_packages() / "nvidia_pytriton.libs"
    for name, pattern in _LIBS.items():
        found = sorted(bundled.glob(pattern))
        if not found:
            raise FileNotFoundError(f"{pattern} not found in {bundled}: is nvidia-pytriton installed?")
        shutil.copyfile(found[0], libs / name)
    wrapper.write_text(_wrapper(binary, libs), encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper


if __name__ == "__main__":
    print(ensure_perf_analyzer())
