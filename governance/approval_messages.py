"""Approvals between protobuf and ``governance.approvals``' values, for the servicer."""

from __future__ import annotations

from governance.approvals import ApprovalStatus, VersionRef
from governance.convert import timestamp_from_us
from governance.store.entries import Approval
from lineage.v1 import lineage_pb2


def ref_from_proto(ref: lineage_pb2.ModelVersionRef) -> VersionRef:
    return VersionRef(ref.artifact_sha256, ref.model_name, ref.model_version)


def evidence_from_proto(evidence: lineage_pb2.ValidationEvidence) -> dict[str, str]:
    return {
        "report_sha256": evidence.report_sha256,
        "report_uri": evidence.report_uri,
        "model_card_sha256": evidence.model_card_sha256,
        "model_card_uri": evidence.model_card_uri,
    }


def approval_to_proto(a: Approval) -> lineage_pb2.Approval:
    message = lineage_pb2.Approval(
        approval_id=a.approval_id,
        action=a.action,
        artifact_sha256=a.artifact_sha256,
        model_name=a.model_name,
        model_version=a.model_version,
        principal=a.principal,
        roles=list(a.roles),
        verified_by=a.verified_by,
        at=timestamp_from_us(a.at_us),
        comment=a.comment,
        seq=a.seq,
        chain_sha256=a.chain_sha256,
    )
    if any(a.evidence.values()):
        message.evidence.CopyFrom(lineage_pb2.ValidationEvidence(**a.evidence))
    return message


def status_to_proto(s: ApprovalStatus) -> lineage_pb2.ApprovalStatus:
    return lineage_pb2.ApprovalStatus(
        artifact_sha256=s.artifact_sha256,
        registered=s.registered,
        model_name=s.model_name,
        model_version=s.model_version,
        author=s.author,
        approved=s.approved,
        missing=s.missing,
        approvers=list(s.approvers),
        history=[approval_to_proto(a) for a in s.history],
        heldout_auc=s.heldout_auc,
        heldout_rows=s.heldout_rows,
    )
