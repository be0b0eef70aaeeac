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
mapfile -t files < <(find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
"$py" -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  "${files[@]}"
