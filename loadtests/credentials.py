"""The credentials a load test calls a secured gateway with: TLS (the gateway's CA, and a client
certificate for mutual TLS) and a bearer token (docs/security.md). With none given, calls go
over h2c without credentials, as to the local topology."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc


@dataclass(frozen=True)
class Credentials:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    token_file: Path | None = None

    @classmethod
    def of(cls, options: Any) -> Credentials:
        """From parsed options (the kit's CLI or Locust's) carrying ``tls_*_file`` and
        ``bearer_token_file``; missing or empty ones are unset."""

        def path(name: str) -> Path | None:
            value = getattr(options, name, None)
            return Path(value) if value else None

        return cls(
            path("tls_ca_file"), path("tls_cert_file"), path("tls_key_file"),
            path("bearer_token_file"),
        )  # fmt: skip

    def argv(self) -> list[str]:
        """The same credentials as options of the kit's Locust run."""
        out: list[str] = []
        for flag, value in (
            ("--tls-ca-file", self.ca_file),
            ("--tls-cert-file", self.cert_file),
            ("--tls-key-file", self.key_file),
            ("--bearer-token-file", self.token_file),
        ):
            if value is not None:
                out += [flag, str(value)]
        return out

    @property
    def tls(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None

    def channel(self, address: str) -> grpc.Channel:
        if not self.tls:
            return grpc.insecure_channel(address)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )
        return grpc.secure_channel(address, credentials)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The bearer token's header, read once: a load test lasts less than a token."""
        if self.token_file is None:
            return ()
        return (("authorization", f"Bearer {self.token_file.read_text().strip()}"),)
