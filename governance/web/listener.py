"""The page's HTTP listener: uvicorn on the store's own event loop, so the pages read through
the store's reader thread as the gRPC queries do, and never hold up ingest.

uvicorn does not hand the application its caller's TLS certificate, so the HTTP protocol is
extended by one step: each connection's verified client certificate is kept, by the peer's
address, for as long as the connection lives (``PeerCertificates``), which is what
``access`` reads a mutual-TLS caller's principal from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


@dataclass
class PeerCertificates:
    """PEM client certificates of the open connections, by (host, port) of the peer."""

    by_peer: dict[tuple[str, int], bytes] = field(default_factory=dict)

    def get(self, peer: tuple[str, int] | None) -> bytes | None:
        return None if peer is None else self.by_peer.get(peer)


def _protocol(peers: PeerCertificates) -> type[H11Protocol]:
    class PeerCertificateProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            tls = transport.get_extra_info("ssl_object")
            der = tls.getpeercert(binary_form=True) if tls is not None else None
            if der and self.client is not None:
                peers.by_peer[self.client] = ssl.DER_cert_to_PEM_cert(der).encode()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client is not None:
                peers.by_peer.pop(self.client, None)
            super().connection_lost(exc)

    return PeerCertificateProtocol


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class WebListener:
    """Serves an ASGI app on ``host:port`` (0: a free port) until ``stop``."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        peers: PeerCertificates,
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            http=_protocol(peers),
            proxy_headers=False,
        )
        config.load()
        config.ssl = context
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self._tls = context is not None
        self.address = ""

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self.address}/"

    async def start(self) -> str:
        """Binds and starts serving; returns the bound address (host:port)."""
        config = self._server.config
        self._server.lifespan = config.lifespan_class(config)
        try:
            await self._server.startup()
        except SystemExit:
            # uvicorn exits when it cannot bind; the store reports it and stops instead.
            raise OSError(f"risk page: cannot listen on {config.host}:{config.port}") from None
        bound = self._server.servers[0].sockets[0].getsockname()
        self.address = _address(self._server.config.host, bound[1])
        self._task = asyncio.create_task(self._server.main_loop())
        log.info("risk page serving on %s", self.url)
        return self.address

    async def stop(self) -> None:
        """Stops accepting, lets requests in flight finish, closes the connections."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._server.shutdown()
        self._task = None
