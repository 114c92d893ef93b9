"""What GET /config shows: the active config as JSON-able data, secrets replaced by "***".

A key is secret when one of its snake/kebab-case words is, or ends with, key/secret/token/password (so `api_key`,
`apikey`, `access_token`, `key_file` are hidden, `keywords` and `max_tokens` are not); credentials inside URLs
(`redis://user:pass@host`) are hidden too, and every value of a `headers` mapping (e.g. an OTLP exporter's auth).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

__all__ = ["redact_config"]


def redact_config(cfg: BaseModel) -> dict[str, Any]:
    """`cfg` dumped as JSON data (YAML key names), secrets redacted."""
    redacted = _redact(cfg.model_dump(mode="json", by_alias=True))
    assert isinstance(redacted, dict)
    return redacted


_SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential", "authorization")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def _is_secret(key: str) -> bool:
    words = re.split(r"[_\-.\s]+", key.lower())
    return any(w.endswith(_SECRET_WORDS) for w in words if w)


def _redact(value: Any, key: str = "") -> Any:
    if key and _is_secret(key) and value not in (None, "", [], {}):
        return "***"
    if key.lower() == "headers" and isinstance(value, dict):  # e.g. an OTLP exporter's auth headers, any name
        return {k: "***" for k in value}
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub("***@", value)
    return value
