"""The canary controller's errors, each with the exit code ``scoregate canary`` ends with.

::

    CanaryError                 3  the run stopped without a verdict (aborted)
    ├── PlanError               2  the plan file, or a setting, is not valid
    ├── RoutesError             3  the routes could not be read, edited or written
    ├── LineageError            3  the lineage store could not be asked or told
    └── NotApplied              3  no gateway took the new weight in time

The verdicts themselves are not errors: a promotion to 100 % exits 0 and a rollback 1
(``EXIT_PROMOTED``, ``EXIT_ROLLED_BACK``).
"""

from __future__ import annotations

EXIT_PROMOTED = 0
EXIT_ROLLED_BACK = 1
EXIT_INVALID = 2
EXIT_ABORTED = 3


class CanaryError(Exception):
    exit_code = EXIT_ABORTED


class PlanError(CanaryError):
    exit_code = EXIT_INVALID


class RoutesError(CanaryError):
    pass


class LineageError(CanaryError):
    pass


class NotApplied(CanaryError):
    pass
