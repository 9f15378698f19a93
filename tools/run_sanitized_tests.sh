#!/usr/bin/env bash
# Build the onnxq EP and the kernel module with AddressSanitizer + UndefinedBehaviorSanitizer, out of tree, and run
# the EP / kernel / hardening tests against that build; optionally fuzz the EP with it for a bounded time.
#
#   tools/run_sanitized_tests.sh                      # build, then the tests
#   tools/run_sanitized_tests.sh --fuzz-seconds 120   # ... then tools/fuzz/fuzz_ep.py for 120 s
#   tools/run_sanitized_tests.sh --no-tests --fuzz-seconds 600
#   tools/run_sanitized_tests.sh -- -k act_matmul     # extra pytest arguments after --
#
# Works from a fresh clone: the ONNX Runtime headers come from the same pinned fetch as `pip install .`
# (ep_plugin/cmake/fetch_ort_headers.py, cached; ONNXQ_ORT_INCLUDE_DIR overrides). Needs the Python dependencies
# of onnxq (`pip install '.[test]'` or an editable install); pybind11 (for the kernel module) is installed into that
# Python if missing. The onnxq package itself need not be installed: the source tree is used then.
#
# Environment: PYTHON (default .venv/bin/python if it exists, else python3), ONNXQ_ASAN_BUILD_DIR (default
# ${TMPDIR:-/tmp}/onnxq-asan-build), JOBS (default: nproc), FUZZ_RSS_LIMIT_MB (default 6000: ASan's
# hard_rss_limit_mb while fuzzing).
#
# How the sanitized code gets loaded into an unsanitized Python: LD_PRELOAD of the compiler's libasan (it must be
# first in the process) and libstdc++ (so ASan's operator new/delete interceptors see the C++ runtime);
# ONNXQ_EP_LIBRARY points onnxq.ep at the sanitized EP; ONNXQ_KERNELS_PATH makes tests/conftest.py import the
# sanitized onnxq._kernels, whatever the install mode. ASAN_OPTIONS: detect_leaks=0 (Python itself "leaks" at
# exit), allocator_may_return_null=1 (a failed malloc, e.g. for an output of 2^40 floats from a hostile model, is
# then onnxruntime's clean error; a failed throwing operator new still aborts under ASan, so the one test that needs
# it is skipped and the fuzzer classifies such aborts), abort_on_error=1 (the fuzzer keeps the input on abort).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

FUZZ_SECONDS=0
RUN_TESTS=1
PYTEST_EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --fuzz-seconds) FUZZ_SECONDS="$2"; shift 2 ;;
    --no-tests) RUN_TESTS=0; shift ;;
    --) shift; PYTEST_EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "run_sanitized_tests.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
BUILD=${ONNXQ_ASAN_BUILD_DIR:-${TMPDIR:-/tmp}/onnxq-asan-build}
JOBS=${JOBS:-$(nproc)}
say() { echo "== sanitized: $*"; }

if ! "$PYTHON" -c "import numpy, onnx, onnxruntime, ml_dtypes, onnx_graphsurgeon, pytest" 2>/dev/null; then
  echo "run_sanitized_tests.sh: $PYTHON lacks onnxq's dependencies; run: $PYTHON -m pip install '.[test]'" >&2
  exit 2
fi
"$PYTHON" -c "import pybind11" 2>/dev/null || "$PYTHON" -m pip install -q "pybind11>=2.12"
if ! "$PYTHON" -c "import onnxq.ep" 2>/dev/null; then
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # not installed: use the source tree
fi

# ---- build (incremental when BUILD already holds one of this checkout; one of another checkout is removed) ----
if [ -f "$BUILD/CMakeCache.txt" ] &&
   [ "$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt")" != "$(cd ep_plugin && pwd -P)" ]; then
  rm -rf "$BUILD"
fi
t0=$SECONDS
cmake -S ep_plugin -B "$BUILD" -DONNXQ_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPython_EXECUTABLE="$(command -v "$PYTHON" || echo "$PYTHON")" \
  -Dpybind11_DIR="$("$PYTHON" -m pybind11 --cmakedir)" > "$BUILD.configure.log" 2>&1 \
  || { cat "$BUILD.configure.log" >&2; exit 1; }
cmake --build "$BUILD" -j"$JOBS" > "$BUILD.build.log" 2>&1 || { tail -50 "$BUILD.build.log" >&2; exit 1; }
EP_LIB="$BUILD/libonnxq_ep.so"
KERNELS=$(ls "$BUILD"/_kernels*.so)
for lib in "$EP_LIB" "$KERNELS"; do
  syms=$(nm -D "$lib")
  grep -q "__asan_init" <<<"$syms" || { echo "$lib is not built with AddressSanitizer" >&2; exit 1; }
  grep -q "__ubsan_handle" <<<"$syms" || { echo "$lib is not built with UBSan" >&2; exit 1; }
done
say "built $EP_LIB and $(basename "$KERNELS") in $((SECONDS - t0)) s"

CXX_USED=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
runtime_lib() {  # the compiler's own copy of a runtime library (the .so symlink may be missing: try .so.N too)
  local p
  for name in "$@"; do
    p=$("$CXX_USED" -print-file-name="$name")
    [[ "$p" == /* && -e "$p" ]] && { echo "$p"; return; }
  done
  ldconfig -p | awk -v n="$1" '$1 ~ "^"n {print $NF; exit}'
}
LIBASAN=$(runtime_lib libasan.so libasan.so.8 libasan.so.6)
LIBSTDCXX=$(runtime_lib libstdc++.so libstdc++.so.6)
[[ -f "$LIBASAN" && -f "$LIBSTDCXX" ]] || { echo "cannot find libasan / libstdc++ for $CXX_USED" >&2; exit 1; }
export LD_PRELOAD="$LIBASAN $LIBSTDCXX"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:halt_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ONNXQ_EP_LIBRARY="$EP_LIB" ONNXQ_KERNELS_PATH="$KERNELS" ONNXQ_SANITIZED=1

# the sanitized EP is what onnxruntime actually loads (not an installed copy)
"$PYTHON" - <<'EOF'
import os
import onnxq.ep as ep
ep.register()
maps = open("/proc/self/maps").read()
assert os.environ["ONNXQ_EP_LIBRARY"] in maps, "onnxruntime did not load the sanitized EP"
assert "libasan" in maps, "libasan is not in the process"
EOF

rc=0
if [[ $RUN_TESTS == 1 ]]; then
  shopt -s nullglob
  TESTS=(tests/test_ep_*.py tests/test_kernels_*.py tests/test_sparse*.py tests/test_hardening_ep.py
         tests/test_concurrency.py)
  say "pytest ${TESTS[*]}"
  t0=$SECONDS
  # pytest captures stderr, and an abort loses it: sanitizer reports go to files here
  REPORTS="$BUILD/sanitizer-reports"
  rm -rf "$REPORTS" && mkdir -p "$REPORTS"
  ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$REPORTS/asan" UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$REPORTS/ubsan" \
    "$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "${PYTEST_EXTRA[@]}" || rc=$?
  say "tests finished in $((SECONDS - t0)) s (exit $rc)"
  for f in "$REPORTS"/*; do
    [[ -e "$f" ]] || continue
    say "sanitizer report $f:"; cat "$f"; [[ $rc != 0 ]] || rc=1
  done
fi

if [[ $FUZZ_SECONDS != 0 && $rc == 0 ]]; then
  # the plain engine: atheris gets no coverage feedback with a preloaded gcc libasan (see tools/fuzz/fuzz_ep.py)
  MODE=(--plain)
  ART="$BUILD/fuzz-artifacts"
  rm -rf "$ART"
  say "fuzzing the EP for ${FUZZ_SECONDS} s (artifacts: $ART)"
  # hard_rss_limit_mb: a 4 KiB hostile model can declare a dense weight of many GiB (stock onnxruntime materializes
  # it too); such inputs are kept as killed-*.onnx and the fuzzer goes on
  ASAN_OPTIONS="$ASAN_OPTIONS:hard_rss_limit_mb=${FUZZ_RSS_LIMIT_MB:-6000}" \
    "$PYTHON" tools/fuzz/fuzz_ep.py "${MODE[@]}" --seconds "$FUZZ_SECONDS" --seed 1 --artifacts "$ART" || rc=$?
  if [[ $rc != 0 ]]; then
    say "the fuzzer stopped on an input; reproduce with: tools/run_sanitized_tests.sh --no-tests and" \
        "$PYTHON tools/fuzz/fuzz_ep.py --replay $ART/<crash or finding file>"
  fi
fi
exit $rc
