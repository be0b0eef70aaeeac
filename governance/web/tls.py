"""The page's TLS: the store's certificate, key and CA bundle as an ``ssl.SSLContext``, re-read
on rotation as the gRPC listener re-reads them.

Every handshake asks ``security.tls.RotatingCertificates`` whether the files changed (and the new
pair is usable); if so, a new context is built and the handshake, and every one after it, uses
that. With client certificates required, the handshake requires one verified by the CA bundle.
"""

from __future__ import annotations

import logging
import ssl

from security.tls import ClientCertificate, RotatingCertificates, ServerTls

log = logging.getLogger(__name__)


def _context(tls: ServerTls) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file is not None:
        context.load_verify_locations(tls.ca_file)
    if tls.client_certificate is ClientCertificate.REQUIRED:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class RotatingContext:
    """``context`` is handed to the HTTP server; its SNI callback swaps in the newest one."""

    def __init__(self, tls: ServerTls) -> None:
        self._tls = tls
        self._watch = RotatingCertificates(tls)
        self._current = _context(tls)
        self.context = _context(tls)
        self.context.sni_callback = self._handshake
        self.rotations = 0

    def _handshake(
        self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        if self._watch() is not None:
            try:
                self._current = _context(self._tls)
                self.rotations += 1
            except (OSError, ssl.SSLError) as e:
                log.warning("risk page: TLS files changed but not usable: %s", e)
        sock.context = self._current
