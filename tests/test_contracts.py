"""The contracts between components live in the leaf packages under protos/, and hold there."""

from __future__ import annotations

import subprocess
import sys

from google.protobuf import descriptor_pb2

from oip.v2 import grpc_predict_v2_pb2 as oip


def test_gateway_and_lineage_store_never_load_kserve() -> None:
    # kserve parses sys.argv when imported; neither component may pull it in any more.
    code = (
        "import sys\n"
        "import gateway.cli, gateway.server, gateway.oip, governance.cli, governance.server\n"
        "import governance.replay\n"
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
