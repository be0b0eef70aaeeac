"""A TLS terminator for tests: a stand-in for the mesh sidecar or load balancer that terminates
(mutual) TLS in front of a plaintext server, as in front of the KServe runtime in a cluster.

It accepts TLS on 127.0.0.1 (ALPN h2, so gRPC clients accept it), optionally requires a client
certificate from a CA, records each connection's client certificate common name, and relays the
bytes to the plaintext upstream. Not scoregate code: Envoy or Istio does this in production.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path
from typing import Any


class TlsTerminator:
    def __init__(
        self, upstream: str, cert_file: Path, key_file: Path, client_ca_file: Path | None = None
    ) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert_file, key_file)
        self._context.set_alpn_protocols(["h2"])
        if client_ca_file is not None:
            self._context.load_verify_locations(client_ca_file)
            self._context.verify_mode = ssl.CERT_REQUIRED
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._peers: list[str] = []
        self._open: list[socket.socket] = []
        self.handshake_failures = 0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def peers(self) -> list[str]:
        """The client certificate's common name of each connection accepted, in order."""
        with self._lock:
            return list(self._peers)

    def _accept(self) -> None:
        while not self._closed:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.handshake_failures += 1
            raw.close()
            return
        cert: dict[str, Any] = dict(tls.getpeercert() or {})
        names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        with self._lock:
            self._peers.append(names[0] if names else "")
        try:
            upstream = socket.create_connection(self._upstream)
        except OSError:
            tls.close()
            return
        with self._lock:
            self._open.extend((tls, upstream))
        back = threading.Thread(target=_pump, args=(upstream, tls), daemon=True)
        back.start()
        _pump(tls, upstream)
        back.join(timeout=5)
        tls.close()
        upstream.close()

    def close(self) -> None:
        """Stops accepting and closes every connection still open."""
        self._closed = True
        self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            still_open = list(self._open)
        for s in still_open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
