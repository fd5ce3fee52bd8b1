"""Can a remote store be reached at all? One short TCP probe per endpoint, before any library.

fsspec's cloud filesystems retry a failed request for a long time: gcsfs makes six
attempts with back-off (about 70 s for one file offline, each logging a traceback),
botocore retries its connections too, and a firewall that drops packets makes every
attempt wait for a timeout. An offline machine, a typo in an endpoint or a closed
port would cost minutes per store before an error came back. A TCP connection to
the endpoint the library would talk to (through the proxy the environment sets, if
any), bounded by a few seconds, says whether there is any point in asking. The
answer is kept for a minute per endpoint, so a thousand assets on one host cost one
probe. A reachable endpoint proves nothing more: every later error is the library's.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

#: Seconds a probe may take (name lookup and connection together).
PROBE_TIMEOUT = 5.0
#: Seconds an answer is reused for the same endpoint.
ANSWER_TTL = 60.0

_DEFAULT_PORTS = {"http": 80, "https": 443}
_answers: dict[tuple[str, int], tuple[float, str | None]] = {}
_lock = threading.Lock()


class Unreachable(OSError):
    """A remote URL's endpoint does not answer; the message names the URL and the endpoint."""


def endpoint(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[str, int] | None:
    """``(host, port)`` the fsspec filesystem of ``url`` connects to; None for local URLs.

    The endpoint is the one each library documents: the URL's own host for
    HTTP(S); ``endpoint_url`` (option, ``client_kwargs`` or botocore's
    ``AWS_ENDPOINT_URL[_S3]``) else AWS for ``s3://``; ``endpoint_url`` or gcsfs's
    ``STORAGE_EMULATOR_HOST`` else Google Cloud Storage for ``gs://``. Chained URLs
    (``simplecache::s3://...``) are judged by their last link.
    """
    options = dict(storage_options or {})
    target = url.split("::")[-1]
    protocol = target.split("://", 1)[0].lower() if "://" in target else "file"
    if protocol in ("http", "https"):
        return _host_port(target)
    if protocol in ("s3", "s3a"):
        given = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get(
            "endpoint_url"
        )
        given = given or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if given:
            return _host_port(given)
        region = (options.get("client_kwargs") or {}).get("region_name")
        return (f"s3.{region}.amazonaws.com" if region else "s3.amazonaws.com", 443)
    if protocol in ("gs", "gcs"):
        emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
        given = options.get("endpoint_url") or (emulator if emulator != "default" else "")
        if given:
            return _host_port(given if "://" in given else f"http://{given}")
        return ("storage.googleapis.com", 443)
    return None


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 443)


def _via_proxy(host: str, port: int) -> tuple[str, int] | None:
    """The proxy the environment routes ``host`` through (``HTTPS_PROXY``...), if any."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get("https" if port == 443 else "http") or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return _host_port(proxy if "://" in proxy else f"http://{proxy}")


def _connect(host: str, port: int, timeout: float) -> str | None:
    """Why ``host:port`` takes no TCP connection within ``timeout`` s; None if it does."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except socket.gaierror as exc:
            outcome.append(f"host name not resolved ({exc.strerror}; no network access?)")
        except ConnectionRefusedError:
            outcome.append("connection refused (nothing listens there)")
        except TimeoutError:
            outcome.append(f"no answer within {timeout:g} s")
        except OSError as exc:
            outcome.append(exc.strerror or str(exc))

    # a thread bounds the name lookup too, which socket timeouts do not cover
    thread = threading.Thread(target=attempt, name=f"probe {host}:{port}", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def ensure_reachable(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    timeout: float = PROBE_TIMEOUT,
) -> None:
    """Raise :class:`Unreachable` unless the endpoint of ``url`` takes a TCP connection.

    Local URLs and unknown protocols pass without a probe.
    """
    target = endpoint(url, storage_options)
    if target is None:
        return
    proxy = _via_proxy(*target)
    probe = proxy or target
    with _lock:
        cached = _answers.get(probe)
    if cached is not None and time.monotonic() - cached[0] < ANSWER_TTL:
        reason = cached[1]
    else:
        reason = _connect(*probe, timeout)
        with _lock:
            _answers[probe] = (time.monotonic(), reason)
    if reason is not None:
        through = f" through the proxy {proxy[0]}:{proxy[1]}" if proxy else ""
        raise Unreachable(f"{url} cannot be reached: {target[0]}:{target[1]}{through}: {reason}")
