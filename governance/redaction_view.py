"""How the CLI tells a decision whose personal data the store withheld (``governance.redaction``)
from one that has none: the features' hash is there, their values are not."""

from __future__ import annotations

from lineage.v1 import lineage_pb2

WITHHELD = "not shown: the caller lacks the read_features permission"


def withheld_features(record: lineage_pb2.DecisionRecord) -> bool:
    return bool(record.inputs.features_sha256) and not record.inputs.features
