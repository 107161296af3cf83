#!/usr/bin/env bash
# Generates the Python message and stub modules of ipledger's API from proto/ipledger/v1 into
# examples/python/generated/ (or the directory given as $1), with grpc_tools' own protoc: no protoc
# to install, and the generated code matches the installed protobuf and grpcio (requirements.txt).
# The output is not committed (.gitignore): it is regenerated whenever the proto changes, as a bank
# would on each new proto release.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/generated}"
mkdir -p "$out"
# `python3 -m grpc_tools.protoc` adds the include path of the well-known types
# (google/protobuf/timestamp.proto) itself. --pyi_out gives editors the messages' fields.
python3 -m grpc_tools.protoc \
  --proto_path="$repo/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$repo/proto/ipledger/v1/ipledger.proto"
echo "generated $out/ipledger/v1/ipledger_pb2.py and ipledger_pb2_grpc.py"
