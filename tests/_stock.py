"""Stock onnxruntime as a second opinion in the EP tests — and where it cannot be one.

Stock onnxruntime's CPU INT8 results depend on the CPU: its VNNI / AMX kernels are exact, but its AVX2 u8 x s8 kernel
multiplies with ``vpmaddubsw``, which saturates the int16 sum of two u8 x s8 products (up to 2 * 255 * 127 > 32767).
On full-range inputs its results then differ from the exact integer result by up to tens of percent of the output
range (measured: 13-32 % on random Q/DQ MatMuls). The onnxq EP is exact on every CPU. So the EP tests assert against
our exact integer reference always, and against stock onnxruntime's INT8 route only where a probe shows that route is
exact on this CPU (a probe, not the CPU's name: the ISA ceiling caps our kernels, not onnxruntime's).
"""

from __future__ import annotations

import onnxruntime as ort

from onnxq.cpu import onnxruntime_int8_saturates

STOCK_INT8_SATURATES_REASON = (
    "compared with the exact integer reference only: stock onnxruntime's INT8 kernel on this CPU saturates 16-bit "
    "pair sums (AVX2 vpmaddubsw), so its result is not the integer result"
)


def stock_int8_saturates() -> bool:
    return onnxruntime_int8_saturates()


def stock_session(model: bytes | str, **kwargs) -> ort.InferenceSession:
    """Stock onnxruntime computing ONNX's own definition of the model: graph optimizations off, so a Q/DQ MatMul runs
    as DequantizeLinear then a float MatMul — not fused into onnxruntime's integer kernel, whose result depends on the
    CPU (see above). The EP tests bound the EP's distance to this float route (fp32 summation error)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"], **kwargs)
