"""The admin token: what guards the write and admin endpoints of the cache service and the router.

One token per deployment, found in this order:

1. the `SEMANTIC_ROUTER_ADMIN_TOKEN` environment variable (compose / Kubernetes set it from a secret);
2. a token given by configuration (the router's `triton_router.admin_token`, the cache's `CACHE_ADMIN_TOKEN`);
3. the file `admin_token` in the run directory (`SEMANTIC_ROUTER_RUN_DIR`, default `./.run`), created with a
   random token (mode 0600) by whichever process starts first, so the router, the cache service, the local stack
   and the tests all read the same one.

Requests carry it as `Authorization: Bearer <token>`: none gives 401, a wrong one 403. The token is compared in
constant time. This module is imported by both services (the router already depends on `cache_service.client`).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "RUN_DIR_ENV_VAR",
    "TOKEN_FILE",
    "AuthFailure",
    "bearer_headers",
    "check_bearer",
    "default_run_dir",
    "resolve_admin_token",
]

ENV_VAR = "SEMANTIC_ROUTER_ADMIN_TOKEN"
RUN_DIR_ENV_VAR = "SEMANTIC_ROUTER_RUN_DIR"
TOKEN_FILE = "admin_token"


class AuthFailure(Exception):
    """A request to an admin endpoint without the right token; `status` is 401 (none) or 403 (wrong)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def default_run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_ENV_VAR) or Path.cwd() / ".run")


def resolve_admin_token(configured: str | None = None, run_dir: Path | None = None) -> str:
    """The deployment's admin token (see the module docstring); creates the run directory's file if needed."""
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        return from_env
    if configured and configured.strip():
        return configured.strip()
    folder = run_dir or default_run_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TOKEN_FILE
    if not path.exists():
        # Written whole under a private name, then linked into place: a process starting at the same moment
        # either wins the link or reads the winner's complete file, never a half-written one.
        tmp = folder / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    token = path.read_text().strip()
    if not token:
        raise RuntimeError(f"{path} is empty: delete it (a new token is generated) or write a token into it")
    return token


def check_bearer(headers: Mapping[str, str], token: str) -> None:
    """Raise AuthFailure unless `headers` (lower-case keys) carry `Authorization: Bearer <token>`."""
    value = headers.get("authorization", "")
    scheme, _, given = value.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthFailure(401, "this endpoint needs the admin token: send `Authorization: Bearer <token>`")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise AuthFailure(403, "the admin token is not valid")


def bearer_headers(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}
