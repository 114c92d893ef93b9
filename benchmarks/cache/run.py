"""Semantic cache benchmark: lookup latency and HNSW recall@1, ours vs RedisVL's SemanticCache, same Redis.

    python benchmarks/cache/run.py            # full run (~10 min on 2 cores): 10k and 100k entries
    python benchmarks/cache/run.py --quick    # smoke run (~1 min): 2k and 10k entries
    python benchmarks/cache/run.py --sizes 10000 --datasets random --no-sweep --no-redisvl   # the hop alone

Starts its own Valkey + RediSearch (local_stack.components) and a `python -m cache_service` process.
Vectors are 384-d, unit length: "random" (uniform on the sphere: the hardest case for HNSW) and "clustered"
(random centres + noise, closer to real sentence embeddings). Queries are paraphrase-like: a stored vector
turned by a random angle to cosine U(0.80, 0.95) with it, so a cache at the default threshold should hit;
recall@1 = share of queries whose top-1 is the exact (numpy brute-force) nearest entry in scope.

One query at a time, embedding excluded, on uvloop (the router's event loop). The lookup paths run interleaved,
in blocks of 25 queries per path in turn, so a burst of other work on the machine hits them all alike:
  raw FT.SEARCH      the service's own search alone (CacheRepository.search: TAG filter + KNN, hiredis)
  redis script       the service's whole Redis part of a lookup, in-process (exact read, search, refresh of a
                     hit: one EVALSHA)
  service in-process CacheService.lookup: the above plus validation, the exact key's hash and metrics
  http service       the router's path: CacheClient -> HTTP -> `python -m cache_service` -> Redis
  http, httpx client         the same service, lookups sent through httpx (the client's former transport)
  http, 2 round trips        the lean client, the service with lookup_script off (exact read, then search,
                             refresh after the response)
  http, before               httpx and 2 round trips: the path as it was before the one-round-trip lookup
  redisvl            RedisVL SemanticCache.check(vector=...) on its default FLAT index (same vectors, same queries)
Writes benchmarks/results/cache.json and cache.md, and prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cache_service.client import CacheClient, CacheOutcome  # noqa: E402
from cache_service.codec import encode_embedding, entry_id  # noqa: E402
from cache_service.errors import CacheError  # noqa: E402
from cache_service.index import IndexSpec, ensure_index  # noqa: E402
from cache_service.models import LookupRequest  # noqa: E402
from cache_service.repository import CacheRepository, NewEntry, Scope  # noqa: E402
from cache_service.service import CacheService  # noqa: E402
from cache_service.settings import CacheSettings  # noqa: E402
from local_stack.components import (  # noqa: E402
    ManagedProcess,
    free_port,
    valkey_command,
    wait_http_ok,
    wait_tcp,
)

Vectors = npt.NDArray[np.float32]
DIM = 384
SCOPE = Scope("bench-model", "0123456789abcdef0123456789abcdef", None)
RESPONSE = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "bench-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "A cached answer of a few sentences. " * 12},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 100, "total_tokens": 120},
}
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    queries: int
    datasets: tuple[str, ...]
    sweep_size: int
    sweep: tuple[tuple[int, int], ...]  # (M, EF_CONSTRUCTION)
    efs: tuple[int, ...]
    main_m: int
    main_efc: int
    main_ef: int
    redisvl: bool = True


def unit_rows(x: npt.NDArray[Any]) -> Vectors:
    out: Vectors = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def make_data(kind: str, n: int, rng: np.random.Generator) -> Vectors:
    if kind == "random":
        return unit_rows(rng.standard_normal((n, DIM)))
    centres = unit_rows(rng.standard_normal((max(1, n // 100), DIM)))
    noise = rng.standard_normal((n, DIM)) * (0.6 / np.sqrt(DIM))
    return unit_rows(centres[rng.integers(0, len(centres), n)] + noise)


def make_queries(data: Vectors, nq: int, rng: np.random.Generator) -> tuple[Vectors, npt.NDArray[np.int64]]:
    """Paraphrase-like queries: cosine U(0.80, 0.95) with a random stored vector; ground truth by brute force."""
    src = data[rng.integers(0, len(data), nq)]
    cos = rng.uniform(0.80, 0.95, (nq, 1))
    r = rng.standard_normal((nq, DIM))
    r -= np.sum(r * src, axis=1, keepdims=True) * src
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    q = unit_rows(cos * src + np.sqrt(1 - cos**2) * r)
    truth = np.argmax(q @ data.T, axis=1)
    return q, truth.astype(np.int64)


def pct(times_s: Sequence[float], p: float) -> float:
    return round(float(np.percentile(np.asarray(times_s) * 1000.0, p)), 3)


Lookup = Callable[[int], Awaitable[bool]]


async def interleaved(n: int, paths: dict[str, Lookup], block: int = 25) -> dict[str, tuple[list[float], int]]:
    """Run every path over queries 0..n-1, one query at a time, `block` queries per path in turn (after a few
    warm-up calls each): {path: (durations, how many returned True)}."""
    for fn in paths.values():
        for i in range(min(20, n)):
            await fn(i)
    out: dict[str, tuple[list[float], int]] = {name: ([], 0) for name in paths}
    for start in range(0, n, block):
        for name, fn in paths.items():
            times, ok = out[name]
            for i in range(start, min(n, start + block)):
                t0 = time.perf_counter()
                good = await fn(i)
                times.append(time.perf_counter() - t0)
                ok += good
            out[name] = (times, ok)
    return out


async def timed(n: int, fn: Callable[[int], Awaitable[bool]]) -> tuple[list[float], int]:
    """Run fn(i) for i < n one at a time (after a few warm-up calls); (durations, how many returned True)."""
    for i in range(min(20, n)):
        await fn(i)
    times, ok = [], 0
    for i in range(n):
        t0 = time.perf_counter()
        good = await fn(i)
        times.append(time.perf_counter() - t0)
        ok += good
    return times, ok


class Bench:
    def __init__(self, plan: Plan, url: str, port: int) -> None:
        self.plan = plan
        self.url = url
        self.port = port
        self.rows: list[dict[str, Any]] = []
        self.sweep_rows: list[dict[str, Any]] = []

    def settings(self, name: str, m: int, efc: int, ef: int) -> CacheSettings:
        return CacheSettings(
            redis_url=self.url,
            index_name=name,
            key_prefix=f"{name}:",
            hnsw_m=m,
            hnsw_ef_construction=efc,
            ef_runtime=ef,
            max_entries=10_000_000,
            ttl_seconds=24 * 3600,
        )

    @staticmethod
    def ids(n0: int, n1: int) -> list[str]:
        return [
            entry_id(f"prompt {i}", model=SCOPE.model, fingerprint=SCOPE.fingerprint, tenant=None)
            for i in range(n0, n1)
        ]

    async def load(self, repo: CacheRepository, data: Vectors, ids: list[str], n0: int, n1: int) -> float:
        t0 = time.perf_counter()
        text = json.dumps(RESPONSE)
        entries = [NewEntry(ids[i], f"prompt {i}", text, data[i], SCOPE, 24 * 3600) for i in range(n0, n1)]
        await repo.store_many(entries, batch=500)
        return time.perf_counter() - t0

    async def raw_lookups(
        self, repo: CacheRepository, q: Vectors, truth: npt.NDArray[np.int64], ids: list[str], ef: int
    ) -> tuple[list[float], int]:
        async def one(i: int) -> bool:
            found = await repo.search(q[i], SCOPE, ef_runtime=ef, exhaustive=False)
            return found.entry is not None and found.entry.entry_id == ids[truth[i]]

        return await timed(len(q), one)

    async def sweep(self, r: aioredis.Redis, rng: np.random.Generator) -> None:
        p = self.plan
        data = make_data("random", p.sweep_size, rng)
        q, truth = make_queries(data, p.queries, rng)
        ids = self.ids(0, p.sweep_size)
        for m, efc in p.sweep:
            s = self.settings("bench_sweep", m, efc, p.main_ef)
            await ensure_index(r, IndexSpec.from_settings(s), s.lru_key)
            repo = CacheRepository(r, s)
            build = await self.load(repo, data, ids, 0, p.sweep_size)
            for ef in p.efs:
                times, ok = await self.raw_lookups(repo, q, truth, ids, ef)
                row = {
                    "dataset": "random",
                    "entries": p.sweep_size,
                    "M": m,
                    "EF_CONSTRUCTION": efc,
                    "EF_RUNTIME": ef,
                    "recall@1": round(ok / len(q), 3),
                    "p50_ms": pct(times, 50),
                    "p99_ms": pct(times, 99),
                    "build_s": round(build, 1),
                }
                self.sweep_rows.append(row)
                print(_fmt(row), flush=True)
            await drop(r, s)

    async def main_runs(self, r: aioredis.Redis, rng: np.random.Generator, services: dict[str, str]) -> None:
        p = self.plan
        s = self.settings("bench_main", p.main_m, p.main_efc, p.main_ef)
        redisvl = RedisVLCache(self.url) if p.redisvl else None
        for kind in p.datasets:
            data = make_data(kind, max(p.sizes), rng)
            ids = self.ids(0, max(p.sizes))
            await drop(r, s)
            if redisvl is not None:
                redisvl.reset()
            await ensure_index(r, IndexSpec.from_settings(s), s.lru_key)
            repo = CacheRepository(r, s)
            loaded = 0
            for size in p.sizes:
                build = await self.load(repo, data, ids, loaded, size)
                if redisvl is not None:
                    redisvl.load(data, ids, loaded, size)
                loaded = size
                q, truth = make_queries(data[:size], p.queries, rng)
                base = {"dataset": kind, "entries": size, "M": p.main_m, "EF_CONSTRUCTION": p.main_efc}
                for ef in p.efs:
                    if ef == p.main_ef:
                        continue  # measured below, interleaved with the service paths
                    times, ok = await self.raw_lookups(repo, q, truth, ids, ef)
                    self.add(
                        {**base, "path": "raw FT.SEARCH", "EF_RUNTIME": ef, "build_s": round(build, 1)},
                        times,
                        ok,
                        len(q),
                    )
                await self.compare(repo, s, services, q, truth, ids, base, build)
                if redisvl is not None:
                    times, ok = redisvl.lookups(q, truth, ids)
                    self.add(
                        {
                            "dataset": kind,
                            "entries": size,
                            "M": "-",
                            "EF_CONSTRUCTION": "-",
                            "path": "redisvl check (FLAT)",
                            "EF_RUNTIME": "-",
                        },
                        times,
                        ok,
                        len(q),
                    )
            if kind == p.datasets[0]:
                await self.compare_exact(services, ids, p.queries, max(p.sizes))
        await drop(r, s)
        if redisvl is not None:
            redisvl.reset()

    async def compare(
        self,
        repo: CacheRepository,
        s: CacheSettings,
        services: dict[str, str],
        q: Vectors,
        truth: npt.NDArray[np.int64],
        ids: list[str],
        base: dict[str, Any],
        build: float,
    ) -> None:
        """The service's lookup paths and the raw search on the same queries, interleaved."""
        p = self.plan
        service = CacheService(s)
        await service.start()
        clients = service_clients(services)
        try:
            paths: dict[str, Lookup] = {}

            async def raw(i: int) -> bool:
                found = await repo.search(q[i], SCOPE, ef_runtime=p.main_ef, exhaustive=False)
                return found.entry is not None and found.entry.entry_id == ids[truth[i]]

            paths["raw FT.SEARCH"] = raw
            vec_bytes = [row.astype("<f4").tobytes() for row in q]

            async def script(i: int) -> bool:
                eid = entry_id(f"paraphrase {i}", model=SCOPE.model, fingerprint=SCOPE.fingerprint, tenant=None)
                found = await repo.lookup(eid, vec_bytes[i], SCOPE, threshold=0.75, ef_runtime=p.main_ef)
                return found.entry is not None and found.entry.entry_id == ids[truth[i]]

            paths["redis script"] = script
            requests = [
                LookupRequest(
                    prompt=f"paraphrase {i}",
                    embedding=encode_embedding(q[i]),
                    model=SCOPE.model,
                    fingerprint=SCOPE.fingerprint,
                    threshold=0.75,
                )
                for i in range(len(q))
            ]

            async def in_process(i: int) -> bool:
                try:
                    res = await service.lookup(requests[i])
                except CacheError:  # e.g. its 50 ms Redis deadline passed on a busy machine: a miss, as via HTTP
                    return False
                return res.entry is not None and res.entry.entry_id == ids[truth[i]]

            paths["service in-process"] = in_process
            for name, client in clients.items():
                paths[name] = paraphrase_lookup(client, q, truth, ids)
            results = await interleaved(len(q), paths)
        finally:
            for client in clients.values():
                await client.close()
            await service.stop()
        raw_p50 = pct(results["raw FT.SEARCH"][0], 50)
        for name, (times, ok) in results.items():
            row: dict[str, Any] = {**base, "path": name, "EF_RUNTIME": p.main_ef}
            if name == "raw FT.SEARCH":
                row["build_s"] = round(build, 1)
            if name in clients:
                failed = sum(clients[name].outcomes[o] for o in _NO_ANSWER)
                row.update({"over_20ms": sum(t > 0.02 for t in times), "errors": failed})
            self.add(row, times, ok, len(q))
            row["x_raw_p50"] = round(row["p50_ms"] / raw_p50, 2) if raw_p50 else None

    async def compare_exact(self, services: dict[str, str], ids: list[str], n: int, size: int) -> None:
        """Exact repeats (the fast path, no vector search) through each client/service pair, interleaved."""
        clients = service_clients(services)
        try:
            paths = {f"{name}, exact repeat": exact_lookup(client, ids) for name, client in clients.items()}
            results = await interleaved(n, paths)
        finally:
            for client in clients.values():
                await client.close()
        for (name, (times, ok)), client in zip(results.items(), clients.values(), strict=True):
            row = {
                "dataset": self.plan.datasets[0],
                "entries": size,
                "M": self.plan.main_m,
                "EF_CONSTRUCTION": self.plan.main_efc,
                "path": name,
                "EF_RUNTIME": "-",
                "over_20ms": sum(t > 0.02 for t in times),
                "errors": sum(client.outcomes[o] for o in _NO_ANSWER),
            }
            self.add(row, times, ok, n)

    def add(self, row: dict[str, Any], times: list[float], ok: int, n: int) -> None:
        row.update({"recall@1": round(ok / n, 3), "p50_ms": pct(times, 50), "p99_ms": pct(times, 99)})
        self.rows.append(row)
        print(_fmt(row), flush=True)


_NO_ANSWER = (CacheOutcome.TIMEOUT, CacheOutcome.ERROR, CacheOutcome.UNAVAILABLE, CacheOutcome.BAD_RESPONSE)


# (client over httpx?, service with the one-round-trip lookup?) per HTTP path
HTTP_PATHS = {
    "http service": (False, True),
    "http, httpx client": (True, True),
    "http, 2 round trips": (False, False),
    "http, before (httpx, 2 round trips)": (True, False),
}


def service_clients(services: dict[str, str]) -> dict[str, CacheClient]:
    """One client per HTTP path; `services` maps "script" / "two_trips" to the service URL."""
    return {
        name: CacheClient(
            services["script" if script else "two_trips"],
            timeout_s=1.0,
            failure_threshold=10_000,
            lookup_via_httpx=via_httpx,
        )
        for name, (via_httpx, script) in HTTP_PATHS.items()
    }


def paraphrase_lookup(client: CacheClient, q: Vectors, truth: npt.NDArray[np.int64], ids: list[str]) -> Lookup:
    async def one(i: int) -> bool:
        hit = await client.lookup(
            prompt=f"paraphrase {i}",
            embedding=q[i],
            model=SCOPE.model,
            fingerprint=SCOPE.fingerprint,
            tenant=None,
            threshold=0.75,
        )
        return hit is not None and hit.entry_id == ids[truth[i]]

    return one


def exact_lookup(client: CacheClient, ids: list[str]) -> Lookup:
    zero = np.zeros(DIM, dtype=np.float32)
    zero[0] = 1.0

    async def one(i: int) -> bool:
        hit = await client.lookup(
            prompt=f"prompt {i}", embedding=zero, model=SCOPE.model, fingerprint=SCOPE.fingerprint, tenant=None
        )
        return hit is not None and hit.exact and hit.entry_id == ids[i]

    return one


class RedisVLCache:
    """RedisVL's SemanticCache with its defaults (FLAT index), loaded with the same vectors."""

    NAME = "redisvl_bench"

    def __init__(self, url: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from redisvl.extensions.cache.llm import SemanticCache
            from redisvl.utils.vectorize import CustomTextVectorizer

            vectorizer = CustomTextVectorizer(embed=lambda text: [0.0] * DIM)
            self.cache = SemanticCache(
                name=self.NAME, redis_url=url, vectorizer=vectorizer, distance_threshold=0.25, overwrite=True
            )
        self.client = redis.Redis.from_url(url)

    def reset(self) -> None:
        self.cache.clear()

    def load(self, data: Vectors, ids: list[str], n0: int, n1: int) -> None:
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        for i in range(n0, n1):
            pipe.hset(
                f"{self.NAME}:{ids[i]}",
                mapping={
                    "entry_id": ids[i],
                    "prompt": f"prompt {i}",
                    "response": json.dumps(RESPONSE),
                    "prompt_vector": data[i].tobytes(),
                    "inserted_at": now,
                    "updated_at": now,
                },
            )
            if (i - n0) % 1000 == 999:
                pipe.execute()
        pipe.execute()

    def lookups(self, q: Vectors, truth: npt.NDArray[np.int64], ids: list[str]) -> tuple[list[float], int]:
        vectors = [row.tolist() for row in q]  # its API takes lists; converting is not part of its time
        for i in range(min(20, len(q))):
            self.cache.check(vector=vectors[i], num_results=1)
        times, ok = [], 0
        for i, v in enumerate(vectors):
            t0 = time.perf_counter()
            found = self.cache.check(vector=v, num_results=1)
            times.append(time.perf_counter() - t0)
            ok += bool(found) and found[0].get("entry_id") == ids[truth[i]]
        return times, ok


async def drop(r: aioredis.Redis, s: CacheSettings) -> None:
    with contextlib.suppress(redis.ResponseError):
        await r.execute_command("FT.DROPINDEX", s.index_name, "DD")  # type: ignore[no-untyped-call]
    await r.delete(s.lru_key)
    async for key in r.scan_iter(match=f"{s.key_prefix}s:*"):
        await r.delete(key)


def _fmt(row: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in row.items())


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |\n" for r in rows)


def write(bench: Bench, plan: Plan, meta: dict[str, Any]) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "plan": plan.__dict__, "main": bench.rows, "sweep": bench.sweep_rows}
    (RESULTS / "cache.json").write_text(json.dumps(payload, indent=2) + "\n")
    main_cols = [
        "dataset",
        "entries",
        "path",
        "M",
        "EF_CONSTRUCTION",
        "EF_RUNTIME",
        "recall@1",
        "p50_ms",
        "p99_ms",
        "x_raw_p50",
        "over_20ms",
        "errors",
    ]
    chosen = [r for r in bench.rows if r["path"] != "raw FT.SEARCH" or r["EF_RUNTIME"] == plan.main_ef]
    hop_cols = ["dataset", "entries", "path", "p50_ms", "p99_ms", "x_raw_p50", "recall@1"]
    hop = [r for r in chosen if r.get("x_raw_p50") is not None]
    sweep_cols = ["entries", "M", "EF_CONSTRUCTION", "EF_RUNTIME", "recall@1", "p50_ms", "p99_ms", "build_s"]
    ef_cols = ["dataset", "entries", "EF_RUNTIME", "recall@1", "p50_ms", "p99_ms"]
    md = (
        "# Semantic cache benchmark\n\n"
        f"`{meta['command']}` on {meta['machine']}; "
        f"{meta['redis']}; {plan.queries} paraphrase-like queries (cosine U(0.80, 0.95) with a stored vector), "
        "one at a time, embedding excluded, client on uvloop. recall@1: top-1 equals numpy brute force. "
        f"Service defaults: HNSW M={plan.main_m}, EF_CONSTRUCTION={plan.main_efc}, EF_RUNTIME={plan.main_ef}.\n\n"
        "## The router -> cache hop, stage by stage (same index, same queries, interleaved)\n\n"
        "x_raw_p50: p50 over the raw FT.SEARCH p50 of the same run. `http service` is the router's path; "
        "`http, before` the former one (httpx client; exact read and search as two Redis round trips, the refresh "
        "of a hit a third after the response).\n\n"
        + table(hop, hop_cols)
        + "\n## Lookup latency and recall (service defaults)"
        + (" vs RedisVL SemanticCache" if plan.redisvl else "")
        + "\n\n"
        + table(chosen, main_cols)
        + "\n## EF_RUNTIME sweep (raw FT.SEARCH path, service's M / EF_CONSTRUCTION)\n\n"
        + table([r for r in bench.rows if r["path"] == "raw FT.SEARCH"], ef_cols)
        + (
            f"\n## M / EF_CONSTRUCTION sweep ({plan.sweep_size} random vectors, raw path)\n\n"
            + table(bench.sweep_rows, sweep_cols)
            if bench.sweep_rows
            else ""
        )
        + f"\nTotal run time {meta['total_s']} s; 1-minute load average {meta['loadavg'][0]} at start, "
        f"{meta['loadavg'][1]} at end ({_cpus()} CPUs: above that, other work competed for them).\n"
    )
    (RESULTS / "cache.md").write_text(md)
    return md


def parse_plan(argv: Sequence[str] | None) -> tuple[Plan, bool]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--sizes", type=int, nargs="+", help="index sizes (default 10000 100000; quick: 2000 10000)")
    ap.add_argument("--datasets", nargs="+", choices=["random", "clustered"], help="default: both")
    ap.add_argument("--no-sweep", action="store_true", help="skip the M / EF_CONSTRUCTION / EF_RUNTIME sweeps")
    ap.add_argument("--no-redisvl", action="store_true", help="skip the RedisVL comparison")
    args = ap.parse_args(argv)
    defaults = CacheSettings()
    main = (defaults.hnsw_m, defaults.hnsw_ef_construction, defaults.ef_runtime)
    if args.quick:
        plan = Plan(
            (2_000, 10_000),
            min(args.queries, 200),
            ("random", "clustered"),
            5_000,
            ((16, 200), main[:2]),
            (10, 32, main[2]),
            *main,
        )
    else:
        sweep = ((16, 200), (32, 100), (32, 200))
        plan = Plan(
            (10_000, 100_000),
            args.queries,
            ("random", "clustered"),
            20_000,
            sweep,
            tuple(sorted({10, 20, 32, 64, 128, main[2]})),
            *main,
        )
    plan = dataclasses.replace(
        plan,
        sizes=tuple(args.sizes or plan.sizes),
        datasets=tuple(args.datasets or plan.datasets),
        redisvl=not args.no_redisvl,
    )
    if args.no_sweep:
        plan = dataclasses.replace(plan, sweep=(), efs=(plan.main_ef,))
    return plan, args.quick


async def run(argv: Sequence[str] | None = None) -> None:
    plan, quick = parse_plan(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    port = free_port()
    valkey = ManagedProcess(
        "valkey", valkey_command(port, work / "valkey"), work / "valkey.log", ready=lambda: wait_tcp(port, 0.1)
    ).start()
    services: list[ManagedProcess] = []
    try:
        valkey.wait_ready(20)
        url = f"redis://127.0.0.1:{port}/0"
        bench = Bench(plan, url, port)
        r = aioredis.Redis.from_url(url, protocol=2)
        info = await r.info("server")
        rng = np.random.default_rng(1234)
        if plan.sweep:
            print(f"== M/EF_CONSTRUCTION sweep at {plan.sweep_size} random vectors", flush=True)
            await bench.sweep(r, rng)
        s = bench.settings("bench_main", plan.main_m, plan.main_efc, plan.main_ef)
        urls: dict[str, str] = {}
        # the service as it runs now, and with lookup_script off (the two-round-trip lookup), on one index
        for mode, env in (("script", "true"), ("two_trips", "false")):
            service_port = free_port()
            service_url = f"http://127.0.0.1:{service_port}"
            proc = ManagedProcess(
                f"cache_service_{mode}",
                [
                    sys.executable,
                    "-m",
                    "cache_service",
                    "--port",
                    str(service_port),
                    "--redis-url",
                    url,
                    "--index-name",
                    s.index_name,
                    "--key-prefix",
                    s.key_prefix,
                    "--max-entries",
                    str(s.max_entries),
                    "--ttl-seconds",
                    str(s.ttl_seconds),
                    "--log-level",
                    "warning",
                ],
                work / f"cache_service_{mode}.log",
                cwd=ROOT,
                env={**os.environ, "CACHE_LOOKUP_SCRIPT": env},
                ready=functools.partial(wait_http_ok, f"{service_url}/health", 0.2),
            ).start()
            services.append(proc)
            proc.wait_ready(60)
            urls[mode] = service_url
        print("== lookups: raw search, the service's stages, HTTP paths" + (", RedisVL" if plan.redisvl else ""))
        await bench.main_runs(r, rng, urls)
        await r.aclose()
        meta = {
            "machine": f"{platform.machine()} {platform.processor() or ''} ({_cpus()} CPUs)".replace("  ", " "),
            "redis": f"Valkey {info.get('valkey_version', info.get('redis_version'))} + RediSearch 2.10",
            "quick": quick,
            "command": "python benchmarks/cache/run.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
            "total_s": round(time.perf_counter() - started),
            # other work on the machine skews latencies: 1-minute load average at start and end
            "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
        print()
        print(write(bench, plan, meta))
    finally:
        for proc in services:
            proc.stop()
        valkey.stop()
        shutil.rmtree(work, ignore_errors=True)


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
