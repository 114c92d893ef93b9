"""Pure parts of the cache service: wire codec, keys, settings, index schema comparison, request validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cache_service.codec import decode_embedding, encode_embedding, entry_id, normalize_prompt, tenant_tag
from cache_service.errors import InvalidRequestError
from cache_service.index import IndexSpec, live_signature
from cache_service.models import LookupRequest, StoreRequest, parse
from cache_service.settings import CacheSettings


def test_embedding_round_trip() -> None:
    v = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    assert np.array_equal(decode_embedding(encode_embedding(v), 384), v)
    assert np.array_equal(decode_embedding(encode_embedding(v.tolist()), 384), v)  # lists are fine too
    assert len(encode_embedding(v)) == 4 * 384 * 4 // 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not base64!", "base64"),
        (encode_embedding(np.ones(10)), "expects 384"),
        (encode_embedding(np.zeros(384)), "zero"),
        (encode_embedding(np.full(384, np.nan)), "NaN"),
    ],
)
def test_embedding_rejects(data: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_embedding(data, 384)


def test_prompt_normalisation_and_ids() -> None:
    assert normalize_prompt("  How   do\tI\n sort? ") == "How do I sort?"
    assert normalize_prompt("ｆｕｌｌｗｉｄｔｈ") == "fullwidth"
    base = entry_id("How do I sort?", model="m", fingerprint="f", tenant=None)
    assert entry_id(" How  do I sort?\n", model="m", fingerprint="f", tenant=None) == base
    others = {
        entry_id("How do I sort?", model="m2", fingerprint="f", tenant=None),
        entry_id("How do I sort?", model="m", fingerprint="g", tenant=None),
        entry_id("How do I sort?", model="m", fingerprint="f", tenant="acme"),
        entry_id("how do i sort?", model="m", fingerprint="f", tenant=None),
    }
    assert base not in others and len(others) == 4
    assert tenant_tag(None) == tenant_tag("") != tenant_tag("anon")


def test_settings_from_env_and_overrides() -> None:
    env = {
        "CACHE_PORT": "9000",
        "CACHE_DEFAULT_THRESHOLD": "0.9",
        "CACHE_MAX_ENTRIES": "10",
        "CACHE_HOST": "",
    }
    s = CacheSettings.from_env(env, port=9100, redis_url=None)
    assert (s.port, s.default_threshold, s.max_entries, s.host) == (9100, 0.9, 10, "127.0.0.1")
    assert s.effective_eviction_batch == 1 and s.lru_key == "llmcache:lru"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CACHE_DEFAULT_THRESHOLD": "1.5"}, "cosine similarity in"),
        ({"CACHE_PORT": "eighty"}, "CACHE_PORT='eighty' is not a int"),
        ({"CACHE_TTL_SECONDS": "0"}, "ttl_seconds"),
        ({"CACHE_REDIS_URL": "http://x"}, "redis_url"),
    ],
)
def test_settings_errors_are_clear(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CacheSettings.from_env(env)


def _ft_info(spec: IndexSpec, dim: int | None = None, m: int | None = None) -> dict[str, object]:
    """FT.INFO as RediSearch 2.10 answers it over RESP2 (flags are bare words inside attribute lists)."""
    tags = [
        [
            b"identifier",
            t.encode(),
            b"attribute",
            t.encode(),
            b"type",
            b"TAG",
            b"SEPARATOR",
            b"\x1f",
            b"CASESENSITIVE",
        ]
        for t in ("model", "fp", "tenant")
    ]
    vec: list[object] = [b"identifier", b"vec", b"attribute", b"vec", b"type", b"VECTOR", b"algorithm", b"HNSW"]
    vec += [b"data_type", b"FLOAT32", b"dim", dim or spec.dim, b"distance_metric", b"COSINE"]
    vec += [b"M", m or spec.m, b"ef_construction", spec.ef_construction]
    return {
        "index_definition": [
            b"key_type",
            b"HASH",
            b"prefixes",
            [spec.prefix.encode()],
            b"default_score",
            b"1",
        ],
        "attributes": [*tags, vec],
    }


def test_index_signature_comparison() -> None:
    spec = IndexSpec.from_settings(CacheSettings())
    assert live_signature(_ft_info(spec)) == spec.signature()
    assert live_signature(_ft_info(spec, dim=768)) != spec.signature()
    assert live_signature(_ft_info(spec, m=16)) != spec.signature()
    args = spec.create_args()
    assert args[:3] == ["FT.CREATE", spec.name, "ON"] and "COSINE" in args and "HNSW" in args


def test_request_validation() -> None:
    emb = encode_embedding(np.ones(384))
    ok = parse(LookupRequest, _j({"prompt": "p", "embedding": emb, "model": "m", "fingerprint": "f", "extra": 1}))
    assert ok.tenant is None and ok.threshold is None
    bad = [
        {"prompt": "p", "embedding": emb, "model": "m", "fingerprint": "f", "threshold": 1.5},
        {"prompt": "p", "embedding": emb, "model": "bad\x1fname", "fingerprint": "f"},
        {"prompt": "", "embedding": emb, "model": "m", "fingerprint": "f"},
        {"prompt": "p", "embedding": emb, "model": "m"},
    ]
    for body in bad:
        with pytest.raises(InvalidRequestError) as e:
            parse(LookupRequest, _j(body))
        assert e.value.status_code == 400
    with pytest.raises(InvalidRequestError, match="response"):
        parse(StoreRequest, _j({"prompt": "p", "embedding": emb, "model": "m", "fingerprint": "f", "response": "x"}))
    with pytest.raises(InvalidRequestError, match="JSON object"):
        parse(StoreRequest, b"[1, 2]")
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        parse(StoreRequest, b"{")
    with pytest.raises(InvalidRequestError, match=r"JSON|UTF-8"):  # lone surrogate: never a 500
        parse(LookupRequest, _j({"prompt": "\ud800", "embedding": emb, "model": "m", "fingerprint": "f"}))
    for raw in (b'{"prompt": "\xff"}', b'{"prompt": "\xed\xa0\x80"}'):  # raw bytes that are not UTF-8
        with pytest.raises(InvalidRequestError, match="not valid UTF-8") as err:
            parse(LookupRequest, raw)
        assert (err.value.status_code, err.value.code) == (400, "invalid_utf8")


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()
