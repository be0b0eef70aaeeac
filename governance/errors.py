"""The lineage store's errors, each carrying the gRPC status it maps to.

::

    LineageError (INTERNAL)
    ├── InvalidRequest (INVALID_ARGUMENT)     a request field is missing or malformed (named)
    │   ├── InvalidDecisionId                 a query named an empty or malformed decision id
    │   └── UnstorableData                    the database refused a value it can never hold
    │                                         (NUL in text, a number out of range): permanent
    ├── DecisionNotFound (NOT_FOUND)          the store holds no record with that id
    ├── ModelNotFound (NOT_FOUND)             no manifest is registered for that artifact sha256
    ├── EntryConflict (ALREADY_EXISTS)        an id is already used by different content
    ├── StoreUnavailable (UNAVAILABLE)        the database could not be written or read; retry
    ├── AccessRuleMissing (PERMISSION_DENIED) a guarded method without an access rule: closed
    └── ConfigurationError (FAILED_PRECONDITION)
        ├── DatabaseUrlError                  --db-url is malformed or names an unknown backend
        └── MigrationError                    the database's schema differs from this build's

``governance.status.to_status`` is the one place that turns these (and anything else) into a gRPC
status; a malformed *record* is not an error here but a rejection reported through OTLP
``partial_success`` (see ``governance.servicers``), and so is a record the database refused as
data: the ingestor stores the rest of its batch and rejects that one (``governance.ingest``).
StoreUnavailable is only for a database that cannot be reached or written, never for its data.
"""

from __future__ import annotations

import grpc


class LineageError(Exception):
    """Base of the lineage store's errors; ``code`` is the gRPC status a client sees."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidRequest(LineageError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidDecisionId(InvalidRequest):
    pass


class UnstorableData(InvalidRequest):
    """The database refused a value as data (SQLite's and PostgreSQL's data errors): the same
    value is refused every time, so retrying cannot help; the message names the database's
    reason."""


class DecisionNotFound(LineageError):
    code = grpc.StatusCode.NOT_FOUND


class ModelNotFound(LineageError):
    code = grpc.StatusCode.NOT_FOUND


class EntryConflict(LineageError):
    code = grpc.StatusCode.ALREADY_EXISTS


class StoreUnavailable(LineageError):
    code = grpc.StatusCode.UNAVAILABLE


class AccessRuleMissing(LineageError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ConfigurationError(LineageError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class DatabaseUrlError(ConfigurationError):
    pass


class MigrationError(ConfigurationError):
    pass
