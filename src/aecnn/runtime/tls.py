"""TLS for the edge server and the device client (Python's ``ssl``), with optional mutual
TLS: a server given a client CA admits only devices whose certificate that CA signed."""

from __future__ import annotations

import ssl
from pathlib import Path

from aecnn.errors import AecnnError


def _files(*paths: str | Path | None) -> None:
    for p in paths:
        if p is not None and not Path(p).is_file():
            raise AecnnError(f"TLS file {p} does not exist")


def server_context(cert: str | Path, key: str | Path | None = None,
                   client_ca: str | Path | None = None) -> ssl.SSLContext:
    """TLS 1.2+ server context from a PEM certificate chain and key (``key`` may be in
    ``cert``); with ``client_ca``, clients must present a certificate it signed."""
    _files(cert, key, client_ca)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), None if key is None else str(key))
        if client_ca is not None:
            ctx.load_verify_locations(str(client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
    except ssl.SSLError as exc:
        raise AecnnError(f"cannot load the server's TLS files: {exc}") from None
    return ctx


def client_context(ca: str | Path | None = None, cert: str | Path | None = None,
                   key: str | Path | None = None) -> ssl.SSLContext:
    """TLS 1.2+ client context that checks the server against ``ca`` (default: the system's
    CAs) and, for mutual TLS, presents ``cert`` (PEM chain; ``key`` may be in it)."""
    _files(ca, cert, key)
    try:
        ctx = ssl.create_default_context(cafile=None if ca is None else str(ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None:
            ctx.load_cert_chain(str(cert), None if key is None else str(key))
    except ssl.SSLError as exc:
        raise AecnnError(f"cannot load the client's TLS files: {exc}") from None
    return ctx
