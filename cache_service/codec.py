"""Wire formats shared by the service and its client: embeddings as base64 float32, entry keys, tag values."""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata

import numpy as np
import numpy.typing as npt

__all__ = [
    "ANONYMOUS_TENANT_TAG",
    "SCOPE_ID_LEN",
    "decode_embedding",
    "encode_embedding",
    "entry_id",
    "normalize_prompt",
    "scope_id",
    "tenant_tag",
]

ANONYMOUS_TENANT_TAG = "anon"


def encode_embedding(vector: npt.ArrayLike) -> str:
    """A 1-d vector as base64 of little-endian float32 bytes."""
    arr = np.ascontiguousarray(np.asarray(vector, dtype="<f4").reshape(-1))
    return base64.b64encode(arr.tobytes()).decode("ascii")


def decode_embedding(data: str, dim: int) -> npt.NDArray[np.float32]:
    """Inverse of `encode_embedding`; ValueError unless it is `dim` finite, non-zero float32 values."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("embedding is not valid base64") from e
    if len(raw) != dim * 4:
        raise ValueError(f"embedding has {len(raw) // 4} float32 values, the index expects {dim}")
    vec = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vec)):
        raise ValueError("embedding holds NaN or infinity")
    if not np.any(vec):
        raise ValueError("embedding is the zero vector")
    return vec


def normalize_prompt(prompt: str) -> str:
    """NFKC, trimmed, runs of whitespace folded to one space: the text the exact-match key hashes."""
    return " ".join(unicodedata.normalize("NFKC", prompt).split())


def tenant_tag(tenant: str | None) -> str:
    """The TAG value stored for a tenant; prefixed so that no tenant name can equal the anonymous one."""
    return ANONYMOUS_TENANT_TAG if not tenant else f"u:{tenant}"


SCOPE_ID_LEN = 12


def scope_id(*, model: str, fingerprint: str, tenant: str | None) -> str:
    """Short hash of a scope: names the per-scope set of entry ids (its size picks the search strategy)."""
    h = hashlib.sha256()
    for part in ("v1", model, fingerprint, tenant_tag(tenant)):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:SCOPE_ID_LEN]


def entry_id(prompt: str, *, model: str, fingerprint: str, tenant: str | None) -> str:
    """Deterministic id of (normalised prompt, scope): the exact-match fast path is one HMGET on it.
    It starts with the scope id, so the entry's scope set is known from the id alone."""
    sid = scope_id(model=model, fingerprint=fingerprint, tenant=tenant)
    digest = hashlib.sha256(f"{sid}\x00{normalize_prompt(prompt)}".encode()).hexdigest()
    return sid + digest[: 40 - SCOPE_ID_LEN]
