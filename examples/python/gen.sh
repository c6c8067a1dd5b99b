#!/usr/bin/env bash
# Generates the Python stubs of proto/ into examples/python/gen with Debian's
# protoc and grpc_python_plugin (apt-get install protobuf-compiler
# protobuf-compiler-grpc python3-grpcio).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/gen}
rm -rf "$out" && mkdir -p "$out"
cd "$root"
protoc -I proto -I /usr/include \
  --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  $(find proto -name '*.proto' | sort)
