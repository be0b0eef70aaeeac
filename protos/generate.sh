#!/usr/bin/env bash
# Generates the Python messages, gRPC stubs and .pyi type stubs for every .proto under protos/.
# Usage: protos/generate.sh OUT_DIR   (make protos passes protos/, the drift test a scratch folder)
# The generator is pinned in pyproject.toml (grpcio-tools, mypy-protobuf); run it from the venv.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
py="${PYTHON:-python}"
bin="$(dirname "$(command -v "$py")")"
# protoc finds the mypy-protobuf plugins (protoc-gen-mypy, protoc-gen-mypy_grpc) on PATH.
export PATH="$bin:$PATH"
cd "$here"
# scoregate's own protos: the file name in the descriptor is the path under protos/.
mapfile -t files < <(find scoring lineage -name '*.proto' | LC_ALL=C sort)
"$py" -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  "${files[@]}"
# The OIP v2 protocol is compiled from its own folder, so that its descriptor is named
# grpc_predict_v2.proto as in KServe's package: both copies then load into one process (a test's).
# Messages only: gRPC's stub generator would import the module by that bare name.
mkdir -p "$out/oip/v2"
"$py" -m grpc_tools.protoc -I oip/v2 \
  --python_out="$out/oip/v2" --mypy_out="$out/oip/v2" \
  oip/v2/grpc_predict_v2.proto
