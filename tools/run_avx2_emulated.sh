#!/usr/bin/env bash
# Run the test suite on an AVX2-only virtual CPU, whatever this machine is: valgrind's virtual x86-64 CPU reports
# AVX2 + FMA + F16C but no AVX-512, so onnxq's kernels *and stock onnxruntime's* (its AVX2 u8s8 kernel saturates
# 16-bit pair sums; docs/cpus.md) take their AVX2 paths. Only the levels an AVX2 CPU has are run (scalar, avx2 and
# the tests that are not per-level); the suite's own per-level runs cover the rest natively.
#
#   tools/run_avx2_emulated.sh                  # the whole suite
#   tools/run_avx2_emulated.sh tests/test_ep_qdq_matmul.py -x   # pytest arguments pass through
#
# Needs the installed package (`pip install '.[test]'`) and valgrind. Environment: PYTHON (default .venv/bin/python).
# About 7-8 minutes for the whole suite on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if ! command -v valgrind > /dev/null; then
  echo "run_avx2_emulated.sh: valgrind is not installed (Debian: apt-get install valgrind)" >&2
  exit 2
fi
if [[ $# -eq 0 ]]; then set -- tests; fi
# -P: not the source tree on sys.path (it has no compiled modules). valgrind warns once per syscall it does not know
# (onnxruntime probes 437); that is noise, not a finding.
exec valgrind --tool=none --quiet "$PYTHON" -P -m pytest -p no:cacheprovider -q -k "not isa-avx512 and not isa-amx" \
  --rootdir . "$@"
