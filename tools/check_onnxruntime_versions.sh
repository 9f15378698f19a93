#!/usr/bin/env bash
# Run the onnxq wheel against several onnxruntime releases (docs/compatibility.md says what this found): for each,
# a fresh virtual environment with the wheel and that onnxruntime; the supported ones must run the INT8 and FP8
# smoke (tools/wheel/smoke.py), the older ones must refuse with one line naming the supported range, both from
# Python (onnxq.ep.register) and from the EP library itself (onnxruntime's own register call).
#   tools/check_onnxruntime_versions.sh WHEEL [VERSION...]     (default: 1.22.1 1.28.0 1.29.0 1.30.0 1.31.1 1.32.0)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
wheel="$(realpath "$1")"; shift
versions=("$@"); [ ${#versions[@]} -eq 0 ] && versions=(1.22.1 1.28.0 1.29.0 1.30.0 1.31.1 1.32.0)
python="${PYTHON:-python3}"
status=0
for v in "${versions[@]}"; do
  work="$(mktemp -d)"
  "$python" -m venv "$work/venv"
  # the wheel declares onnxruntime>=1.29: older releases are installed on purpose, without that check
  "$work/venv/bin/pip" install -q "$wheel" > "$work/log" 2>&1 && \
    "$work/venv/bin/pip" install -q --force-reinstall --no-deps "onnxruntime==$v" >> "$work/log" 2>&1
  if [ $? -ne 0 ]; then echo "onnxruntime $v: could not install ($(tail -1 "$work/log"))"; status=1; continue; fi
  cp "$root"/sample_models/tiny_encoder.onnx "$root"/sample_models/calib_tiny_encoder.npz "$root"/tools/wheel/smoke.py \
    "$work/"
  major_minor="${v%.*}"
  if [ "$(printf '%s\n1.29\n' "$major_minor" | sort -V | head -1)" = "1.29" ]; then
    (cd "$work" && env -i HOME="$work" PATH="$work/venv/bin" "$work/venv/bin/python" -I smoke.py > out 2>&1)
    rc=$?; echo "onnxq on onnxruntime $v: $( [ $rc -eq 0 ] && echo ok || echo FAILED ) — $(tail -1 "$work/out")"
    [ $rc -eq 0 ] || status=1
  else
    py="$(cd "$work" && "$work/venv/bin/python" -I -c 'import onnxq.ep as e
try:
    e.register(); print("LOADED (wrong)")
except Exception as x:
    print(str(x).splitlines()[0])' 2>&1 | tail -1)"
    lib="$(cd "$work" && "$work/venv/bin/python" -I -c 'import onnxq; print(onnxq.get_library_path())')"
    native="$(cd "$work" && "$work/venv/bin/python" -I -c "import onnxruntime as o
f = getattr(o, 'register_execution_provider_library', None)
if f is None:
    print('onnxruntime has no plugin-EP registration at all')
else:
    try:
        f('onnxq', '$lib'); print('LOADED (wrong)')
    except Exception as x:
        print(str(x).strip().splitlines()[-1])" 2>&1 | tail -1)"
    echo "onnxruntime $v (too old): Python: $py"
    echo "onnxruntime $v (too old): EP library: $native"
    case "$py$native" in *LOADED*) status=1 ;; esac
  fi
  rm -rf "$work"
done
exit $status
