"""``scoregate canary run|status``: settings built here, errors mapped to exit codes here.

Exit codes: 0 promoted to 100 %, 1 rolled back, 2 invalid plan or settings, 3 aborted (the
run stopped without a verdict; the weight was set to 0 where the routes could still be written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from datetime import UTC, datetime

from gateway.canary.appliers import ConfigMapRoutes, FileRoutes, RoutesStore, kubernetes_api
from gateway.canary.controller import CanaryController
from gateway.canary.errors import EXIT_INVALID, CanaryError, PlanError
from gateway.canary.lineage import LineageCanaryClient, analysis_of, open_channel, us
from gateway.canary.plan import load_plan
from gateway.canary.settings import CanaryRunSettings, LineageClientSettings, parse
from security.tls import ClientTls

USAGE = """usage: scoregate canary COMMAND [FLAGS]

commands:
  run     step a decision point's canary weight by a plan, judging each step from lineage
  status  the steps of the canary runs recorded for a decision point

'scoregate canary COMMAND --help' lists the flags.
"""


def _lineage(settings: LineageClientSettings) -> LineageCanaryClient:
    tls = None
    if settings.lineage_ca_file is not None or settings.lineage_cert_file is not None:
        tls = ClientTls(
            settings.lineage_ca_file,
            settings.lineage_cert_file,
            settings.lineage_key_file,
            settings.lineage_server_name,
        )
    token = ""
    if settings.lineage_token_file is not None:
        try:
            token = settings.lineage_token_file.read_text().strip()
        except OSError as e:
            raise CanaryError(f"{settings.lineage_token_file}: {e.strerror}") from None
    return LineageCanaryClient(settings.lineage, open_channel(settings.lineage, tls, token))


def _routes(settings: CanaryRunSettings) -> RoutesStore:
    if settings.routes_file is not None:
        return FileRoutes(settings.routes_file)
    namespace, name = settings.routes_configmap.split("/")
    api = kubernetes_api(settings.kube_api_url, settings.kube_token_file, settings.kube_ca_file)
    return ConfigMapRoutes(api, namespace, name, settings.routes_configmap_key)


async def _run(settings: CanaryRunSettings) -> int:
    plan = load_plan(settings.plan)
    lineage = _lineage(settings)
    controller = CanaryController(
        plan, _routes(settings), lineage, settings.started_by, settings.apply_timeout_s
    )
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
    try:
        outcome = await controller.run()
    finally:
        await lineage.close()
    print(f"canary run {outcome.run_id}: {outcome.verdict} ({outcome.reason})")
    return outcome.exit_code


def _when(at_us: int) -> str:
    return datetime.fromtimestamp(at_us / 1e6, UTC).isoformat(timespec="milliseconds")


async def _status(settings: LineageClientSettings, point: str) -> int:
    lineage = _lineage(settings)
    try:
        steps = await lineage.steps(point)
    finally:
        await lineage.close()
    if not steps:
        print(f"no canary run recorded for {point}")
    for change in steps:
        a = analysis_of(change)
        print(
            f"{_when(us(change.changed_at))}  run {a.get('run_id')}  "
            f"{a.get('verdict'):<8}  {a.get('weight_before')} % -> {a.get('weight_after')} %  "
            f"by {change.initiated_by or a.get('started_by')}  {a.get('reason')}"
        )
    return 0


def canary_main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else EXIT_INVALID
    command, rest = argv[0], argv[1:]
    try:
        if command == "run":
            settings = parse(CanaryRunSettings, "scoregate canary run", rest)
            return asyncio.run(_run(settings))
        if command == "status":
            point, rest = _take_point(rest)
            status = parse(LineageClientSettings, "scoregate canary status", rest)
            return asyncio.run(_status(status, point))
    except CanaryError as e:
        print(f"scoregate canary {command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return CanaryError.exit_code
    print(f"scoregate canary: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return EXIT_INVALID


def _take_point(args: list[str]) -> tuple[str, list[str]]:
    rest = list(args)
    with contextlib.suppress(ValueError):
        i = rest.index("--point")
        if i + 1 < len(rest):
            point = rest[i + 1]
            del rest[i : i + 2]
            return point, rest
    raise PlanError("--point DECISION_POINT is required")


if __name__ == "__main__":
    raise SystemExit(canary_main(sys.argv[1:]))
