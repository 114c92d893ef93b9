"""The cache service against the real Valkey + RediSearch: hits, misses, thresholds, scope, TTL, eviction,
the exact-match fast path, invalidation, index migration, bad input and metrics. Lookups go through the
router's `CacheClient` over real HTTP."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from cache_service.client import CacheClient, CacheOutcome
from cache_service.codec import encode_embedding, entry_id
from cache_service.scope import fingerprint, prompt_text
from cache_service.service import CacheService
from router_service.core.render import render_cached
from tests.integration.cache.conftest import (
    ADMIN_HEADERS,
    TEST_ADMIN_TOKEN,
    Encoder,
    RunningCache,
    ServeCache,
    unique_settings,
)
from tests.integration.conftest import RedisServer
from wire.sse import assemble_stream

pytestmark = pytest.mark.integration

QUESTION = "How do I reverse a list in Python?"
PARAPHRASE = "What's the way to reverse a Python list?"
UNRELATED = "What is the capital of France?"
BODY: dict[str, Any] = {
    "model": "qwen3-8b",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}],
    "temperature": 0.0,
}
FP = fingerprint(BODY)


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "qwen3-8b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def client_for(cache: RunningCache) -> CacheClient:
    # Generous budgets and a breaker that never opens: these tests check behaviour, and a slow moment on a noisy
    # machine must not turn a store or lookup into a silent miss. The 20 ms budget is checked in test_cache_faults.
    return CacheClient(
        cache.url, timeout_s=10.0, store_timeout_s=10.0, failure_threshold=1_000_000, admin_token=TEST_ADMIN_TOKEN
    )


def unit(v: npt.ArrayLike) -> npt.NDArray[np.float32]:
    a = np.asarray(v, dtype=np.float32)
    return (a / np.linalg.norm(a)).astype(np.float32)


def at_similarity(v: npt.NDArray[np.float32], cos: float, seed: int = 0) -> npt.NDArray[np.float32]:
    """A unit vector whose cosine with unit `v` is exactly `cos`."""
    r = np.random.default_rng(seed).standard_normal(v.shape[0])
    r -= r.dot(v) * v
    r /= np.linalg.norm(r)
    return unit(cos * v.astype(np.float64) + np.sqrt(1 - cos**2) * r)


async def test_paraphrase_hits_unrelated_misses(serve_cache: ServeCache, encode: Encoder) -> None:
    q, para, other = encode([QUESTION, PARAPHRASE, UNRELATED])
    async with serve_cache() as cache, client_for(cache) as client:
        scope: dict[str, Any] = {"model": "qwen3-8b", "fingerprint": FP, "tenant": None}
        assert await client.lookup(prompt=QUESTION, embedding=q, **scope) is None
        assert client.last_outcome is CacheOutcome.MISS
        assert await client.store(prompt=QUESTION, embedding=q, response=completion("Use reversed()."), **scope)

        hit = await client.lookup(prompt=PARAPHRASE, embedding=para, threshold=0.85, **scope)
        assert hit is not None and not hit.exact
        assert hit.response == completion("Use reversed().")
        assert hit.prompt == QUESTION
        assert 0.85 <= hit.similarity < 0.999
        assert await client.lookup(prompt=UNRELATED, embedding=other, threshold=0.5, **scope) is None
        # the same paraphrase under a stricter (per-category) threshold misses
        assert await client.lookup(prompt=PARAPHRASE, embedding=para, threshold=0.99, **scope) is None


async def test_threshold_edge(serve_cache: ServeCache) -> None:
    v = unit(np.random.default_rng(1).standard_normal(384))
    near = at_similarity(v, 0.9)
    async with serve_cache(default_threshold=0.95) as cache, client_for(cache) as client:
        scope: dict[str, Any] = {"model": "m", "fingerprint": "f", "tenant": None}
        assert await client.store(prompt="stored", embedding=v, response=completion("x"), **scope)
        hit = await client.lookup(prompt="query", embedding=near, threshold=0.899, **scope)
        assert hit is not None and abs(hit.similarity - 0.9) < 1e-4
        assert await client.lookup(prompt="query", embedding=near, threshold=0.901, **scope) is None
        assert await client.lookup(prompt="query", embedding=near, **scope) is None  # default 0.95
        assert await client.lookup(prompt="query", embedding=near, threshold=0.0, **scope) is not None
        # 1.0 means exact repeats only: the same vector under another prompt does not reach it (float32)
        assert await client.lookup(prompt="stored", embedding=near, threshold=1.0, **scope) is not None


async def test_exact_match_fast_path(serve_cache: ServeCache) -> None:
    v = unit(np.random.default_rng(2).standard_normal(384))
    orthogonal = at_similarity(v, 0.0)
    async with serve_cache() as cache, client_for(cache) as client:
        scope: dict[str, Any] = {"model": "m", "fingerprint": "f", "tenant": "acme"}
        assert await client.store(prompt="  What is  HNSW? ", embedding=v, response=completion("a graph"), **scope)
        # whitespace-normalised repeat: found by key even though its vector points elsewhere
        hit = await client.lookup(prompt="What is HNSW?", embedding=orthogonal, threshold=0.99, **scope)
        assert hit is not None and hit.exact and hit.similarity == 1.0
        assert cache.service.counts["exact_hits"] == 1
        # but the exact path is scoped too
        assert await client.lookup(prompt="What is HNSW?", embedding=orthogonal, **{**scope, "tenant": "b"}) is None


async def test_lone_surrogates_reach_the_service_as_u_fffd(serve_cache: ServeCache) -> None:
    """A str holding a lone surrogate (read from a JSON escape) has no UTF-8 form: the client sends U+FFFD instead
    of failing the call with an encode error, and the entry is found again under either spelling."""
    v = unit(np.random.default_rng(4).standard_normal(384))
    async with serve_cache() as cache, client_for(cache) as client:
        scope: dict[str, Any] = {"model": "m\udc80", "fingerprint": "f", "tenant": "t\ud800"}
        assert await client.lookup(prompt="odd \ud800 prompt", embedding=v, **scope) is None
        assert client.last_outcome is CacheOutcome.MISS
        assert await client.store(prompt="odd \ud800 prompt", embedding=v, response=completion("\udfff"), **scope)
        hit = await client.lookup(prompt="odd \ufffd prompt", embedding=v, threshold=0.99, **scope)
        assert hit is not None and hit.exact
        assert hit.response == completion("\ufffd")
        assert await client.invalidate(model="m\udc80") == 1


async def test_scope_model_fingerprint_tenant(serve_cache: ServeCache, encode: Encoder) -> None:
    q, para = encode([QUESTION, PARAPHRASE])
    other_system = copy.deepcopy(BODY)
    other_system["messages"][0]["content"] = "Answer like a pirate."
    with_tools = {**BODY, "tools": [{"type": "function", "function": {"name": "run_python"}}]}
    tenant = "acme, inc/eu {x}"  # punctuation a TAG query would choke on unless passed as a parameter
    async with serve_cache() as cache, client_for(cache) as client:
        assert await client.store(
            prompt=QUESTION,
            embedding=q,
            model="Qwen/Qwen3-8B",
            fingerprint=FP,
            tenant=tenant,
            response=completion("scoped"),
        )

        async def look(**changes: Any) -> bool:
            scope: dict[str, Any] = {"model": "Qwen/Qwen3-8B", "fingerprint": FP, "tenant": tenant, **changes}
            return await client.lookup(prompt=PARAPHRASE, embedding=para, threshold=0.8, **scope) is not None

        assert await look()
        assert not await look(model="qwen3-32b")
        assert not await look(model="qwen/qwen3-8b")  # case-sensitive
        assert not await look(fingerprint=fingerprint(other_system))
        assert not await look(fingerprint=fingerprint(with_tools))
        assert not await look(tenant="acme")
        assert not await look(tenant=None)
        # the stream flag does not change the scope: a streamed request hits the same entry
        assert await look(fingerprint=fingerprint({**BODY, "stream": True, "stream_options": {"include_usage": 1}}))


@pytest.mark.parametrize("exact_search_max", [0, 1000], ids=["hnsw", "brute-force"])
async def test_both_search_strategies_agree(serve_cache: ServeCache, exact_search_max: int) -> None:
    """Scopes above `exact_search_max` entries go through HNSW, smaller ones are brute-forced."""
    rng = np.random.default_rng(8)
    vecs = [unit(rng.standard_normal(384)) for _ in range(40)]
    async with serve_cache(exact_search_max=exact_search_max) as cache, client_for(cache) as client:
        scope: dict[str, Any] = {"model": "m", "fingerprint": "f", "tenant": None}
        for i, v in enumerate(vecs):
            assert await client.store(prompt=f"p{i}", embedding=v, response=completion(str(i)), **scope)
        for i in (0, 17, 39):
            hit = await client.lookup(prompt=f"q{i}", embedding=at_similarity(vecs[i], 0.9, seed=i), **scope)
            assert hit is not None and hit.response == completion(str(i))
        assert await client.lookup(prompt="q", embedding=vecs[0], **{**scope, "tenant": "t"}) is None
        scope_key = cache.service.repo.scope_key(entry_id("p0", model="m", fingerprint="f", tenant=None))
        assert await cache.redis.zcard(scope_key) == 40
        assert await client.invalidate(model="m") == 40
        assert await cache.redis.exists(scope_key) == 0


async def test_ttl_expiry_and_refresh_on_hit(serve_cache: ServeCache) -> None:
    v = unit(np.random.default_rng(3).standard_normal(384))
    async with serve_cache(ttl_seconds=2, janitor_interval_s=60) as cache, client_for(cache) as client:
        scope: dict[str, Any] = {"model": "m", "fingerprint": "f", "tenant": None}
        assert await client.store(prompt="short", embedding=v, response=completion("x"), ttl_seconds=1, **scope)
        assert await client.store(prompt="default", embedding=unit(-v), response=completion("y"), **scope)
        assert await client.lookup(prompt="short", embedding=v, **scope) is not None
        key = cache.key(entry_id("default", model="m", fingerprint="f", tenant=None))
        assert 0 < await cache.redis.pttl(key) <= 2000
        await asyncio.sleep(1.3)
        assert await client.lookup(prompt="short (paraphrased)", embedding=v, **scope) is None  # expired
        assert await client.lookup(prompt="default", embedding=unit(-v), **scope) is not None  # refreshes
        await asyncio.sleep(0.1)  # the refresh runs after the response
        assert await cache.redis.pttl(key) > 1500
        await asyncio.sleep(2.2)
        assert await client.lookup(prompt="default", embedding=unit(-v), **scope) is None
        assert await cache.redis.zcard(cache.settings.lru_key) == 2  # expired members linger ...
        assert await cache.service.repo.prune() == 2  # ... until the janitor's sweep
        assert await cache.redis.zcard(cache.settings.lru_key) == 0
        assert await cache.redis.exists(cache.service.repo.scope_key(entry_id("short", **scope))) == 0


async def test_eviction_keeps_the_most_recently_used(serve_cache: ServeCache) -> None:
    rng = np.random.default_rng(4)
    vecs = [unit(rng.standard_normal(384)) for _ in range(8)]
    async with serve_cache(max_entries=5, eviction_batch=1) as cache, client_for(cache) as client:
        scope: dict[str, Any] = {"model": "m", "fingerprint": "f", "tenant": None}
        for i in range(5):
            assert await client.store(prompt=f"p{i}", embedding=vecs[i], response=completion(str(i)), **scope)
            await asyncio.sleep(0.01)
        assert await client.lookup(prompt="p0", embedding=vecs[0], **scope) is not None  # p0 is now recent
        await asyncio.sleep(0.05)
        for i in range(5, 8):
            assert await client.store(prompt=f"p{i}", embedding=vecs[i], response=completion(str(i)), **scope)
            await asyncio.sleep(0.01)
        present = [await client.lookup(prompt=f"p{i}", embedding=vecs[i], **scope) is not None for i in range(8)]
        assert present == [True, False, False, False, True, True, True, True]
        stats = (await httpx.AsyncClient().get(f"{cache.url}/v1/cache/stats")).json()
        assert stats["entries"] == 5 and stats["lru_size"] == 5 and stats["counters"]["evicted"] == 3
        scope_key = cache.service.repo.scope_key(entry_id("p0", model="m", fingerprint="f", tenant=None))
        assert await cache.redis.zcard(scope_key) == 5  # evicted ids left their scope set too


async def test_amortised_eviction_stays_bounded(serve_cache: ServeCache) -> None:
    rng = np.random.default_rng(5)
    async with serve_cache(max_entries=20, eviction_batch=5) as cache, client_for(cache) as client:
        scope: dict[str, Any] = {"model": "m", "fingerprint": "f", "tenant": None}
        for i in range(60):
            assert await client.store(prompt=f"q{i}", embedding=unit(rng.standard_normal(384)), response={}, **scope)
            assert await cache.redis.zcard(cache.settings.lru_key) <= 20 + 5 - 1
        assert cache.service.counts["evicted"] >= 35


async def test_invalidate(serve_cache: ServeCache) -> None:
    rng = np.random.default_rng(6)
    async with (
        serve_cache() as cache,
        client_for(cache) as client,
        httpx.AsyncClient(base_url=cache.url, headers=ADMIN_HEADERS) as http,
    ):
        stored = []
        for i, (model, tenant) in enumerate([("a", None), ("a", "t1"), ("b", None), ("b", "t1"), ("b", "t2")]):
            v = unit(rng.standard_normal(384))
            stored_ok = await client.store(
                prompt=f"p{i}", embedding=v, model=model, fingerprint="f", tenant=tenant, response={}
            )
            assert stored_ok
            stored.append(entry_id(f"p{i}", model=model, fingerprint="f", tenant=tenant))
        assert (await http.post("/v1/cache/invalidate", json={"entry_id": stored[0]})).json() == {"deleted": 1}
        assert await client.invalidate(tenant="t1") == 2
        body = {"prompt": "p2", "model": "b", "fingerprint": "f"}
        assert (await http.post("/v1/cache/invalidate", json=body)).json() == {"deleted": 1}
        assert await client.invalidate(everything=True) == 1
        assert await cache.redis.zcard(cache.settings.lru_key) == 0


async def test_bad_input_is_4xx_openai_error(serve_cache: ServeCache) -> None:
    emb = encode_embedding(unit(np.ones(384)))
    ok: dict[str, Any] = {"prompt": "p", "embedding": emb, "model": "m", "fingerprint": "f"}
    cases: list[tuple[str, Any, int]] = [
        ("/v1/cache/lookup", b"{nope", 400),
        ("/v1/cache/lookup", {**ok, "embedding": encode_embedding(np.ones(10))}, 400),
        ("/v1/cache/lookup", {**ok, "embedding": "%%%"}, 400),
        ("/v1/cache/lookup", {**ok, "embedding": [0.0] * 384}, 400),
        ("/v1/cache/lookup", {**ok, "threshold": 2}, 400),
        ("/v1/cache/lookup", {**ok, "model": "m\nx"}, 400),
        ("/v1/cache/lookup", {**ok, "prompt": "x" * 40_000}, 400),
        ("/v1/cache/store", ok, 400),  # no response
        ("/v1/cache/store", {**ok, "response": {}, "ttl_seconds": 10**9}, 400),
        ("/v1/cache/invalidate", {}, 400),
        ("/v1/cache/lookup", b"x" * (5 * 1024 * 1024), 413),
        ("/v1/cache/nope", ok, 404),
    ]
    async with serve_cache() as cache, httpx.AsyncClient(base_url=cache.url, headers=ADMIN_HEADERS) as http:
        for path, body, status in cases:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            r = await http.post(path, content=content, headers={"content-type": "application/json"})
            assert r.status_code == status, (path, r.text)
            err = r.json()["error"]
            assert set(err) == {"message", "type", "code"} and err["message"]
        r = await http.get("/v1/cache/lookup")
        assert r.status_code == 405 and "error" in r.json()
        ok_list = {**ok, "embedding": [1.0] * 384}  # a JSON list is accepted too
        assert (await http.post("/v1/cache/lookup", json=ok_list)).json()["hit"] is False


async def test_refusal_is_not_stored(serve_cache: ServeCache) -> None:
    """The service itself refuses a refusal (content_filter finish or a `refusal` message): 400 not_cacheable,
    nothing written; the same store with an ordinary answer is written (the positive control)."""
    v = unit(np.random.default_rng(11).standard_normal(384))
    ok: dict[str, Any] = {"prompt": "p", "embedding": encode_embedding(v), "model": "m", "fingerprint": "f"}
    filtered = completion("I can't help with that.")
    filtered["choices"][0]["finish_reason"] = "content_filter"
    refused = completion("")
    refused["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "No."}
    async with serve_cache() as cache, httpx.AsyncClient(base_url=cache.url, headers=ADMIN_HEADERS) as http:
        for response in (filtered, refused):
            r = await http.post("/v1/cache/store", json={**ok, "response": response})
            assert r.status_code == 400 and r.json()["error"]["code"] == "not_cacheable", r.text
            assert (await http.post("/v1/cache/lookup", json=ok)).json()["hit"] is False
        assert cache.service.counts["stores"] == 0
        r = await http.post("/v1/cache/store", json={**ok, "response": completion("Paris.")})
        assert r.status_code == 200, r.text
        assert (await http.post("/v1/cache/lookup", json=ok)).json()["hit"] is True


async def test_metrics_and_health(serve_cache: ServeCache) -> None:
    v = unit(np.random.default_rng(7).standard_normal(384))
    async with (
        serve_cache() as cache,
        client_for(cache) as client,
        httpx.AsyncClient(base_url=cache.url) as http,
    ):
        scope: dict[str, Any] = {"model": "m", "fingerprint": "f", "tenant": None}
        assert await client.store(prompt="p", embedding=v, response={}, **scope)
        await client.lookup(prompt="p", embedding=v, **scope)
        await client.lookup(prompt="other", embedding=at_similarity(v, 0.1), **scope)
        await cache.service.stats()
        text = (await http.get("/metrics")).text
        values = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }
        assert values["llm_cache_hits_total"] == 1 and values["llm_cache_misses_total"] == 1
        assert values["llm_cache_entries_total"] == 1
        assert values['llm_cache_operation_duration_seconds_count{operation="lookup"}'] == 2
        assert values['llm_cache_operation_duration_seconds_count{operation="store"}'] == 1
        health = (await http.get("/health")).json()
        assert health["status"] == "healthy" and health["redis"] == "ok"


async def test_index_is_migrated_when_the_schema_changes(serve_cache: ServeCache) -> None:
    v8 = unit(np.arange(1, 9))
    async with serve_cache(embedding_dim=8) as cache8, client_for(cache8) as client:
        assert await client.store(prompt="p", embedding=v8, model="m", fingerprint="f", response={})
        name, prefix = cache8.settings.index_name, cache8.settings.key_prefix
        async with serve_cache(index_name=name, key_prefix=prefix, embedding_dim=8, hnsw_m=8) as same_dim:
            assert same_dim.service.index_ready
            # M changed, dim did not: the entry survives, re-indexed
            for _ in range(50):
                if (await same_dim.service.stats())["entries"] == 1:
                    break
                await asyncio.sleep(0.05)
            assert (await same_dim.service.stats())["entries"] == 1
        async with serve_cache(index_name=name, key_prefix=prefix) as cache384, client_for(cache384) as c384:
            info = await cache384.redis.execute_command("FT.INFO", name)  # type: ignore[no-untyped-call]
            attrs = dict(zip(info[::2], info[1::2], strict=False))[b"attributes"]
            assert any(b"dim" in a and a[a.index(b"dim") + 1] == 384 for a in attrs)
            assert (await cache384.service.stats())["entries"] == 0  # 8-d entries are useless: dropped
            v = unit(np.ones(384))
            assert await c384.store(prompt="p", embedding=v, model="m", fingerprint="f", response={"ok": 1})
            hit = await c384.lookup(prompt="p2", embedding=v, model="m", fingerprint="f")
            assert hit is not None and hit.response == {"ok": 1}


async def test_streamed_completion_round_trip(serve_cache: ServeCache, encode: Encoder) -> None:
    """What the router does with a streamed response: assemble, store, and replay on a later hit."""
    chunks = [
        {"role": "assistant", "content": ""},
        {"content": "Use "},
        {"content": "reversed()."},
    ]
    head = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "qwen3-8b"}
    raw = b"".join(
        b"data: "
        + json.dumps({**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}).encode()
        + b"\n\n"
        for d in chunks
    )
    raw += b"data: " + json.dumps({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).encode()
    raw += b"\n\ndata: [DONE]\n\n"
    assembled = assemble_stream(raw)
    assert assembled is not None
    body = {**BODY, "stream": True}
    prompt = prompt_text(body)
    assert prompt == QUESTION
    q, para = encode([prompt, PARAPHRASE])
    async with serve_cache() as cache, client_for(cache) as client:
        scope: dict[str, Any] = {"model": "qwen3-8b", "fingerprint": fingerprint(body), "tenant": None}
        assert await client.store(prompt=prompt, embedding=q, response=assembled, **scope)
        hit = await client.lookup(prompt=PARAPHRASE, embedding=para, threshold=0.85, **scope)
        assert hit is not None
        replayed, _ = render_cached(hit.response, stream=True, body=body)
        assert assemble_stream(replayed) == assembled
        assert assembled["choices"][0]["message"]["content"] == "Use reversed()."


@pytest.mark.parametrize("yields", range(6))
async def test_stop_ends_the_janitor_even_as_it_wakes(redis_server: RedisServer, yields: int) -> None:
    """A stop() that lands while the janitor is being woken, or is talking to Redis, still ends it, promptly.
    On Python 3.11 redis-py's send (asyncio.wait_for) can swallow the cancel: the janitor ran on and a shutdown
    hung in CI. The walk over `yields` puts the cancel into the wake-up and into the Redis calls that follow."""
    service = CacheService(unique_settings(redis_server.url, janitor_interval_s=30.0))
    await service.start()
    janitor = service._janitor
    assert janitor is not None
    await asyncio.sleep(0.05)  # the janitor is now waiting for its next tick or a wake-up
    service._wakeup.set()
    for _ in range(yields):  # walk the cancel across the iterations of the wake-up
        await asyncio.sleep(0)
    t0 = time.monotonic()
    await service.stop()
    assert janitor.done()
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("lookup_script", [True, False], ids=["one-round-trip", "two-round-trips"])
@pytest.mark.parametrize("exact_search_max", [0, 1000], ids=["hnsw", "brute-force"])
async def test_lookup_paths_agree_and_refresh_hits(
    serve_cache: ServeCache, lookup_script: bool, exact_search_max: int
) -> None:
    """The one-round-trip lookup (server-side script) answers as the exact read + search does, and refreshes
    a hit's TTL and LRU score (in the lookup itself; the two-round-trip path after the response)."""
    rng = np.random.default_rng(11)
    vecs = [unit(rng.standard_normal(384)) for _ in range(6)]
    scope: dict[str, Any] = {"model": "m/x y", "fingerprint": "f", "tenant": "t"}
    async with (
        serve_cache(ttl_seconds=100, lookup_script=lookup_script, exact_search_max=exact_search_max) as cache,
        client_for(cache) as client,
    ):
        for i, v in enumerate(vecs):
            assert await client.store(prompt=f"p{i}", embedding=v, response=completion(str(i)), **scope)
        lru = cache.settings.lru_key
        key = cache.key(entry_id("p3", **scope))
        await cache.redis.expire(key, 10)
        before = await cache.redis.zscore(lru, entry_id("p3", **scope))
        hit = await client.lookup(prompt="p3, reworded", embedding=at_similarity(vecs[3], 0.9), threshold=0.85, **scope)
        assert hit is not None and not hit.exact and hit.response["choices"][0]["message"]["content"] == "3"
        assert hit.similarity == pytest.approx(0.9, abs=1e-5) and hit.entry_id == entry_id("p3", **scope)
        if not lookup_script:
            await asyncio.sleep(0.2)  # that refresh runs after the response
        assert await cache.redis.ttl(key) > 90
        assert (await cache.redis.zscore(lru, entry_id("p3", **scope)) or 0) > (before or 0)
        # below the threshold: the nearest similarity comes back, nothing is refreshed
        await cache.redis.expire(key, 10)
        miss = await client.lookup(prompt="p3?", embedding=at_similarity(vecs[3], 0.9), threshold=0.95, **scope)
        assert miss is None and client.last_outcome is CacheOutcome.MISS
        await asyncio.sleep(0.2)
        assert await cache.redis.ttl(key) <= 10
        # the exact fast path: whatever the vector
        exact = await client.lookup(prompt="  p5 ", embedding=vecs[0], threshold=1.0, **scope)
        assert exact is not None and exact.exact and exact.similarity == 1.0
        # another scope finds nothing; an empty scope needs no search
        assert await client.lookup(prompt="p3", embedding=vecs[3], **{**scope, "tenant": None}) is None
        assert cache.service.counts == {**cache.service.counts, "hits": 2, "exact_hits": 1, "misses": 2}


async def test_lookup_reloads_its_script_after_a_script_flush(serve_cache: ServeCache) -> None:
    v = unit(np.random.default_rng(12).standard_normal(384))
    scope: dict[str, Any] = {"model": "m", "fingerprint": "f", "tenant": None}
    async with serve_cache() as cache, client_for(cache) as client:
        assert await client.store(prompt="p", embedding=v, response=completion("x"), **scope)
        await cache.redis.script_flush()  # as after a Redis restart
        assert await client.lookup(prompt="q", embedding=v, **scope) is not None


async def test_store_and_invalidate_need_the_admin_token(serve_cache: ServeCache) -> None:
    v = unit(np.random.default_rng(11).standard_normal(384))
    store = {"prompt": "p", "embedding": encode_embedding(v), "model": "m", "fingerprint": "f", "response": {}}
    async with serve_cache() as cache, httpx.AsyncClient(base_url=cache.url) as http:
        for path, body in [("/v1/cache/store", store), ("/v1/cache/invalidate", {"all": True})]:
            r = await http.post(path, json=body)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
            assert r.json()["error"]["code"] == "invalid_admin_token"
            r = await http.post(path, json=body, headers={"authorization": "Bearer wrong"})
            assert r.status_code == 403, r.text
            assert (await http.post(path, json=body, headers=ADMIN_HEADERS)).status_code == 200
        # lookups (the router's request path) and health stay open
        lookup = {k: store[k] for k in ("prompt", "embedding", "model", "fingerprint")}
        assert (await http.post("/v1/cache/lookup", json=lookup)).status_code == 200
        assert (await http.get("/health")).status_code == 200
        # a client without the token cannot store: it reports a rejection, never raises
        async with CacheClient(cache.url, timeout_s=5.0, store_timeout_s=5.0) as anonymous:
            assert not await anonymous.store(prompt="q", embedding=v, model="m", fingerprint="f", response={})
            assert anonymous.last_outcome is CacheOutcome.REJECTED
