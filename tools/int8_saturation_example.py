#!/usr/bin/env python3
"""Measured example for the docs: stock onnxruntime's INT8 MatMul against the exact integer result, beside the onnxq EP.

A Q/DQ MatMul (u8 activations, s8 per-channel weights, both over their full range) is run by stock onnxruntime and by
the onnxq EP; each is compared with the integer reference computed here in int64. On CPUs where stock onnxruntime
takes its AVX2 u8 x s8 kernel (vpmaddubsw: the int16 sum of two products saturates), its error is a visible share
of the output range; with VNNI / AMX it is exact, and the EP is exact everywhere.

    python tools/int8_saturation_example.py                        # this CPU as it is
    valgrind --tool=none -q .venv/bin/python tools/int8_saturation_example.py   # an AVX2-only virtual CPU
    ONNXQ_MAX_ISA=avx2 python tools/int8_saturation_example.py     # caps only the EP (stock onnxruntime unchanged)
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import numpy_helper

import onnxq.ep as ep
from onnxq.apps.model_builders import qdq_matmul_model
from onnxq.cpu import cpu_label


def run_case(title: str, heavy_weights: bool) -> None:
    k, n, m = 768, 256, 32
    # [batch, seq, K] float input with QuantizeLinear in the graph, as quantizers write transformer layers: stock
    # onnxruntime runs this shape on its integer route (a 2-D MatMul + Add becomes a Gemm it runs in float)
    model = qdq_matmul_model(k, n, seed=5, rank=3)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    rng = np.random.default_rng(1)
    xs, xz = np.float32(inits["x_scale"]), int(inits["x_zp"])
    x = rng.integers(0, 256, (m, k)).astype(np.uint8)
    xf = ((x.astype(np.float32) - xz) * xs).astype(np.float32)[None]  # quantizes back to exactly x
    w = inits["w"].astype(np.int64)
    if heavy_weights:
        w[rng.random(w.shape) < 0.5] = 127  # pairs of 255 x 127 overflow int16 most of the time
        model.graph.initializer.remove(next(t for t in model.graph.initializer if t.name == "w"))
        model.graph.initializer.append(numpy_helper.from_array(w.astype(np.int8), "w"))
    acc = (x.astype(np.int64) - xz) @ w
    exact = acc.astype(np.float32) * (xs * inits["w_scale"]).astype(np.float32) + inits["b"]
    data = model.SerializeToString()
    stock = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": xf})[0][0]
    ours = ep.session(data).run(None, {"x": xf})[0][0]
    rng_out = float(np.abs(exact).max())
    print(f"{title}: Q/DQ MatMul 1x{m}x{k} -> {n}; error relative to the output range")
    for name, y in (("stock onnxruntime", stock), ("onnxq EP", ours)):
        err = np.abs(y.astype(np.float64) - exact)
        print(f"  {name:<18} max {err.max() / rng_out:.3e}  mean {err.mean() / rng_out:.3e}  "
              f"outputs off by > 1% of range: {int((err > 0.01 * rng_out).sum())} of {err.size}")


def main() -> None:
    print(f"{cpu_label()}; onnxruntime {ort.__version__}")
    run_case("random full-range u8 activations, per-channel s8 weights of N(0, 0.1) values", heavy_weights=False)
    run_case("the same with half the weights at 127", heavy_weights=True)


if __name__ == "__main__":
    main()
