"""The gateway calls a runtime over mutual TLS, and a rotated client certificate is presented on
the long-lived runtime channel without a restart and without a failed decision.

The KServe runtime serves h2c; in a cluster a mesh sidecar terminates TLS in front of it. Here a
test-side TLS terminator (tests/support/tls_terminator.py) plays that part in front of the real
runtime and records which client certificate each connection presented. The gateway is the real
process, called with gRPC's default client options.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from support.certs import CertificateAuthority, Leaf
from support.tls_terminator import TlsTerminator

from loadtests.local.topology import ManagedProcess, start_gateway
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_request


def _replace(path: Path, data: bytes) -> None:
    """Atomically, as a Secret update swaps its files."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _rotate(leaf: Leaf, cert: Path, key: Path) -> None:
    # The key first: a reopen between the two writes sees a mismatched pair and keeps the old.
    _replace(key, leaf.key_pem)
    _replace(cert, leaf.cert_pem)


class Caller:
    """Scores card-fraud decisions in a loop on one channel until stopped, keeping every answer."""

    def __init__(self, address: str) -> None:
        self._address = address
        self.replies: list[scoring_pb2.ScoreResponse] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rows = sample_requests("card-fraud", 50, seed=31)
        with grpc.insecure_channel(self._address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            i = 0
            while not self._stop.is_set():
                request = score_request(f"rt-{i}", "card-fraud", f"c{i % 40}", rows[i % 50])
                try:
                    self.replies.append(stub.Score(request, timeout=10))
                except grpc.RpcError as e:
                    self.errors.append(f"{e.code().name}: {e.details()}")
                i += 1
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


@pytest.fixture
def tls_runtime(
    runtime: ManagedProcess, tmp_path: Path
) -> Iterator[tuple[CertificateAuthority, TlsTerminator, Path]]:
    ca = CertificateAuthority("runtime mesh CA")
    ca_file = ca.write(tmp_path / "ca.crt")
    cert, key = ca.server("scoregate-runtime").write(tmp_path, "runtime")
    terminator = TlsTerminator(runtime.address, cert, key, client_ca_file=ca_file)
    try:
        yield ca, terminator, ca_file
    finally:
        terminator.close()


def _until(
    check: Callable[[], bool], what: str, proc: ManagedProcess, timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}\n{proc.log_tail(40)}"
        time.sleep(0.1)


def test_runtime_calls_use_mutual_tls_and_a_rotated_certificate_without_a_restart(
    model_dir: Path,
    demo_config: Callable[[str], dict[str, Any]],
    tls_runtime: tuple[CertificateAuthority, TlsTerminator, Path],
    tmp_path: Path,
) -> None:
    ca, terminator, ca_file = tls_runtime
    cert, key = ca.client(common_name="gateway-a").write(tmp_path, "gateway")
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump(demo_config(terminator.address), sort_keys=False))
    gateway = start_gateway(
        routes,
        model_dir,
        tmp_path / "gateway",
        extra_args=[
            "--runtime-tls", "true", "--runtime-tls-ca-file", str(ca_file),
            "--runtime-tls-cert-file", str(cert), "--runtime-tls-key-file", str(key),
        ],
    )  # fmt: skip
    caller = Caller(gateway.address)
    try:
        _until(lambda: len(caller.replies) >= 20, "no decisions through the TLS hop", gateway)
        assert set(terminator.peers) == {"gateway-a"}
        pid = gateway.popen.pid

        _rotate(ca.client(common_name="gateway-b"), cert, key)
        _until(lambda: "gateway-b" in terminator.peers, "rotated cert never presented", gateway)
        seen = len(caller.replies)
        _until(lambda: len(caller.replies) >= seen + 20, "decisions after rotation", gateway)
    finally:
        caller.stop()
        code = gateway.stop()
    assert code == 0, gateway.log_tail()
    assert gateway.popen.pid == pid
    # Not one call failed, and every decision came from the model, none from the fallback rules:
    # the old channel carried calls in flight while the new one took the next ones.
    assert caller.errors == []
    assert [r.fallback_reason for r in caller.replies if r.fallback_reason] == []
    assert {r.model_name for r in caller.replies} == {"card-fraud"}
    assert terminator.handshake_failures == 0


def test_a_runtime_that_does_not_know_the_gateway_certificate_gets_no_model_calls(
    model_dir: Path,
    demo_config: Callable[[str], dict[str, Any]],
    tls_runtime: tuple[CertificateAuthority, TlsTerminator, Path],
    tmp_path: Path,
) -> None:
    """A client certificate from another CA: the handshake fails and the call gets UNAVAILABLE
    naming the model that could not be reached (the demo routes have no fallback rules)."""
    _, terminator, ca_file = tls_runtime
    cert, key = (
        CertificateAuthority("someone else")
        .client(common_name="intruder")
        .write(tmp_path, "gateway")
    )
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump(demo_config(terminator.address), sort_keys=False))
    gateway = start_gateway(
        routes,
        model_dir,
        tmp_path / "gateway",
        extra_args=[
            "--runtime-tls", "true", "--runtime-tls-ca-file", str(ca_file),
            "--runtime-tls-cert-file", str(cert), "--runtime-tls-key-file", str(key),
        ],
    )  # fmt: skip
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            features = sample_requests("card-fraud", 1, seed=3)[0]
            with pytest.raises(grpc.RpcError) as refused:
                stub.Score(score_request("rt-x", "card-fraud", "c1", features), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "model card-fraud-v1 at" in str(refused.value.details())
        assert terminator.peers == []
        assert terminator.handshake_failures >= 1
    finally:
        assert gateway.stop() == 0, gateway.log_tail()
