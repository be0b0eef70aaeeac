"""No card numbers and no raw entity keys where they do not belong (issue 23, item 5).

Real processes: a runtime, a lineage store pseudonymising card-fraud's and credit-risk's entity
keys, and a gateway with lineage on (the outbox) and general tracing on (its OTLP spans go to a
collector in this test that keeps everything it receives). Traffic uses Luhn-valid card numbers as
entity keys and request ids, and as a (wrong) category value. Then every span attribute, every log
line of every process (at DEBUG, the most they ever say), the gateway's and the store's metric
expositions and the store's access log are scanned for any card-like number and for the raw
keys; one hit fails the test. The scanner is shown to find what it looks for: a decision point
the store does not pseudonymise keeps its raw key, and that record fails the same scan.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from support.stored import get_when_stored

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from lineage.v1.spans import DECISION_ID_ATTRIBUTE
from loadtests.local.topology import (
    ManagedProcess,
    demo_routes,
    entry_point,
    free_port,
    start_gateway,
    start_lineage,
    start_process,
)
from runtimes.manifest import load_manifests
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_batch_request, score_request
from security.pseudonyms import PSEUDONYM_PREFIX

# 13 to 19 digits, with the single spaces or hyphens people put between groups, standing alone:
# not inside a word or a hex digest, not the fraction of a number. Card numbers start with 2-6
# (Mastercard's 2-series, Amex and Diners 3, Visa 4, Mastercard 5, Discover and UnionPay 6),
# which also keeps epoch timestamps (17...) out.
_CARD_RUN = re.compile(r"(?<![0-9A-Za-z.])[2-6](?:[ -]?\d){12,18}(?![0-9A-Za-z])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_like(text: str) -> list[str]:
    """The Luhn-valid card-like numbers in ``text``."""
    found = (re.sub(r"[ -]", "", m.group()) for m in _CARD_RUN.finditer(text))
    return [digits for digits in found if luhn_valid(digits)]


def with_luhn(prefix: str) -> str:
    """``prefix`` plus the check digit that makes it Luhn-valid."""
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


ENTITY_PANS = [with_luhn(f"411111111111{n:03d}") for n in range(6)]
REQUEST_PANS = [with_luhn(f"550000000000{n:03d}") for n in range(6)]
CATEGORY_PAN = with_luhn("340000000000")  # 13 digits: an Amex-length number
UNREDACTED_PAN = with_luhn("601100000000000")  # the decision point left as sent
_TRAFFIC_PANS = {*ENTITY_PANS, *REQUEST_PANS, CATEGORY_PAN, UNREDACTED_PAN}


@dataclass
class Findings:
    hits: list[str] = field(default_factory=list)

    def scan(self, where: str, text: str, raw: Iterable[str] = _TRAFFIC_PANS) -> None:
        for pan in card_like(text):
            self.hits.append(f"{where}: card-like number {pan}")
        for value in raw:
            if value in text:
                self.hits.append(f"{where}: raw value {value}")


class RecordingCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """A general-tracing backend that keeps every Export request it is sent."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[Any]:
        with self._lock:
            return [
                span
                for r in self.requests
                for rs in r.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]

    def everything(self) -> str:
        """Every request as JSON: attributes, names, events, resources, all of it."""
        with self._lock:
            return "\n".join(json_format.MessageToJson(r) for r in self.requests)


@dataclass
class Deployment:
    workdir: Path
    processes: list[ManagedProcess]
    collector: RecordingCollector
    gateway: ManagedProcess
    lineage: ManagedProcess
    db: Path


@pytest.fixture(scope="module")
def deployment(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("no-personal-data")
    (workdir / "telemetry.key").write_text("telemetry-secret-of-this-test-0001\n")
    (workdir / "entity.key").write_text("entity-secret-of-this-test-00001\n")
    collector = RecordingCollector()
    otlp = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, otlp)  # type: ignore[no-untyped-call]
    otlp_port = otlp.add_insecure_port("127.0.0.1:0")
    otlp.start()
    processes: list[ManagedProcess] = []
    try:
        runtime_argv = [
            *entry_point("scoregate-runtime"),
            "--model-dir", str(model_dir),
            "--host", "127.0.0.1",
            "--grpc-port", str(free_port()),
            "--http-port", str(free_port()),
            "--log-level", "DEBUG",
        ]  # fmt: skip
        runtime = start_process("runtime", runtime_argv, workdir)
        processes.append(runtime)
        db = workdir / "lineage.db"
        lineage = start_lineage(
            db,
            workdir,
            extra_args=[
                "--log-level", "DEBUG",
                "--entity-key-file", str(workdir / "entity.key"),
                # churn is left as sent: the check that the scan finds a raw key.
                "--pseudonymise-entities", "card-fraud,credit-risk",
                "--metrics-port", str(free_port()),
                "--metrics-refresh", "0.2",
            ],
        )  # fmt: skip
        processes.append(lineage)
        routes = workdir / "routes.yaml"
        routes.write_text(yaml.safe_dump(demo_routes(load_manifests(model_dir), runtime.address)))
        gateway = start_gateway(
            routes,
            model_dir,
            workdir,
            otlp_endpoint=f"127.0.0.1:{otlp_port}",
            lineage_endpoint=lineage.address,
            outbox_dir=workdir / "outbox",
            extra_args=[
                "--log-level", "DEBUG",
                "--telemetry-key-file", str(workdir / "telemetry.key"),
                "--metrics-port", str(free_port()),
                "--otlp-schedule-delay-ms", "50",
            ],
        )  # fmt: skip
        processes.append(gateway)
        yield Deployment(workdir, processes, collector, gateway, lineage, db)
    finally:
        for proc in reversed(processes):
            proc.stop()
        otlp.stop(0)


def _traffic_features(point: str, seed: int) -> dict[str, Any]:
    return dict(sample_requests(point, 1, seed=seed)[0])


async def _drive(deployment: Deployment) -> list[str]:
    """PAN-like traffic through the gateway; the decision ids it answered with."""
    ids: list[str] = []
    async with grpc.aio.insecure_channel(deployment.gateway.address) as channel:
        scoring = scoring_pb2_grpc.ScoringServiceStub(channel)
        for i, point in enumerate(("card-fraud", "credit-risk")):
            request = score_request(
                REQUEST_PANS[i], point, ENTITY_PANS[i], _traffic_features(point, i)
            )
            ids.append((await scoring.Score(request, timeout=10)).decision_id)
        rows = [
            (REQUEST_PANS[2 + n], ENTITY_PANS[2 + n], _traffic_features("card-fraud", 10 + n))
            for n in range(2)
        ]
        batch = await scoring.ScoreBatch(score_batch_request("card-fraud", rows), timeout=10)
        ids += [r.decision.decision_id for r in batch.results]
        # A card number where a category belongs: refused, and the refusal must not repeat it.
        bad = _traffic_features("card-fraud", 20)
        bad["merchant_category"] = CATEGORY_PAN
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await scoring.Score(
                score_request(REQUEST_PANS[4], "card-fraud", ENTITY_PANS[4], bad), timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "features.merchant_category" in (refused.value.details() or "")
        assert CATEGORY_PAN not in (refused.value.details() or "")
        churn = score_request(
            REQUEST_PANS[5], "churn", UNREDACTED_PAN, _traffic_features("churn", 30)
        )
        ids.append((await scoring.Score(churn, timeout=10)).decision_id)
    return ids


async def _wait_for_spans(collector: RecordingCollector, decision_ids: list[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = {
            a.value.string_value
            for s in collector.spans()
            for a in s.attributes
            if a.key in (DECISION_ID_ATTRIBUTE, "scoregate.batch.first_decision_id")
        }
        if set(decision_ids) <= seen:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the collector did not receive every decision span: {decision_ids}")


def _read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def test_no_card_number_or_raw_entity_key_in_spans_logs_or_metrics(
    deployment: Deployment,
) -> None:
    ids = await _drive(deployment)
    *pseudonymised, churn_id = ids
    async with grpc.aio.insecure_channel(deployment.lineage.address) as channel:
        lineage = lineage_pb2_grpc.LineageServiceStub(channel)
        for decision_id in pseudonymised:
            record = await get_when_stored(lineage, decision_id)
            # The store keeps the pseudonym, not the key.
            assert record.entity_key.startswith(PSEUDONYM_PREFIX)
            assert record.entity_key not in ENTITY_PANS
        # The customer is still found by whoever presents their key, with no point named
        # (raw and pseudonymised forms both searched) and with one.
        found = await lineage.ListDecisions(
            lineage_pb2.ListDecisionsRequest(entity_key=ENTITY_PANS[0]), timeout=10
        )
        assert [d.decision_id for d in found.decisions] == [pseudonymised[0]]
        named = await lineage.ListDecisions(
            lineage_pb2.ListDecisionsRequest(
                entity_key=ENTITY_PANS[2], decision_point="card-fraud"
            ),
            timeout=10,
        )
        assert [d.decision_id for d in named.decisions] == [pseudonymised[2]]
        churn = await get_when_stored(lineage, churn_id)
        churn_found = await lineage.ListDecisions(
            lineage_pb2.ListDecisionsRequest(entity_key=UNREDACTED_PAN), timeout=10
        )
        assert [d.decision_id for d in churn_found.decisions] == [churn_id]
        # The access log keeps the store's pseudonym of a presented key, never the key.
        await asyncio.sleep(0.3)  # the access log is written in batches
        access = await lineage.ListAccessLog(
            lineage_pb2.ListAccessLogRequest(method="ListDecisions"), timeout=10
        )
        queries = [json.loads(e.query_json) for e in access.entries]
        assert queries and all("entity_key_pseudonym" in q for q in queries)
        access_log = json_format.MessageToJson(access)

    # The scan can fail: the one decision point left as sent keeps the raw card number.
    control = Findings()
    control.scan("stored churn record", json_format.MessageToJson(churn))
    assert control.hits, "the scanner found nothing in a record that holds a card number"

    # A batch has one span, naming its first decision.
    await _wait_for_spans(deployment.collector, [ids[0], ids[1], ids[2], churn_id])
    span_attributes = {a.key for s in deployment.collector.spans() for a in s.attributes}
    assert "scoregate.entity_hmac" in span_attributes
    assert "scoregate.request_id" not in span_attributes

    verify = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "governance.cli",
            "verify",
            "--db-url",
            f"sqlite:///{deployment.db}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    findings = Findings()
    findings.scan("general-tracing spans", deployment.collector.everything())
    metrics = deployment.gateway.info["metrics"]
    findings.scan("gateway /metrics", await asyncio.to_thread(_read, f"http://{metrics}/metrics"))
    store_metrics = deployment.lineage.info["metrics"]
    findings.scan(
        "lineage store /metrics", await asyncio.to_thread(_read, f"http://{store_metrics}/metrics")
    )
    findings.scan("lineage verify output", verify.stdout + verify.stderr)
    findings.scan("lineage access log", access_log)
    # The processes' own logs, stopped first so that their shutdown lines are in.
    for proc in reversed(deployment.processes):
        proc.stop()
    for log in sorted(deployment.workdir.glob("*.log")):
        for n, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            findings.scan(f"{log.name}:{n}", line)
    assert not findings.hits, "\n".join(findings.hits[:20])
