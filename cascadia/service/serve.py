"""``cascadia-ensemble serve``: the service's settings checked, then uvicorn runs the app.

Bad settings (an unreadable token file, a port already taken) are refused in one line
before anything listens. Behind a reverse proxy, uvicorn reads the client's address and
scheme from ``X-Forwarded-*`` headers sent by the addresses in ``forwarded_allow_ips``.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from cascadia.service.app import ServiceSettings, create_app
from cascadia.service.auth import TokenError, load_token

__all__ = ["ServeError", "serve"]


class ServeError(ValueError):
    """The service cannot start with these settings (one line)."""


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ServeError(f"--port must be 1-65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def serve(
    results: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token_file: str | None = None,
    forwarded_allow_ips: str = "127.0.0.1",
    log_level: str = "info",
    **settings: Any,
) -> None:
    """Serve ``results`` until interrupted.

    Parameters
    ----------
    results
        The results store (folder or fsspec URL); it may not exist yet (a run writes it).
    host, port
        Where to listen (loopback by default: put a TLS proxy in front, docs/serve.md).
    token_file
        File holding the bearer token of ``POST /runs`` (else ``$CASCADIA_SERVICE_TOKEN``).
    forwarded_allow_ips
        Proxies whose ``X-Forwarded-For``/``-Proto`` headers are trusted.
    **settings
        Further :class:`~cascadia.service.app.ServiceSettings` (model, cache, cluster,
        workers, limits).
    """
    for name in ("workers", "max_rows", "max_days", "max_runs"):
        value = settings.get(name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise ServeError(f"{flag} must be at least 1, got {value}")
    try:
        token = load_token(token_file)
    except TokenError as exc:
        raise ServeError(str(exc)) from None
    _check_port(host, port)
    app = create_app(ServiceSettings(results=results, token=token, **settings))
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
    )
