"""``scoregate lineage``: run the store, and ask it what was decided, by which model, when.

Exit codes: 0 done, 1 the store answered no (no such decision, invalid request) or, for
``verify`` and ``replay``, the check failed; 2 the store could not be reached or failed.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

import grpc

from governance.client import EXIT_NO, CliExit, call
from governance.output import as_json, pairs, when
from governance.redaction_view import WITHHELD, withheld_features
from lineage.v1 import lineage_pb2

USAGE = """usage: scoregate lineage COMMAND ...

  serve            run the lineage store (OTLP receiver + lineage.v1.LineageService)
  show             one decision: which model made it, when, on what inputs, overrides, outcomes
  shadows          the shadow decisions that mirrored one decision's request
  decisions        decisions of an entity, a model version or a reason code in a time range
  serving-at       which model versions, arms and weights served a decision point at a time
  model-history    when each version of a model started and stopped taking traffic
  register-models  keep every manifest of a model directory, by artifact sha256
  override         record a reviewer's override of a decision
  outcome          record an observed outcome (confirmed fraud, default, ...) of a decision
  approve          approve a model version with its validation evidence (four eyes)
  revoke           revoke a model version's approvals: gateways refuse it traffic
  approvals        whether a model version is approved, by whom, on what evidence
  checkpoint       print the hash chain's current head (and append it to a file)
  access-log       who called the store: method, decisions or query, outcome (filters by
                   principal, method, decision id and time)
  drift            PSI of each feature and the score against training, the decision mix and
                   canary against primary, per window, version and arm
  performance      AUC, KS and bad rate by score band from recorded outcomes, per version
  report           a self-contained HTML monitoring report for a model-risk committee
  verify           check the database against its hash chain and the latest checkpoints
  purge            delete what is older than the retention period; the run is recorded
  backfill-drift   count decisions stored before the monitoring counters (schema 8) into
                   them, in batches; resumes, and counts nothing twice
  replay           re-score a decision (and its reasons) with its exact artifact, bit for bit

Run `scoregate lineage COMMAND --help` for each command's options.
"""

EXIT_NOT_FOUND = EXIT_NO

_when = when


def _feature(value: lineage_pb2.FeatureSnapshotValue) -> str:
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        # repr is the shortest exact form: an auditor sees the value that was scored.
        text = repr(value.number_value)
        return text.removesuffix(".0")
    return "(unset)"


def _one_line(text: str) -> str:
    """A value for the table's one line (the JSON format keeps it exactly)."""
    return " ".join(text.split())


_VERIFIED_BY = {
    "response_parameter": "the runtime's answer (artifact_sha256 response parameter)",
    "metadata": "the server's model metadata, checked when the gateway connected",
    "declared": "nothing: declared in the routes file and trusted",
    "rules_file": "the gateway, which hashed the rules file it loaded",
}


def _verified_by(how: str) -> str:
    return f"{how}: {_VERIFIED_BY[how]}" if how in _VERIFIED_BY else how or "(not recorded)"


def _asked_by(record: lineage_pb2.DecisionRecord) -> str:
    if not record.principal:
        return "(not recorded: open access, or a record from before gateways kept it)"
    return (
        f"{record.principal}  ({record.principal_verified_by}, "
        f"access policy {record.access_policy_version})"
    )


def reason_rows(out: lineage_pb2.Outputs) -> list[tuple[str, str]]:
    """The reasons, principal first, each with the feature it stands for and that feature's
    push towards the adverse outcome; then every contribution, largest push either way first,
    down to the base value and their sum, the raw margin the score was computed from."""
    rows: list[tuple[str, str]] = []
    if out.reasons or out.reason_catalogue_version:
        rows.append(("reason catalogue", out.reason_catalogue_version or "(not recorded)"))
    for reason in sorted(out.reasons, key=lambda r: r.rank):
        text = f"{reason.code}  {reason.description}"
        if reason.feature:
            text += f"  ({reason.feature} {reason.contribution:+.6f})"
        rows.append((f"reason {reason.rank}", text))
    if not out.contributions:
        return rows
    if not out.reasons:
        rows.append(("reasons", f"none (at most {out.reasons_wanted} for this decision)"))
    rows.append(("contributions", "to the raw margin (log-odds of the adverse outcome)"))
    ordered = sorted(out.contributions.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    rows += [(f"  {name}", f"{value:+.6f}") for name, value in ordered]
    margin = math.fsum([*out.contributions.values(), out.contributions_base])
    rows += [
        ("  base value", f"{out.contributions_base:+.6f}"),
        ("  raw margin", f"{margin:+.6f}  (the sum)"),
    ]
    return rows


def format_table(
    record: lineage_pb2.DecisionRecord, manifest: lineage_pb2.ModelManifest | None = None
) -> str:
    """A two-column view answering: which model, when, on what inputs, with what result."""
    m, route, out, inputs = record.model, record.route, record.outputs, record.inputs
    rows: list[tuple[str, str]] = [
        ("decision id", record.decision_id),
        ("request id", record.request_id),
        ("asked by", _asked_by(record)),
        ("decision point", record.decision_point),
        ("entity", record.entity_key or (f"({WITHHELD})" if withheld_features(record) else "")),
        ("received", _when(record.received_at)),
        ("decided", f"{_when(record.decided_at)}  ({record.latency_us / 1000:.3f} ms)"),
        ("stored", _when(record.stored_at)),
        ("model", f"{m.name} v{m.version}"),
        ("model sha256", m.artifact_sha256),
        ("identity verified by", _verified_by(m.identity_verified_by)),
        ("runtime", m.runtime_instance),
        ("scored in", m.scoring_environment or "(not reported)"),
        (
            "arm",
            route.arm + (f" (fallback: {route.fallback_reason})" if route.fallback_reason else ""),
        ),
    ]
    if record.parent_decision_id:
        rows.append(("shadow of", record.parent_decision_id))
    if record.fallback_from or record.fallback_error:
        rows.append(("fallback from", record.fallback_from))
        rows.append(("fallback error", _one_line(record.fallback_error)))
    rows += [
        ("routing config", route.config_version),
        ("attempts", str(route.attempts)),
        ("score", f"{out.score:.6f}"),
        ("decision", out.decision),
        ("policy", out.policy_version),
    ]
    for o in record.overrides:
        rows.append(
            (
                "override",
                f"{o.new_decision} by {o.reviewer} at {_when(o.at)}: {o.reason}  [{o.override_id}]",
            )
        )
    for seen in record.outcomes:
        rows.append(
            ("outcome", f"{seen.label} at {_when(seen.at)} from {seen.source}  [{seen.outcome_id}]")
        )
    rows += reason_rows(out)
    rows += [
        ("inputs sha256", inputs.features_sha256),
        ("feature schema", inputs.feature_schema_version),
    ]
    rows += [(f"  {name}", _feature(inputs.features[name])) for name in sorted(inputs.features)]
    if withheld_features(record):
        rows.append(("  features", f"({WITHHELD})"))
    rows += [
        ("trace id", record.trace_id),
        ("span id", record.span_id),
        ("gateway", record.gateway_instance),
        ("record sha256", record.record_sha256),
        ("chain", f"seq {record.seq}  {record.chain_sha256}"),
    ]
    if manifest is not None:
        rows.append(
            (
                "manifest",
                f"{manifest.name} v{manifest.version}, registered {_when(manifest.registered_at)}",
            )
        )
    elif record.model.artifact_sha256:
        rows.append(("manifest", "(not registered: run scoregate lineage register-models)"))
    return pairs(rows)


def format_json(record: lineage_pb2.DecisionRecord) -> str:
    return as_json(record)


def show_main(argv: list[str], prog: str = "scoregate lineage show") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Print one decision's lineage record.")
    parser.add_argument("decision_id", help="the decision id the gateway returned")
    parser.add_argument("--lineage", required=True, metavar="HOST:PORT", help="lineage store")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    args = parser.parse_args(argv)
    request = lineage_pb2.GetDecisionRequest(decision_id=args.decision_id)
    try:
        record = call(prog, args.lineage, lambda s: s.GetDecision(request, timeout=args.timeout))
        if args.format == "json":
            print(format_json(record))
            return 0
        manifest = call(prog, args.lineage, lambda s: _manifest(s, record, args.timeout))
    except CliExit as e:
        return e.code
    print(format_table(record, manifest))
    return 0


def _manifest(
    stub: object, record: lineage_pb2.DecisionRecord, timeout: float
) -> lineage_pb2.ModelManifest | None:
    request = lineage_pb2.GetModelRequest(artifact_sha256=record.model.artifact_sha256)
    try:
        return stub.GetModel(request, timeout=timeout)  # type: ignore[attr-defined, no-any-return]
    except grpc.RpcError as e:
        if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return None
        raise


def _commands() -> dict[str, Callable[[list[str]], int]]:
    # Imported on use: `show` never pays for the others' imports (replay loads onnxruntime).
    from governance import (
        access_log_command,
        admin,
        approval_commands,
        backfill_command,
        commands,
        drift_command,
        replay,
        report,
    )

    return {
        "show": show_main,
        "shadows": commands.shadows_main,
        "decisions": commands.decisions_main,
        "serving-at": commands.serving_at_main,
        "model-history": commands.model_history_main,
        "register-models": commands.register_models_main,
        "override": commands.override_main,
        "outcome": commands.outcome_main,
        "approve": approval_commands.approve_main,
        "revoke": approval_commands.revoke_main,
        "approvals": approval_commands.approvals_main,
        "checkpoint": commands.checkpoint_main,
        "access-log": access_log_command.access_log_main,
        "drift": drift_command.drift_main,
        "performance": drift_command.performance_main,
        "report": report.report_main,
        "verify": admin.verify_main,
        "purge": admin.purge_main,
        "backfill-drift": backfill_command.backfill_main,
        "replay": replay.replay_main,
    }


def lineage_main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "serve":
        from governance.server import main as serve_main

        return serve_main(rest, prog="scoregate lineage serve")
    if command == "show":
        return show_main(rest)
    commands = _commands()
    if command in commands:
        return commands[command](rest)
    if command in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    print(USAGE, end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(lineage_main())
