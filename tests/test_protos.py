"""The committed protobuf code is what the pinned generator makes from the .proto files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PROTOS = Path(__file__).resolve().parent.parent / "protos"
GENERATED = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _generated_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name.endswith(GENERATED)
    }


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        ["bash", str(PROTOS / "generate.sh"), str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    fresh = _generated_files(tmp_path)
    committed = _generated_files(PROTOS)
    assert fresh, "the generator produced nothing"
    assert sorted(committed) == sorted(fresh), "generated file set drifted: run `make protos`"
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, f"generated code differs from the .proto files, run `make protos`: {stale}"


FIELD = re.compile(r"^\s*(repeated\s+|optional\s+)?[\w.<>, ]+\s+\w+\s*=\s*\d+\s*;")
DECLARATION = re.compile(r"^\s*(message|service|rpc|enum|oneof)\s")


def test_every_proto_declaration_is_commented() -> None:
    missing = []
    for proto in sorted(PROTOS.rglob("*.proto")):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            if FIELD.match(line) or DECLARATION.match(line):
                previous = lines[i - 1].strip() if i else ""
                if not previous.startswith("//"):
                    missing.append(f"{proto.name}:{i + 1}: {line.strip()}")
    assert not missing, "uncommented proto declarations:\n" + "\n".join(missing)
