"""Residual + LayerNorm: the onnxq EP at each ISA level against stock onnxruntime, one thread.

Models are [1, rows, 768] (rank 3, as transformers export them: stock onnxruntime then fuses Add + Add +
LayerNormalization into its SkipLayerNormalization): `skip+bias` (x + bias + residual, normalized) and `plain`.

Timing (default): every engine in one process, interleaved passes with a rotating order, per-run medians.
    python tools/bench_layernorm.py [--passes 15] [--rows 128 512]
Instruction counts (--callgrind): each engine in its own process under valgrind's callgrind, counting only
`--runs` session runs (client requests toggle the collection around them; the shim is compiled with gcc against
<valgrind/callgrind.h>). Valgrind's virtual CPU has no AVX-512, so stock onnxruntime takes its AVX2 paths there
and the EP its avx2 kernels: the way to compare the two AVX2 paths on an AVX-512 machine.
    python tools/bench_layernorm.py --callgrind [--rows 128 1]     (rows=1: the per-run overhead)
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

D = 768
KINDS = ("skip+bias", "plain")


def model(kind: str, rows: int) -> bytes:
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.uniform(0.5, 2, D).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.standard_normal(D).astype(np.float32), "beta"),
             numpy_helper.from_array(rng.standard_normal(D).astype(np.float32), "bias")]
    shape = [1, rows, D]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
           helper.make_tensor_value_info("r", TensorProto.FLOAT, shape)]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)]
    ln = helper.make_node("LayerNormalization", ["s" if kind == "skip+bias" else "x", "gamma", "beta"], ["y"],
                          axis=-1, epsilon=1e-5)
    if kind == "plain":
        nodes, ins = [ln], ins[:1]
    else:
        nodes = [helper.make_node("Add", ["x", "bias"], ["xb"]), helper.make_node("Add", ["xb", "r"], ["s"]), ln]
    m = helper.make_model(helper.make_graph(nodes, kind, ins, outs, inits), opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def session(data: bytes, engine: str) -> ort.InferenceSession:
    """`ort`: stock onnxruntime; otherwise the onnxq EP capped at ISA level `engine`."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    if engine == "ort":
        return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    import onnxq.ep as ep

    return ep.session(data, so, provider_options={"num_threads": "1", "max_isa": engine})


def feeds(sess: ort.InferenceSession, rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    all_ = {"x": (rng.standard_normal((1, rows, D)) * 3 + 1).astype(np.float32),
            "r": rng.standard_normal((1, rows, D)).astype(np.float32)}
    return {i.name: all_[i.name] for i in sess.get_inputs()}


def timing(args: argparse.Namespace) -> None:
    from onnxq.cpu import ISA_LEVELS, detected_isa_level

    top = ISA_LEVELS.index(detected_isa_level())
    engines = [lv for lv in ("scalar", "avx2", "avx512") if ISA_LEVELS.index(lv) <= top] + ["ort"]
    for kind in KINDS:
        for rows in args.rows:
            data = model(kind, rows)
            sess = {e: session(data, e) for e in engines}
            f = {e: feeds(s, rows) for e, s in sess.items()}
            per: dict[str, list[float]] = {e: [] for e in engines}
            reps = max(5, 5000 // rows)
            for p in range(args.passes):
                for e in engines[p % len(engines):] + engines[:p % len(engines)]:
                    sess[e].run(None, f[e])
                    t = []
                    for _ in range(reps):
                        t0 = time.perf_counter()
                        sess[e].run(None, f[e])
                        t.append(time.perf_counter() - t0)
                    per[e].append(float(np.median(t)))
            base = float(np.median(per["ort"]))
            print(f"{kind} [1, {rows}, {D}]")
            for e in engines:
                m = float(np.median(per[e]))
                name = "stock onnxruntime" if e == "ort" else f"onnxq max_isa={e}"
                print(f"  {name:22s} {m * 1e6:9.1f} us   {base / m:6.2f}x stock onnxruntime")
            sys.stdout.flush()


SHIM = r"""
#include <valgrind/callgrind.h>
void cg_region(void (*cb)(void)) { CALLGRIND_TOGGLE_COLLECT; cb(); CALLGRIND_TOGGLE_COLLECT; }
"""


def worker(engine: str, kind: str, rows: int, runs: int, shim: str) -> None:
    s = session(model(kind, rows), engine)
    f = feeds(s, rows)
    for _ in range(3):
        s.run(None, f)

    def body() -> None:
        for _ in range(runs):
            s.run(None, f)

    ctypes.CDLL(shim).cg_region(ctypes.CFUNCTYPE(None)(body))


def callgrind(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shim = os.path.join(tmp, "libcgregion.so")
        src = os.path.join(tmp, "cgregion.c")
        Path(src).write_text(SHIM)
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", src, "-o", shim], check=True)
        env = dict(os.environ, PYTHONHASHSEED="0")
        for rows in args.rows:
            for kind in KINDS:
                counts = {}
                for engine in ("ort", "avx2"):
                    out = os.path.join(tmp, "callgrind.out")
                    r = subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no",
                                        f"--callgrind-out-file={out}", sys.executable, __file__, "--worker", engine,
                                        kind, str(rows), str(args.runs), shim],
                                       capture_output=True, text=True, env=env)
                    m = re.search(r"Collected : (\d+)", r.stderr)
                    if r.returncode != 0 or m is None:
                        raise SystemExit(f"callgrind run failed:\n{r.stderr[-3000:]}")
                    counts[engine] = int(m.group(1)) / args.runs
                print(f"{kind} [1, {rows}, {D}], instructions per session run (AVX2 paths): stock onnxruntime "
                      f"{counts['ort']:,.0f}, onnxq EP {counts['avx2']:,.0f} ({counts['ort'] / counts['avx2']:.2f}x)")
                sys.stdout.flush()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        engine, kind, rows, runs, shim = sys.argv[2:7]
        worker(engine, kind, int(rows), int(runs), shim)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[128, 512])
    p.add_argument("--passes", type=int, default=15)
    p.add_argument("--callgrind", action="store_true", help="instruction counts under valgrind (AVX2 paths)")
    p.add_argument("--runs", type=int, default=10, help="session runs counted per callgrind process")
    args = p.parse_args()
    (callgrind if args.callgrind else timing)(args)


if __name__ == "__main__":
    main()
