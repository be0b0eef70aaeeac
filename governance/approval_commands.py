"""``scoregate lineage approve``, ``revoke`` and ``approvals``: the four-eyes workflow.

A version is named ``--sha256`` (its artifact's) or ``--model NAME --version V`` (the store
resolves it through the registered manifests). ``--report`` and ``--model-card`` are files: the
command hashes them, so the approval proves which document it rests on; ``--report-uri`` and
``--model-card-uri`` say where they are kept (default: the path given). ``--as`` and ``--role``
name the approver only on a store with open access (the demo); a store with an access policy
records the authenticated principal and the roles its policy grants, whatever is sent.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from governance.client import call, fail
from governance.commands import _parser, _run
from governance.output import as_csv, as_json, pairs, table, when
from lineage.v1 import lineage_pb2


def _version_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sha256", default="", help="the artifact's sha256")
    parser.add_argument("--model", default="", help="model name (with --version)")
    parser.add_argument("--version", default="", help="model version (with --model)")


def _ref(prog: str, args: argparse.Namespace) -> lineage_pb2.ModelVersionRef:
    if not args.sha256 and not (args.model and args.version):
        raise fail(prog, "name the version: --sha256, or --model and --version")
    return lineage_pb2.ModelVersionRef(
        artifact_sha256=args.sha256, model_name=args.model, model_version=args.version
    )


def _hashed(prog: str, path: Path | None, flag: str) -> str:
    if path is None:
        return ""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise fail(prog, f"{flag} {path}: cannot read: {e.strerror}") from None


def _entry_line(a: lineage_pb2.Approval) -> str:
    roles = ",".join(a.roles) or "-"
    trust = " (unauthenticated)" if a.verified_by == "none" else ""
    return f"{a.action} by {a.principal} [{roles}]{trust} at {when(a.at)} (seq {a.seq})"


def approve_main(argv: list[str], prog: str = "scoregate lineage approve") -> int:
    parser = _parser(prog, "Approve a model version, with its validation evidence.", False)
    _version_args(parser)
    parser.add_argument("--report", type=Path, help="the validation report file (hashed)")
    parser.add_argument("--report-uri", default="", help="where the report is kept")
    parser.add_argument("--model-card", type=Path, help="the model card file (hashed)")
    parser.add_argument("--model-card-uri", default="", help="where the model card is kept")
    parser.add_argument("--comment", default="", help="kept with the approval")
    parser.add_argument("--as", dest="principal", default="", help="open access only: who")
    parser.add_argument("--role", action="append", default=[], help="open access only: role")
    args = parser.parse_args(argv)

    def main() -> int:
        evidence = lineage_pb2.ValidationEvidence(
            report_sha256=_hashed(prog, args.report, "--report"),
            report_uri=args.report_uri or (str(args.report) if args.report else ""),
            model_card_sha256=_hashed(prog, args.model_card, "--model-card"),
            model_card_uri=args.model_card_uri or (str(args.model_card) if args.model_card else ""),
        )
        request = lineage_pb2.RecordApprovalRequest(
            model=_ref(prog, args),
            evidence=evidence,
            comment=args.comment,
            principal=args.principal,
            roles=args.role,
        )
        got = call(prog, args.lineage, lambda s: s.RecordApproval(request, timeout=args.timeout))
        print(f"{got.model_name} v{got.model_version} {got.artifact_sha256}: {_entry_line(got)}")
        return 0

    return _run(main)


def revoke_main(argv: list[str], prog: str = "scoregate lineage revoke") -> int:
    parser = _parser(prog, "Revoke every approval of a model version so far.", False)
    _version_args(parser)
    parser.add_argument("--reason", required=True, help="why (kept in the chain)")
    parser.add_argument("--as", dest="principal", default="", help="open access only: who")
    args = parser.parse_args(argv)

    def main() -> int:
        request = lineage_pb2.RevokeApprovalRequest(
            model=_ref(prog, args), reason=args.reason, principal=args.principal
        )
        got = call(prog, args.lineage, lambda s: s.RevokeApproval(request, timeout=args.timeout))
        r = got.revocation
        print(
            f"{r.model_name} v{r.model_version} {r.artifact_sha256}: {got.revoked} approval(s) "
            f"revoked; {_entry_line(r)}"
        )
        return 0

    return _run(main)


def approvals_main(argv: list[str], prog: str = "scoregate lineage approvals") -> int:
    parser = _parser(prog, "Whether a model version holds a valid four-eyes approval.")
    _version_args(parser)
    args = parser.parse_args(argv)

    def main() -> int:
        request = lineage_pb2.GetApprovalsRequest(model=_ref(prog, args))
        got = call(prog, args.lineage, lambda s: s.GetApprovals(request, timeout=args.timeout))
        if args.format == "json":
            print(as_json(got))
            return 0
        s = got.statuses[0]
        rows = [_history_row(a) for a in s.history]
        if args.format == "csv":
            print(as_csv(rows, _HISTORY_COLUMNS))
            return 0
        state = "APPROVED" if s.approved else f"NOT APPROVED: {s.missing}"
        print(
            pairs(
                [
                    ("model", f"{s.model_name} v{s.model_version}"),
                    ("artifact sha256", s.artifact_sha256),
                    ("author", s.author or "(not recorded)"),
                    ("held-out AUC", f"{s.heldout_auc:.4f} on {s.heldout_rows} rows"),
                    ("status", state),
                    ("approvers", ", ".join(s.approvers) or "(none)"),
                ]
            )
        )
        print()
        print(table(rows, _HISTORY_COLUMNS))
        return 0

    return _run(main)


_HISTORY_COLUMNS = (
    "at",
    "action",
    "principal",
    "roles",
    "verified_by",
    "report_sha256",
    "report_uri",
    "comment",
    "seq",
)


def _history_row(a: lineage_pb2.Approval) -> dict[str, str]:
    return {
        "at": when(a.at),
        "action": a.action,
        "principal": a.principal,
        "roles": ",".join(a.roles),
        "verified_by": a.verified_by,
        "report_sha256": a.evidence.report_sha256[:16],
        "report_uri": a.evidence.report_uri,
        "comment": a.comment,
        "seq": str(a.seq),
    }
