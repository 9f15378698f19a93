"""Stock onnxruntime as a second opinion in the EP tests — and where it cannot be one.

Stock onnxruntime's CPU INT8 results depend on the CPU: its VNNI / AMX kernels are exact, but its AVX2 u8 x s8 kernel
multiplies with ``vpmaddubsw``, which saturates the int16 sum of two u8 x s8 products (up to 2 * 255 * 127 > 32767).
On full-range inputs its results then differ from the exact integer result by up to tens of percent of the output
range (measured: 13-32 % on random Q/DQ MatMuls). The onnxq EP is exact on every CPU. So the EP tests assert against
our exact integer reference always, and against stock onnxruntime's INT8 route only where a probe shows that route is
exact on this CPU (a probe, not the CPU's name: the ISA ceiling caps our kernels, not onnxruntime's).
"""

from __future__ import annotations

import functools

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

STOCK_INT8_SATURATES_REASON = (
    "compared with the exact integer reference only: stock onnxruntime's INT8 kernel on this CPU saturates 16-bit "
    "pair sums (AVX2 vpmaddubsw), so its result is not the integer result"
)


@functools.cache
def stock_int8_saturates() -> bool:
    """Whether stock onnxruntime's u8 x s8 MatMul saturates pair sums here: 255 x 127 over K = 64 is 2,072,640
    exactly; a kernel that saturates each pair to 32767 gives 1,048,544."""
    k = 64
    g = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])],
        initializer=[helper.make_tensor("b", TensorProto.INT8, [k, 1], [127] * k)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    y = int(s.run(None, {"a": np.full((1, k), 255, np.uint8)})[0][0, 0])
    return y != 255 * 127 * k
