"""What a caller without ``read_features`` gets instead of personal data.

A decision's entity key and its feature values are personal data (GDPR, PCI DSS for card
data); a caller granted ``read_decisions`` alone still sees which model decided what, when,
why (reasons, contributions) and the hashes that prove the record (``features_sha256``,
``record_sha256``), with the entity key and the feature values left empty.
"""

from __future__ import annotations

from collections.abc import Iterable

from governance.caller import CALLER
from lineage.v1 import lineage_pb2
from security.policy_schema import LineagePermission


def sees_personal_data() -> bool:
    return CALLER.get().may(LineagePermission.READ_FEATURES)


def redact_record(record: lineage_pb2.DecisionRecord) -> lineage_pb2.DecisionRecord:
    if not sees_personal_data():
        record.entity_key = ""
        record.inputs.ClearField("features")
    return record


def redact_summaries(summaries: Iterable[lineage_pb2.DecisionSummary]) -> None:
    if not sees_personal_data():
        for summary in summaries:
            summary.entity_key = ""
