#!/usr/bin/env bash
# The binary wheel as a user gets it: build it (tools/build_wheel.sh), install it into a fresh virtual environment,
# then, with nothing but that environment on PATH (no compiler, CMake or npm), register the EP and run an INT8 and
# an FP8 model through it (tools/wheel/smoke.py).
#   tools/check_wheel.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
bash "$root/tools/build_wheel.sh" "$work/dist"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/onnxq-*manylinux*.whl
cp "$root"/sample_models/tiny_encoder.onnx "$root"/sample_models/calib_tiny_encoder.npz "$root"/tools/wheel/smoke.py \
  "$work/"
cd "$work"
env -i HOME="$work" PATH="$work/venv/bin" "$work/venv/bin/python" -I smoke.py
