"""How many CPU threads the build should use.

On a shared 2-core machine a second intra-op thread is a 1.8x win when the cores are idle and a 5x loss when
another process holds one (the threads spin-wait on each other), so the count is measured, not assumed.
"""

from __future__ import annotations

import os
import time

import torch

__all__ = ["choose_threads"]


def _matmul_seconds(threads: int) -> float:
    torch.set_num_threads(threads)
    a = torch.randn(384, 1536)
    b = torch.randn(1536, 384)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(40):
            a @ b
        best = min(best, time.perf_counter() - started)
    return best


def choose_threads() -> int:
    """`SEMANTIC_ROUTER_BUILD_THREADS` if set, else the faster of 1 and all cores on a short matmul probe."""
    override = os.environ.get("SEMANTIC_ROUTER_BUILD_THREADS")
    cores = os.cpu_count() or 1
    if override:
        threads = max(1, int(override))
    elif cores == 1:
        threads = 1
    else:
        threads = cores if _matmul_seconds(cores) < 0.8 * _matmul_seconds(1) else 1
    torch.set_num_threads(threads)
    return threads
