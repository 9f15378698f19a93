#!/usr/bin/env python3
"""Instruction counts (valgrind --tool=callgrind) of one INT8 GEMM on the AVX2 path: onnxq's u8 x s8 kernel against
stock onnxruntime's MatMulInteger, per call, for the shapes given.

valgrind's virtual CPU has no AVX-512, so stock onnxruntime (MLAS) and onnxq both take their AVX2 code there, on any
host; callgrind counts executed instructions repeatably. A proxy, not a timing: instructions are not cycles (the
AVX2-only CPUs we target are bound by the one vector-multiply pipe, and onnxq's exact kernel issues as many
multiplies per product as onnxruntime's saturating one); state it that way when quoting the numbers.

    python tools/callgrind_int8_avx2.py                                    # M=1,128 x K=768 x N=3072
    python tools/callgrind_int8_avx2.py --shapes 128x768x3072,1x768x3072 --out /tmp/cg.json
    ONNXQ_KERNELS_PATH=build-dev/_kernels.cpython-311-x86_64-linux-gnu.so PYTHONPATH=. \\
        python tools/callgrind_int8_avx2.py --engines onnxq,ort,ort-exact  # a development build
    python tools/callgrind_int8_avx2.py --shapes 128x768x3072 --keep /tmp/cg  # then callgrind_annotate /tmp/cg/...

Each (engine, shape) runs twice under callgrind, with R1 and R2 calls after the same setup; (Ir(R2) - Ir(R1)) /
(R2 - R1) is one call. Counting is switched on only around the calls (a callgrind client request from a tiny
helper library built here with the C compiler and valgrind's callgrind.h): whole-program counts of two identical
runs differ by ~20 M instructions (Python and onnxruntime start-up), more than a whole M = 1 call. Without a
compiler or the header it counts the whole program and says so (then use large R2 - R1). What a call is:
  onnxq      PackedQGemmU8S8(...).time(): the AVX2 kernel on prepacked weights, float output with scale (the
             activation widening and the fused epilogue included), 1 thread.
  ort        session.run of a MatMulInteger model (u8 A input, s8 B initializer prepacked by onnxruntime, int32
             output), 1 thread; the same for an Identity model on A (session.run, feeds, output) is subtracted.
  ort-exact  the same with the session option session.x64quantprecision = 1 (onnxruntime's exact mode).
Weights are symmetric ([-127, 127], what weight quantizers write) unless --full-range-weights (-128 too: onnxq's
M < 4 path then widens in registers instead of the sign trick). Takes a few minutes per shape.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

A_ZERO_POINT = 3
TOGGLE_ENV = "ONNXQ_CALLGRIND_TOGGLE"  # path of the helper library, set for the worker
TOGGLE_SOURCE = """#include <valgrind/callgrind.h>
void onnxq_callgrind_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
"""


def _build_toggle(tmp: str) -> str | None:
    """The helper library (one function: CALLGRIND_TOGGLE_COLLECT), or None where it cannot be built."""
    src, lib = os.path.join(tmp, "toggle.c"), os.path.join(tmp, "libonnxq_cg_toggle.so")
    with open(src, "w", encoding="utf-8") as f:
        f.write(TOGGLE_SOURCE)
    cc = os.environ.get("CC", "cc")
    try:
        proc = subprocess.run([cc, "-shared", "-fPIC", "-O1", src, "-o", lib], capture_output=True, text=True,
                              check=False)
    except OSError:
        return None
    return lib if proc.returncode == 0 else None


def _toggle():  # type: ignore[no-untyped-def]
    """Switches callgrind's counting on / off (no-op without the helper)."""
    lib = os.environ.get(TOGGLE_ENV)
    if not lib:
        return lambda: None
    import ctypes

    return ctypes.CDLL(lib).onnxq_callgrind_toggle


def _kernels_module():  # type: ignore[no-untyped-def]
    """onnxq._kernels, or the build ONNXQ_KERNELS_PATH names (as tests/conftest.py does)."""
    path = os.environ.get("ONNXQ_KERNELS_PATH")
    if not path:
        from onnxq import _kernels

        return _kernels
    import importlib.util

    spec = importlib.util.spec_from_file_location("onnxq._kernels", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"ONNXQ_KERNELS_PATH={path} is not a loadable extension module")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _operands(m: int, k: int, n: int, full_range: bool):  # type: ignore[no-untyped-def]
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    b = rng.integers(-128 if full_range else -127, 128, (k, n), dtype=np.int8)
    return a, b


def _ort_session(model: str, m: int, k: int, n: int, b, exact: bool):  # type: ignore[no-untyped-def]
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    a_info = helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])
    if model == "matmul":
        node = helper.make_node("MatMulInteger", ["A", "B", "azp"], ["Y"])
        out = helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])
        inits = [numpy_helper.from_array(b, "B"), numpy_helper.from_array(np.array(A_ZERO_POINT, np.uint8), "azp")]
    else:  # baseline: the same feed and one trivial node
        node = helper.make_node("Identity", ["A"], ["Y"])
        out = helper.make_tensor_value_info("Y", TensorProto.UINT8, [m, k])
        inits = []
    graph = helper.make_graph([node], "g", [a_info], [out], initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    proto.ir_version = 10
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if exact:
        so.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def worker(engine: str, m: int, k: int, n: int, reps: int, full_range: bool) -> None:
    """The program callgrind runs: setup, then `reps` calls."""
    import numpy as np

    toggle = _toggle()
    a, b = _operands(m, k, n, full_range)
    if engine == "onnxq":
        kernels = _kernels_module()
        if "avx2" not in kernels.qgemm_u8s8_kernels():
            raise SystemExit(f"onnxq's avx2 kernel is not available here: {kernels.qgemm_u8s8_kernels()}")
        g = kernels.PackedQGemmU8S8(b, np.zeros(1, np.int8), np.full(n, 0.01, np.float32), None, "avx2", 1)
        toggle()
        g.time(a, A_ZERO_POINT, reps)
        toggle()
        return
    base = engine.endswith("-base")
    kind = engine.removesuffix("-base")
    sess = _ort_session("identity" if base else "matmul", m, k, n, b, exact=kind == "ort-exact")
    feeds = {"A": a}
    sess.run(None, feeds)  # first-run allocations outside the count
    toggle()
    for _ in range(reps):
        sess.run(None, feeds)
    toggle()


def _instructions(engine: str, m: int, k: int, n: int, reps: int, full_range: bool, keep: str | None,
                  toggle: str | None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(keep or tmp, f"callgrind.{engine}.{m}x{k}x{n}.r{reps}.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        if toggle:
            cmd.append("--collect-atstart=no")
        cmd += [sys.executable, os.path.abspath(__file__), "--worker", engine, str(m), str(k), str(n), str(reps)]
        if full_range:
            cmd.append("--full-range-weights")
        env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
        env.pop(TOGGLE_ENV, None)
        if toggle:
            env[TOGGLE_ENV] = toggle
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        with open(out, encoding="utf-8") as f:
            text = f.read()
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError("no instruction total in the callgrind output")
    return int(found.group(1))


def per_call(engine: str, m: int, k: int, n: int, r1: int, r2: int, full_range: bool, keep: str | None,
             toggle: str | None) -> float:
    i1 = _instructions(engine, m, k, n, r1, full_range, keep, toggle)
    i2 = _instructions(engine, m, k, n, r2, full_range, keep, toggle)
    return (i2 - i1) / (r2 - r1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="128x768x3072,1x768x3072", help="MxKxN,... (default: %(default)s)")
    p.add_argument("--engines", default="onnxq,ort", help="onnxq,ort,ort-exact (default: %(default)s)")
    p.add_argument("--reps", default="", help="R1,R2 calls (default: 1,5 for M >= 16, else 4,40)")
    p.add_argument("--full-range-weights", action="store_true", help="weights in [-128, 127] (default [-127, 127])")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--keep", metavar="DIR", help="keep the callgrind outputs here (for callgrind_annotate)")
    p.add_argument("--worker", nargs=5, metavar=("ENGINE", "M", "K", "N", "REPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        engine, *dims = args.worker
        worker(engine, *(int(x) for x in dims), full_range=args.full_range_weights)
        return 0

    engines = [e for e in args.engines.split(",") if e]
    results = []
    helper_dir = tempfile.TemporaryDirectory()
    toggle = _build_toggle(helper_dir.name)
    if toggle is None:
        print("no callgrind toggle helper (C compiler or valgrind/callgrind.h missing): counting whole programs, "
              "expect ~20 M instructions of noise per run", flush=True)
    for shape in args.shapes.split(","):
        m, k, n = (int(x) for x in shape.lower().split("x"))
        r1, r2 = (int(x) for x in args.reps.split(",")) if args.reps else ((1, 5) if m >= 16 else (4, 40))
        row: dict[str, object] = {"M": m, "K": k, "N": n, "reps": [r1, r2],
                                  "full_range_weights": args.full_range_weights}
        for e in engines:
            ir = per_call(e, m, k, n, r1, r2, args.full_range_weights, args.keep, toggle)
            if e.startswith("ort"):
                base = per_call(f"{e}-base", m, k, n, r1, r2, args.full_range_weights, args.keep, toggle)
                row[f"{e}_session_overhead"] = base
                ir -= base
            row[e] = ir
            row[f"{e}_products_per_instruction"] = m * k * n / ir
            print(f"M={m} K={k} N={n} {e}: {ir:,.0f} instructions per call ({m * k * n / ir:.2f} products each)",
                  flush=True)
        for e in engines:
            if e != "onnxq" and "onnxq" in row:
                ratio = float(row[e]) / float(row["onnxq"])  # type: ignore[arg-type]
                row[f"{e}_over_onnxq"] = ratio
                print(f"M={m} K={k} N={n} instructions {e} / onnxq = {ratio:.3f}", flush=True)
        row["counted"] = "calls only" if toggle else "whole program"
        results.append(row)
    helper_dir.cleanup()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
