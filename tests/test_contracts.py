"""The contracts between components live in the leaf packages under protos/, and hold there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from oip.v2 import grpc_predict_v2_pb2 as oip


def test_gateway_and_lineage_store_never_load_kserve() -> None:
    # kserve parses sys.argv when imported; neither component may pull it in any more.
    code = (
        "import sys\n"
        "import gateway.cli, gateway.server, gateway.runtime_client.oip\n"
        "import governance.cli, governance.replay, governance.server\n"
        "loaded = sorted(m for m in sys.modules if m == 'kserve' or m.startswith('kserve.'))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert out == "", f"kserve modules loaded: {out}"


def test_our_oip_v2_descriptor_is_kserves() -> None:
    # The runtimes serve KServe's compiled protocol and the gateway calls with ours: the two
    # descriptors must be the same, message for message and field for field.
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as kserve_oip

    ours, theirs = descriptor_pb2.FileDescriptorProto(), descriptor_pb2.FileDescriptorProto()
    oip.DESCRIPTOR.CopyToProto(ours)
    kserve_oip.DESCRIPTOR.CopyToProto(theirs)
    assert ours == theirs
    request = kserve_oip.ModelInferRequest(model_name="card-fraud", model_version="1")
    assert oip.ModelInferRequest.FromString(request.SerializeToString()).model_name == "card-fraud"


def test_a_forbidden_import_fails_the_import_rules(tmp_path: Path) -> None:
    # The rules in pyproject.toml run on a copy of the tree where the gateway imports the store.
    root = Path(__file__).resolve().parent.parent
    for package in ("gateway", "governance", "runtimes", "loadtests", "protos"):
        shutil.copytree(
            root / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(root / "pyproject.toml", tmp_path)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{tmp_path / 'protos'}"}
    lint = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    clean = subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    errors = tmp_path / "gateway" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport governance.store  # noqa: E402\n")
    broken = subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert broken.returncode != 0
    assert "The gateway reaches the lineage store only over gRPC, never by import BROKEN" in (
        broken.stdout
    )
    assert "gateway.errors -> governance.store" in broken.stdout
