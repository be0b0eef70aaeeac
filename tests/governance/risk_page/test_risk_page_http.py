"""The risk page over HTTP against a real lineage store process, on both backends: the search's
filters and keyset pages, the decision page, 400s naming the parameter, and the loopback rule
under open access."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lineage_support import BACKENDS, database, send_with_otel_sdk, wait_for_decision
from risk_page_support import error_text, listed_ids, page_url
from support.records import BASE_US, make_record

from lineage.v1.record import DecisionRecord, ReasonEntry
from loadtests.local.topology import ManagedProcess, start_lineage

MINUTE_US = 60_000_000

Store = tuple[ManagedProcess, list[DecisionRecord], Path]
"""The store process, the decisions it holds, and its checkpoint file."""


def _records() -> list[DecisionRecord]:
    """Twelve decisions a minute apart: three customers, two decision points, two versions,
    each decision and two principal reasons."""
    out = []
    for i in range(12):
        at = BASE_US + i * MINUTE_US
        point = "card-fraud" if i % 3 else "credit-risk"
        out.append(
            make_record(
                entity_key=f"cust-{i % 3}",
                request_id=f"req-{i:02d}",
                decision_point=point,
                model_name=point,
                model_version="2" if i % 2 else "1",
                decision="decline" if i % 4 == 0 else "approve",
                received_at_us=at - 2000,
                decided_at_us=at,
                reasons=(
                    ReasonEntry(code="R12" if i % 2 else "R07", description="distance", rank=1),
                ),
            )
        )
    return out


@pytest.fixture(scope="module", params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    workdir = tmp_path_factory.mktemp("risk-page")
    with database(request.param, workdir) as url:
        checkpoints = ["--checkpoint-file", str(workdir / "checkpoints.jsonl")]
        proc = start_lineage(
            url,
            workdir,
            extra_args=["--web-port", "0", *checkpoints, "--checkpoint-interval", "0.2"],
        )
        try:
            records = _records()
            send_with_otel_sdk(proc.address, records)
            for r in records:
                wait_for_decision(proc.address, r.decision_id)
            yield proc, records, workdir / "checkpoints.jsonl"
        finally:
            assert proc.stop() == 0, proc.log_tail()


def _newest_first(records: list[DecisionRecord]) -> list[str]:
    return [r.decision_id for r in sorted(records, key=lambda r: r.decided_at_us, reverse=True)]


def _search(proc: ManagedProcess, **params: str) -> httpx.Response:
    return httpx.get(page_url(proc), params=params, timeout=10, follow_redirects=True)


def test_the_page_listens_on_loopback_by_default(
    store: Store,
) -> None:
    proc, _, _ = store
    assert page_url(proc).startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    ("params", "wanted"),
    [
        ({"entity_key": "cust-1"}, lambda r: r.entity_key == "cust-1"),
        (
            {"decision_point": "card-fraud", "reason_code": "R12"},
            lambda r: r.decision_point == "card-fraud" and r.reasons[0].code == "R12",
        ),
        (
            {"model_name": "card-fraud", "model_version": "2"},
            lambda r: r.model_name == "card-fraud" and r.model_version == "2",
        ),
        (
            {"decision_point": "credit-risk", "decision": "decline"},
            lambda r: r.decision_point == "credit-risk" and r.decision == "decline",
        ),
        ({"entity_key": "cust-2", "request_id": "req-05"}, lambda r: r.request_id == "req-05"),
        ({"reason_code": "R07"}, lambda r: r.reasons[0].code == "R07"),
    ],
)
def test_each_filter_lists_exactly_its_decisions_newest_first(
    store: Store, params: dict[str, str], wanted: object
) -> None:
    proc, records, _ = store
    response = _search(proc, **params)
    assert response.status_code == 200
    expected = _newest_first([r for r in records if wanted(r)])  # type: ignore[operator]
    assert expected
    assert listed_ids(response.text) == expected


def test_a_time_range_keeps_only_its_decisions(
    store: Store,
) -> None:
    proc, records, _ = store
    from datetime import UTC, datetime

    def iso(us: int) -> str:
        return datetime.fromtimestamp(us / 1e6, UTC).isoformat()

    since, until = records[3].decided_at_us, records[8].decided_at_us
    response = _search(proc, decision_point="card-fraud", since=iso(since), until=iso(until))
    expected = [
        r for r in records if r.decision_point == "card-fraud" and since <= r.decided_at_us < until
    ]
    assert listed_ids(response.text) == _newest_first(expected)


def test_keyset_pages_cover_the_selection_once_newest_first(
    store: Store,
) -> None:
    proc, records, _ = store
    seen: list[str] = []
    url = page_url(proc) + "?decision_point=card-fraud&limit=3"
    for _ in range(10):
        html = httpx.get(url, timeout=10).text
        seen += listed_ids(html)
        if 'id="next"' not in html:
            break
        href = html.split('id="next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        url = page_url(proc) + href
    assert seen == _newest_first([r for r in records if r.decision_point == "card-fraud"])


def test_a_decision_id_opens_its_page(store: Store) -> None:
    proc, records, _ = store
    record = records[4]
    response = _search(proc, decision_id=record.decision_id.upper())
    assert response.status_code == 200
    assert response.url.path == f"/decisions/{record.decision_id}"
    html = response.text
    assert record.model_sha256 in html
    assert record.request_id in html
    assert "R07" in html
    assert 'id="inputs"' in html and "merchant_category" in html  # open access sees inputs
    assert "entry " in html  # its place in the chain
    assert "Replay is not available in this deployment" in html


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"since": "yesterday", "decision_point": "card-fraud"}, "since"),
        ({"limit": "0", "decision_point": "card-fraud"}, "limit"),
        ({"limit": "many", "decision_point": "card-fraud"}, "limit"),
        ({"page": "not-a-token", "decision_point": "card-fraud"}, "page"),
        ({"decision_id": "42"}, "decision_id"),
        ({"model_version": "2", "decision_point": "card-fraud"}, "model_version"),
        ({"request_id": "req-01"}, "request_id"),
        ({"decision": "approve"}, "decision"),
        ({"colour": "red"}, "colour"),
        (
            {"decision_point": "card-fraud", "since": "2026-12-02", "until": "2026-12-01"},
            "until",
        ),
    ],
)
def test_a_bad_search_parameter_is_a_400_naming_it(
    store: Store, params: dict[str, str], named: str
) -> None:
    proc, _, _ = store
    response = _search(proc, **params)
    assert response.status_code == 400
    assert error_text(response.text).startswith(named)


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("decisions/not-a-uuid", 400, "decision_id"),
        ("decisions/0190f0c2-1b2a-7000-8000-000000000000", 404, "decision_id"),
        ("timeline?decision_point=card-fraud&since=soon", 400, "since"),
        ("drift?decision_point=card-fraud&step_hours=0", 400, "step_hours"),
        ("drift?point=card-fraud", 400, "point"),
    ],
)
def test_the_other_pages_name_a_bad_parameter(
    store: Store, path: str, status: int, named: str
) -> None:
    proc, _, _ = store
    response = httpx.get(page_url(proc) + path, timeout=10)
    assert response.status_code == status
    assert error_text(response.text).startswith(named)


def test_open_access_refuses_a_page_beyond_loopback(tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "governance.server",
        "--db-url", f"sqlite:///{tmp_path / 'l.db'}", "--port", "0",
        "--plaintext", "true", "--open-access", "true",
        "--web-port", "0", "--web-host", "0.0.0.0",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--web-host 0.0.0.0" in done.stderr and "--web-allow-open" in done.stderr


def test_a_decision_page_names_the_checkpoint_that_covers_it(
    store: Store,
) -> None:
    proc, records, checkpoint_file = store
    record = records[7]
    url = page_url(proc) + f"decisions/{record.decision_id}"
    deadline = time.monotonic() + 15
    while True:
        html = httpx.get(url, timeout=10).text
        covered = re.search(r'id="checkpoint">size (\d+), head <span class="mono">(\w+)', html)
        if covered or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert covered is not None, html
    seq = int(re.search(r'id="seq">entry (\d+) of', html).group(1))  # type: ignore[union-attr]
    exported = [json.loads(line) for line in checkpoint_file.read_text().splitlines()]
    first = next(c for c in exported if c["size"] >= seq)
    assert (int(covered.group(1)), covered.group(2)) == (first["size"], first["head_sha256"])
