"""TLS for scoregate's gRPC listeners and channels, from PEM files that may be rotated in place.

A server's certificate and key are re-read without a restart: gRPC asks a fetcher for the
certificate configuration at every new handshake, and the fetcher answers "unchanged" (None)
unless a file's size, mtime or inode moved, which a Kubernetes Secret update (a symlink swap of
``..data``) and cert-manager's renewals both do. A changed set is only taken once the key matches
the certificate: a rotation caught half-written keeps the old pair serving until the next
handshake finds both files written. Connections already open keep the certificate they began
with.

Client certificates are off or required. ``OPTIONAL`` exists because it is what an operator
asks for (accept mTLS callers and token callers on one port), but grpcio's Python API can only
request a client certificate by requiring it, so it is refused with that reason: run bearer
tokens with ``OFF``, or put the listener behind a proxy that can.

A channel's credentials are read when the channel is made, and grpcio has no dynamic client
credentials (only servers get a certificate fetcher). So a channel kept open across rotations is a
``ReopeningChannel``: when its files change and the new set loads, the calls that follow go on a
new channel, and the old one is closed after a grace so that calls in flight on it finish.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from security.errors import SecurityConfigError

log = logging.getLogger(__name__)


class ClientCertificate(enum.StrEnum):
    """What a server asks of its callers' certificates."""

    OFF = "off"
    """Not requested: callers authenticate with bearer tokens, if at all."""
    OPTIONAL = "optional"
    """Refused: grpcio cannot request a certificate without requiring it (module docstring)."""
    REQUIRED = "required"
    """Requested and verified against the CA bundle; a handshake without one fails."""


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SecurityConfigError(f"{what} {path}: cannot be read ({e.strerror})") from None
    if not data.strip():
        raise SecurityConfigError(f"{what} {path}: empty")
    return data


def _certificates(pem: bytes, path: Path, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise SecurityConfigError(f"{what} {path}: no PEM certificate in it") from None
    return certs


def _check_pair(cert_pem: bytes, key_pem: bytes, cert_file: Path, key_file: Path) -> None:
    """The key is the certificate's: else gRPC would fail every handshake, not the load."""
    leaf = _certificates(cert_pem, cert_file, "certificate")[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise SecurityConfigError(
            f"private key {key_file}: not an unencrypted PEM private key"
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != leaf.public_key().public_bytes(
        encoding, public
    ):
        raise SecurityConfigError(
            f"private key {key_file} does not belong to the certificate {cert_file}"
        )


def _signature(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is rewritten or swapped; (-1, -1, -1) for a missing one."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((-1, -1, -1))
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A listener's certificate, key, CA bundle (for client certificates) and what it asks of
    its callers' certificates."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    client_certificate: ClientCertificate = ClientCertificate.OFF

    def __post_init__(self) -> None:
        if self.client_certificate is ClientCertificate.OPTIONAL:
            raise SecurityConfigError(
                "client certificates 'optional' is not available: grpcio can only request a "
                "client certificate by requiring it; use 'required' (mTLS) or 'off' (tokens)"
            )
        if self.client_certificate is ClientCertificate.REQUIRED and self.ca_file is None:
            raise SecurityConfigError(
                "client certificates 'required' needs a CA bundle to verify them against"
            )

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file, *((self.ca_file,) if self.ca_file else ()))

    def load(self) -> grpc.ServerCertificateConfiguration:
        """The files as gRPC takes them, checked (SecurityConfigError names the bad file)."""
        cert = _read(self.cert_file, "certificate")
        key = _read(self.key_file, "private key")
        _check_pair(cert, key, self.cert_file, self.key_file)
        ca = None
        if self.ca_file is not None:
            ca = _read(self.ca_file, "CA bundle")
            _certificates(ca, self.ca_file, "CA bundle")
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials whose files are re-read on rotation (module docstring)."""
        fetcher = RotatingCertificates(self)
        return grpc.dynamic_ssl_server_credentials(
            fetcher.initial,
            fetcher,
            require_client_authentication=self.client_certificate is ClientCertificate.REQUIRED,
        )


class RotatingCertificates:
    """gRPC's certificate-configuration fetcher for a ``ServerTls``: None while the files are
    unchanged (a few ``stat`` calls per handshake), the new configuration once they change."""

    def __init__(self, tls: ServerTls) -> None:
        self._tls = tls
        self._seen = _signature(tls.files)
        self._refused: tuple[tuple[int, int, int], ...] | None = None
        self.initial = tls.load()
        self.rotations = 0

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        now = _signature(self._tls.files)
        if now == self._seen or now == self._refused:
            return None
        try:
            config = self._tls.load()
        except Exception as e:
            # Tried again once the files change again: the other half of a rotation may be on
            # its way. Logged once per state of the files, not once per handshake.
            self._refused = now
            log.warning("TLS files changed but are not usable; still serving the old ones: %s", e)
            return None
        self._seen, self._refused = now, None
        self.rotations += 1
        log.info("TLS certificate reloaded from %s", self._tls.cert_file)
        return config


@dataclass(frozen=True, slots=True)
class ClientTls:
    """A channel's TLS: the CA bundle that verifies the server, and optionally this process's
    own certificate and key for servers that require client certificates."""

    ca_file: Path | None = None
    """None: the system's trust store."""
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str = ""
    """The name the server's certificate must carry, when it is not the address's host."""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise SecurityConfigError("a client certificate needs both its file and its key")

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(f for f in (self.ca_file, self.cert_file, self.key_file) if f is not None)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        ca = _read(self.ca_file, "CA bundle") if self.ca_file is not None else None
        if ca is not None and self.ca_file is not None:
            _certificates(ca, self.ca_file, "CA bundle")
        cert = key = None
        if self.cert_file is not None and self.key_file is not None:
            cert = _read(self.cert_file, "certificate")
            key = _read(self.key_file, "private key")
            _check_pair(cert, key, self.cert_file, self.key_file)
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )

    def channel_options(self) -> tuple[tuple[str, str], ...]:
        if not self.server_name:
            return ()
        return (("grpc.ssl_target_name_override", self.server_name),)

    def secure_channel(
        self, target: str, options: tuple[tuple[str, object], ...] = ()
    ) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            target, self.channel_credentials(), options=(*options, *self.channel_options())
        )


def open_channel(
    target: str, tls: ClientTls | None, options: tuple[tuple[str, object], ...] = ()
) -> grpc.aio.Channel:
    """A grpc.aio channel to ``target``: TLS with ``tls``, plaintext (h2c) without."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return tls.secure_channel(target, options)


class ReopeningChannel:
    """A long-lived client channel that follows a rotation of its TLS files (module docstring).

    ``channel`` is what the next call should use. The files are looked at (a few ``stat`` calls)
    at most every ``check_interval_s``, and only when the next call asks, so an idle channel
    costs nothing. A set that does not load (a rotation caught half-written, a key that does not
    match) keeps the channel in use and is tried again once the files change again. Create it
    inside the running event loop.
    """

    def __init__(
        self,
        target: str,
        tls: ClientTls | None,
        options: tuple[tuple[str, object], ...] = (),
        *,
        check_interval_s: float = 1.0,
        grace_s: float = 30.0,
    ) -> None:
        self._target = target
        self._tls = tls
        self._options = options
        self._check_interval_s = check_interval_s
        self._grace_s = grace_s
        self._seen = _signature(tls.files) if tls is not None else ()
        self._refused: tuple[tuple[int, int, int], ...] | None = None
        self._next_check = time.monotonic() + check_interval_s
        self._channel = open_channel(target, tls, options)
        self._retiring: dict[asyncio.Task[None], grpc.aio.Channel] = {}
        self.reopened = 0
        """How many times a rotation opened a new channel."""

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._tls is not None and time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self._check_interval_s
            self._reopen_if_rotated(self._tls)
        return self._channel

    def _reopen_if_rotated(self, tls: ClientTls) -> None:
        now = _signature(tls.files)
        if now == self._seen or now == self._refused:
            return
        try:
            fresh = open_channel(self._target, tls, self._options)
        except Exception as e:
            self._refused = now
            log.warning(
                "client TLS files for %s changed but are not usable; keeping the open channel: %s",
                self._target,
                e,
            )
            return
        old, self._channel = self._channel, fresh
        self._seen, self._refused = now, None
        self.reopened += 1
        task = asyncio.get_running_loop().create_task(old.close(self._grace_s))
        self._retiring[task] = old
        task.add_done_callback(self._retiring.pop)
        log.info("client certificate for %s reloaded from %s", self._target, tls.cert_file)

    async def close(self, grace_s: float | None = None) -> None:
        """Closes the channel in use, and any still retiring, giving calls ``grace_s``."""
        retiring = list(self._retiring.items())
        for task, _ in retiring:
            task.cancel()
        for _, old in retiring:
            await old.close(grace_s)
        await self._channel.close(grace_s)
