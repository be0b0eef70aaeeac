"""A venv of its own for a client that cannot share the tests' interpreter (tritonclient: it
registers the OIP v2 messages under the same protobuf package as kserve).

Built from a pinned requirements file with pip, from the package index, and kept in the
repository's work folder (``.scoregate/``, as the Makefile's WORKDIR): a fresh machine builds it
on the first run and later runs reuse it, until the requirements file changes. A lock keeps two
test runs from building it at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

WORKDIR = Path(__file__).resolve().parents[2] / ".scoregate"


class ClientVenvError(Exception):
    """The venv could not be built; the message holds pip's output."""


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise ClientVenvError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")


def client_venv(name: str, requirements: Path) -> Path:
    """The interpreter of venv ``name`` with ``requirements`` installed; built if missing or
    stale."""
    venv = WORKDIR / name
    python = venv / "bin" / "python"
    stamp = venv / ".requirements-sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    WORKDIR.mkdir(parents=True, exist_ok=True)
    with (WORKDIR / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text() == digest:
            return python
        shutil.rmtree(venv, ignore_errors=True)
        # The tests' own pip installs into the new venv: no ensurepip, no pip inside it.
        _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        _run(
            [
                sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                "--disable-pip-version-check", "--only-binary", ":all:", "-r", str(requirements),
            ]
        )  # fmt: skip
        stamp.write_text(digest)
    return python
