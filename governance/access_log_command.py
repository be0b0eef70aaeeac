"""``scoregate lineage access-log``: who called the store, when, on what, and how it ended."""

from __future__ import annotations

from governance.client import call
from governance.commands import _parser, _run, set_period
from governance.output import Row, as_csv, as_json, table, when
from lineage.v1 import lineage_pb2


def access_row(e: lineage_pb2.AccessLogEntry) -> Row:
    return {
        "at": when(e.at),
        "principal": e.principal or "(none)",
        "verified_by": e.verified_by,
        "method": e.method,
        "permission": e.permission,
        "decision_ids": " ".join(e.decision_ids),
        "query": e.query_json if e.query_json != "{}" else "",
        "outcome": e.outcome,
        "peer": e.peer,
        "seq": str(e.seq),
    }


ACCESS_COLUMNS = tuple(access_row(lineage_pb2.AccessLogEntry()))


def access_log_main(argv: list[str], prog: str = "scoregate lineage access-log") -> int:
    parser = _parser(prog, "The store's access log: every call to it, oldest first.")
    parser.add_argument("--principal", default="", help="only this caller's calls")
    parser.add_argument("--method", default="", help="only this method's, e.g. GetDecision")
    parser.add_argument("--decision-id", default="", help="only calls that named this decision")
    parser.add_argument("--since", help="ISO 8601 start (inclusive); default: the beginning")
    parser.add_argument("--until", help="ISO 8601 end (exclusive); default: now")
    parser.add_argument("--limit", type=int, default=100, help="most entries to list")
    parser.add_argument("--page-token", default="", help="continue after a previous listing")
    args = parser.parse_args(argv)

    def main() -> int:
        request = lineage_pb2.ListAccessLogRequest(
            principal=args.principal,
            method=args.method,
            decision_id=args.decision_id,
            limit=args.limit,
            page_token=args.page_token,
        )
        set_period(prog, request, args.since, args.until)
        reply = call(prog, args.lineage, lambda s: s.ListAccessLog(request, timeout=args.timeout))
        if args.format == "json":
            print(as_json(reply))
            return 0
        rows = [access_row(e) for e in reply.entries]
        if args.format == "csv":
            print(as_csv(rows, ACCESS_COLUMNS))
            return 0
        if not rows:
            print("no access-log entries in the range")
        else:
            print(table(rows, ACCESS_COLUMNS))
        if reply.next_page_token:
            print(f"\nmore: --page-token {reply.next_page_token}")
        return 0

    return _run(main)
