"""The bearer token that guards what changes the store (``POST /runs``).

The token comes from a file (``--token-file``, readable by the service's user only) or
the ``CASCADIA_SERVICE_TOKEN`` environment variable, is compared in constant time, and
never appears in a log line, a repr or a response. Without a token, runs are refused.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from fastapi import HTTPException, Request

__all__ = ["TOKEN_ENV", "BearerToken", "TokenError", "load_token"]

TOKEN_ENV = "CASCADIA_SERVICE_TOKEN"


class TokenError(ValueError):
    """The token file cannot give a token (one line)."""


def load_token(token_file: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The token of ``token_file``, else of ``$CASCADIA_SERVICE_TOKEN``, else ``None``."""
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TokenError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        if not token:
            raise TokenError(f"the token file {token_file} is empty")
        return token
    token = (environ if environ is not None else os.environ).get(TOKEN_ENV, "").strip()
    return token or None


class BearerToken:
    """A FastAPI dependency: 401 without the ``Authorization: Bearer <token>`` header or
    with a wrong token, 403 when the service has no token (runs disabled)."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    def __repr__(self) -> str:
        return f"BearerToken({'set' if self._token else 'unset'})"

    def __call__(self, request: Request) -> None:
        if self._token is None:
            raise HTTPException(
                403,
                f"runs are disabled: start the service with --token-file or ${TOKEN_ENV}",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token
        ):
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
