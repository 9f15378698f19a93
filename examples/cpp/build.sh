#!/usr/bin/env bash
# Build run_onnxq_ep against ONNX Runtime's official C/C++ headers (the pinned npm package the EP build uses) and
# libonnxruntime.so from the pinned onnxruntime wheel; both are fetched into ~/.cache/onnxq once, checked.
#   examples/cpp/build.sh [OUT_DIR]      (default: examples/cpp/build)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here/build}"
python="${PYTHON:-python3}"
include="$("$python" "$root/ep_plugin/cmake/fetch_ort_headers.py")"
lib="$("$python" "$root/tools/fetch_onnxruntime_library.py")"
mkdir -p "$out"
libdir="$(dirname "$lib")"
"${CXX:-g++}" -std=c++17 -O2 -Wall -Wextra -I"$include" "$here/run_onnxq_ep.cc" -L"$libdir" -lonnxruntime \
  -Wl,-rpath,"$libdir" -o "$out/run_onnxq_ep"
echo "$out/run_onnxq_ep"
