"""Hardening, part 5 (the quick version; tools/big_model_memory.py runs it over 2 GiB): quantizing must not hold
several copies of the weights. A 192 MiB float model is quantized in a child process; the growth of its peak RSS
over the state right after imports must stay under 4x the weight bytes (the input model, its preprocessed copy,
and onnxruntime's copy during calibration; before the fix it was ~7x)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent / "tools"

CHILD = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[1])
import numpy as np, onnx, onnxruntime, onnx_graphsurgeon
import onnxq, onnxq.calibration.runner as runner
from big_model_memory import write_calibration, write_model
runner._IN_MEMORY_LIMIT = 16 << 20          # take the large-model route at this size too
out = __import__("pathlib").Path(sys.argv[2])
model, nbytes, _ = write_model(out, 192 / 1024, 2048)
calib = write_calibration(out, 2048, 2, 4)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
onnxq.quantize(model, out / "q.onnx", onnxq.QuantConfig.from_recipe("int8"), str(calib))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"model": nbytes, "before": before, "peak": peak}))
"""


def test_quantize_peak_memory_is_a_small_multiple_of_the_model(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", CHILD, str(TOOLS), str(tmp_path)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout.strip().splitlines()[-1])
    growth = (m["peak"] - m["before"]) / m["model"]
    print(f"\nmodel {m['model'] / 2**20:.0f} MiB, peak RSS growth {growth:.2f}x the model")
    assert growth < 4.0, f"peak RSS grew by {growth:.2f}x the model's weight bytes"
