"""``scoregate up`` and ``scoregate demo``: the whole platform on loopback, for people and scripts.

``up`` keeps a runtime, a lineage store and a gateway running until interrupted and prints their
addresses (``--json``: one line, once all are healthy). ``demo`` starts the same topology, scores a
few hundred sample decisions across the decision points, checks every one of them reached the
lineage store with the same model and score, answers "which model made decision X and when", walks
through the four-eyes approval of card-fraud v2 before it takes canary traffic, and stops
everything; any failed step makes it exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.demo_approvals import run_approval_workflow
from loadtests.local.topology import Topology, TopologyError
from runtimes.manifest import find_model_folders
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_request

DEFAULT_WORKDIR = Path(".scoregate")


class DemoError(Exception):
    """A demo step failed; the message says which."""


def ensure_models(model_dir: Path) -> None:
    """Builds the demo models unless a model repository is already there."""
    if model_dir.is_dir() and find_model_folders(model_dir):
        return
    from runtimes.training.build import build_all

    print(f"building demo models into {model_dir} ...", flush=True)
    for manifest in build_all(model_dir):
        print(
            f"  {manifest.name} v{manifest.version}  sha256 {manifest.artifact_sha256[:12]}  "
            f"held-out AUC {manifest.training.heldout_auc:.3f}",
            flush=True,
        )


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="folder for models, logs, the lineage database and the routes file",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model repository to serve (default: WORKDIR/models, built if missing)",
    )


def up_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scoregate up", description=up_main.__doc__)
    _common_args(parser)
    parser.add_argument("--json", action="store_true", help="print addresses as one JSON line")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    model_dir: Path = (args.model_dir or workdir / "models").resolve()
    ensure_models(model_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        topology = Topology(workdir, model_dir).start()
    except TopologyError as e:
        print(f"scoregate up: {e}", file=sys.stderr)
        return 1
    try:
        addresses = topology.addresses()
        if args.json:
            print(json.dumps(addresses), flush=True)
        else:
            print(f"gateway   {addresses['gateway']}  (scoring.v1.ScoringService)")
            print(f"runtime   {addresses['runtimes'][0]}  (OIP v2 gRPC)")
            print(f"lineage   {addresses['lineage']}  (lineage.v1.LineageService, OTLP)")
            print(f"risk page {addresses['web']}  (search, decisions, timeline, drift)")
            print(f"logs      {workdir}/*.log    Ctrl-C stops everything", flush=True)
        while not stop.wait(0.5):
            dead = [p.name for p in topology.processes if p.popen.poll() is not None]
            if dead:
                print(f"scoregate up: {', '.join(dead)} exited; stopping", file=sys.stderr)
                return 1
        return 0
    finally:
        topology.stop()


up_main.__doc__ = "Run runtime, lineage store and gateway on 127.0.0.1 until interrupted."


@dataclass(frozen=True)
class Scored:
    request_id: str
    response: scoring_pb2.ScoreResponse


async def score_samples(gateway: str, per_point: dict[str, int], seed: int) -> list[Scored]:
    """Sends sample decisions, a few pinned to card-fraud v2, eight at a time."""
    from runtimes.training.datasets import sample_requests

    requests = []
    for point, n in per_point.items():
        for i, features in enumerate(sample_requests(point, n, seed)):
            pinned = "2" if point == "card-fraud" and i % 10 == 9 else ""
            requests.append(
                score_request(
                    f"demo-{point}-{i:04d}", point, f"cust-{i % 97:03d}", features, pinned
                )
            )
    results: list[Scored] = []
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        gate = asyncio.Semaphore(8)

        async def one(req: scoring_pb2.ScoreRequest) -> None:
            async with gate:
                resp = await stub.Score(req, timeout=5.0)
                results.append(Scored(req.request_id, resp))

        await asyncio.gather(*(one(r) for r in requests))
    return results


def reason_codes(response: scoring_pb2.ScoreResponse) -> str:
    """The decision's reason codes, principal first ("-" when it has none)."""
    ranked = sorted(response.reason_codes, key=lambda reason: reason.rank)
    return ",".join(reason.code for reason in ranked) or "-"


SHOWN_PER_POINT = 3


def _shown(results: list[Scored]) -> list[Scored]:
    """A few decisions of each decision point, those with reasons first (what a decline or a
    flag looks like), otherwise in the order they were answered."""
    by_point: dict[str, list[Scored]] = {}
    for r in results:
        by_point.setdefault(r.response.decision_point, []).append(r)
    shown: list[Scored] = []
    for point in sorted(by_point):
        with_reasons_first = sorted(by_point[point], key=lambda r: not r.response.reason_codes)
        shown.extend(with_reasons_first[:SHOWN_PER_POINT])
    return shown


def print_summary(results: list[Scored]) -> None:
    counts = collections.Counter(
        (
            r.response.decision_point,
            f"{r.response.model_name} v{r.response.model_version}",
            r.response.arm,
            r.response.decision,
        )
        for r in results
    )
    print(f"\n{'decision point':<14} {'model':<18} {'arm':<8} {'decision':<12} {'count':>5}")
    for (point, model, arm, decision), n in sorted(counts.items()):
        print(f"{point:<14} {model:<18} {arm:<8} {decision:<12} {n:>5}")
    print(
        f"\n{'decision id':<38} {'decision point':<14} {'score':>7} {'decision':<12} "
        f"{'model':<18} reasons"
    )
    for r in _shown(results):
        resp = r.response
        model = f"{resp.model_name} v{resp.model_version}"
        print(
            f"{resp.decision_id:<38} {resp.decision_point:<14} {resp.score:>7.4f} "
            f"{resp.decision:<12} {model:<18} {reason_codes(resp)}"
        )


async def check_lineage(lineage: str, results: list[Scored], timeout_s: float) -> None:
    """Every decision must reach the store with the model and score the caller was given."""
    async with grpc.aio.insecure_channel(lineage) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        pending = {r.response.decision_id: r.response for r in results}
        deadline = time.monotonic() + timeout_s
        while pending:
            for decision_id, resp in list(pending.items()):
                try:
                    rec = await stub.GetDecision(
                        lineage_pb2.GetDecisionRequest(decision_id=decision_id), timeout=5.0
                    )
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    continue
                if (rec.model.version, rec.model.artifact_sha256, rec.outputs.score) != (
                    resp.model_version,
                    resp.model_sha256,
                    resp.score,
                ):
                    raise DemoError(f"lineage record {decision_id} differs from the response")
                del pending[decision_id]
            if pending and time.monotonic() > deadline:
                raise DemoError(f"{len(pending)} decisions missing from the lineage store")
            if pending:
                await asyncio.sleep(0.2)


def check_risk_page(web: str, decision_id: str) -> str:
    """The lineage store's risk page answers with the decision's page; returns its address."""
    import httpx

    url = f"{web}decisions/{decision_id}"
    response = httpx.get(url, timeout=10)
    if response.status_code != 200 or decision_id not in response.text:
        raise DemoError(
            f"the risk page did not show decision {decision_id} ({response.status_code})"
        )
    return url


def demo_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scoregate demo", description=demo_main.__doc__)
    _common_args(parser)
    parser.add_argument("--card-fraud", type=int, default=200, help="card-fraud decisions to send")
    parser.add_argument("--credit-risk", type=int, default=100, help="credit-risk decisions")
    parser.add_argument("--churn", type=int, default=50, help="churn decisions")
    parser.add_argument("--trade-anomaly", type=int, default=200, help="trade-anomaly decisions")
    parser.add_argument("--seed", type=int, default=7, help="seed for the sample requests")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    model_dir: Path = (args.model_dir or workdir / "models").resolve()
    try:
        ensure_models(model_dir)
        print("starting runtime, lineage store and gateway on 127.0.0.1 ...", flush=True)
        topology = Topology(workdir, model_dir).start()
    except Exception as e:
        print(f"scoregate demo: could not start: {e}", file=sys.stderr)
        return 1
    failed = False
    page = ""
    try:
        addresses = topology.addresses()
        print(f"gateway {addresses['gateway']}, lineage {addresses['lineage']}", flush=True)
        started = time.perf_counter()
        per_point = {
            "card-fraud": args.card_fraud,
            "credit-risk": args.credit_risk,
            "churn": args.churn,
            "trade-anomaly": args.trade_anomaly,
        }
        results = asyncio.run(score_samples(topology.gateway.address, per_point, args.seed))
        elapsed = time.perf_counter() - started
        print(f"\nscored {len(results)} decisions in {elapsed:.2f} s")
        print_summary(results)
        asyncio.run(check_lineage(topology.lineage.address, results, timeout_s=20.0))
        print(f"\nall {len(results)} decisions are in the lineage store, with the same model/score")
        # A model decision with reasons, credit-risk's first: what an adverse-action notice needs.
        explained = sorted(
            (r for r in results if r.response.reason_codes and not r.response.fallback_reason),
            key=lambda r: r.response.decision_point != "credit-risk",
        )
        sample = (explained or results)[0].response
        print(f"\nwhich model made decision {sample.decision_id}, and when, and why?\n")
        from governance.cli import lineage_main

        lineage = topology.lineage.address
        if lineage_main(["show", sample.decision_id, "--lineage", lineage]) != 0:
            raise DemoError(f"lineage show {sample.decision_id} failed")
        if sample.reason_codes:
            code = sample.reason_codes[0].code
            print(f"\n{sample.decision_point} decisions whose principal reason was {code}:\n")
            query = ["decisions", "--point", sample.decision_point, "--reason", code]
            if lineage_main([*query, "--lineage", lineage]) != 0:
                raise DemoError(f"lineage decisions --reason {code} failed")
        replayed = [r.response.decision_id for r in results[:20]]
        replayed += [r.response.decision_id for r in explained[:10]]
        print(f"\nreplaying {len(replayed)} decisions with their exact artifacts ...\n")
        replay = ["replay", *replayed, "--lineage", lineage, "--model-dir", str(model_dir)]
        if lineage_main(replay) != 0:
            raise DemoError("replay did not reproduce the scores bit for bit")
        run_approval_workflow(topology)
        page = check_risk_page(addresses["web"], sample.decision_id)
    except Exception as e:
        print(f"scoregate demo: FAILED: {e}", file=sys.stderr)
        failed = True
    finally:
        codes = topology.stop()
    unclean = {name: code for name, code in codes.items() if code != 0}
    if unclean:
        print(f"scoregate demo: unclean shutdown: {unclean}", file=sys.stderr)
        failed = True
    if not failed:
        print("\ndemo finished: every process stopped cleanly")
        print(f"risk page of this run (served while it ran): {page}")
        print("`make up` (scoregate up) serves it until Ctrl-C, at the address it prints")
    return 1 if failed else 0


demo_main.__doc__ = "Build models, start everything on loopback, score, query lineage, stop."
