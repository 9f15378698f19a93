#!/usr/bin/env python3
"""Per-token INT8 (ZeroQuant, `int8-per-token`) against static INT8 and FP32 on one MatMul layer of BERT-base
shapes: the onnxq EP on the per-token file beside stock onnxruntime on the same file, stock onnxruntime's static
INT8 (`int8` recipe's Q/DQ file, its own fast u8s8 path) and FP32. Same process, interleaved passes, IOBinding,
1 thread (the protocol in docs/benchmarks.md); ratios against stock onnxruntime in the same run.

    tools/bench_per_token.py [--m 128 --m 512] [--kn 768x3072 ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxq
from onnxq.apps.bench import BoundSession, bench_session, environment, pinned, timed_passes
from onnxq.core.config import QuantConfig


@dataclass
class Cfg:
    passes: int = 7
    reps: int = 5
    min_pass_seconds: float = 0.02


class Bound3(BoundSession):
    """BoundSession for a [1, M, K] input: transformer activations are 3-D, and stock onnxruntime fuses a 3-D Q/DQ
    MatMul + Add into its integer kernel (a 2-D one becomes a float Gemm after its MatMul + Add fusion)."""

    def __init__(self, sess, x: np.ndarray, n: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__(sess, x.reshape(x.shape[-2], x.shape[-1]), n)
        import onnxruntime as ort

        self.x = ort.OrtValue.ortvalue_from_numpy(x)
        self.y = ort.OrtValue.ortvalue_from_numpy(np.empty((1, x.shape[-2], n), np.float32))
        self.binding = sess.io_binding()
        self.binding.bind_ortvalue_input(sess.get_inputs()[0].name, self.x)
        self.binding.bind_ortvalue_output(sess.get_outputs()[0].name, self.y)


def layer(k: int, n: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32) * 0.1, "b")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
                          "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "m", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "m", n])], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, action="append", help="rows (default 1, 128, 512)")
    ap.add_argument("--kn", action="append", help="KxN (default 768x768, 768x3072, 3072x768)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    ms = args.m or [1, 128, 512]
    kns = [tuple(int(v) for v in s.split("x")) for s in (args.kn or ["768x768", "768x3072", "3072x768"])]
    rows = []
    for k, n in kns:
        fp32 = layer(k, n)
        rng = np.random.default_rng(1)
        calib = [{"x": rng.standard_normal((1, 64, k)).astype(np.float32)} for _ in range(2)]
        static = onnxq.quantize(fp32, None, QuantConfig.from_recipe("int8-conservative", smooth_alpha=0), calib).model
        token = onnxq.quantize(fp32, None, QuantConfig.from_recipe("int8-per-token")).model
        for m in ms:
            x = rng.standard_normal((1, m, k)).astype(np.float32)
            with pinned(args.threads):
                sessions = {
                    "ort-fp32": bench_session(fp32.SerializeToString(), args.threads, onnxq=False),
                    "ort-int8-static": bench_session(static.SerializeToString(), args.threads, onnxq=False),
                    "ort-int8-per-token": bench_session(token.SerializeToString(), args.threads, onnxq=False),
                    "onnxq-int8-per-token": bench_session(token.SerializeToString(), args.threads, onnxq=True),
                    "onnxq-int8-static": bench_session(static.SerializeToString(), args.threads, onnxq=True),
                }
                bound = {nm: Bound3(s, x, n) for nm, s in sessions.items()}
                per_pass = timed_passes(bound, Cfg())
            med = {nm: statistics.median(v) for nm, v in per_pass.items()}
            row = {"M": m, "K": k, "N": n, "median_us": {nm: round(v * 1e6, 1) for nm, v in med.items()},
                   "gops": {nm: round(2 * m * k * n / v / 1e9, 1) for nm, v in med.items()}}
            row["per_token_vs_ort_static"] = round(med["ort-int8-static"] / med["onnxq-int8-per-token"], 2)
            row["per_token_vs_ort_same_file"] = round(med["ort-int8-per-token"] / med["onnxq-int8-per-token"], 2)
            row["per_token_vs_onnxq_static"] = round(med["onnxq-int8-static"] / med["onnxq-int8-per-token"], 2)
            row["per_token_vs_ort_fp32"] = round(med["ort-fp32"] / med["onnxq-int8-per-token"], 2)
            rows.append(row)
            print(f"M={m:<4} {k}x{n}: onnxq per-token {row['gops']['onnxq-int8-per-token']:>6} GOPS; x"
                  f"{row['per_token_vs_ort_static']} stock ORT static INT8, x{row['per_token_vs_ort_same_file']} stock "
                  f"ORT on the same file, x{row['per_token_vs_onnxq_static']} onnxq static INT8, "
                  f"x{row['per_token_vs_ort_fp32']} ORT FP32", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": environment(), "threads": args.threads, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
