"""Quantize a generated model over 2 GiB (weights in ONNX external data) and report peak resident memory against
the model's size.

    python tools/big_model_memory.py --gib 2.2 --out /tmp/onnxq-big           # int8, 4 calibration feeds
    python tools/big_model_memory.py --gib 0.3 --format fp8-e4m3 --json r.json

The model is an MLP of square float32 MatMul layers (d x d, d = --dim) written straight to ``model.onnx.data``
one layer at a time, so generating it never holds more than one layer. ``onnxq quantize`` then runs in a child
process (the CLI, as a user would run it), and its peak RSS is read from the kernel (``ru_maxrss`` of the child).
The quantized model (external data only if it is itself over 2 GiB, or with --external-data) must load in stock
onnxruntime and run. Prints a one-line summary
and, with --json, writes the measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def write_model(out: Path, gib: float, dim: int, seed: int = 0) -> tuple[Path, int, int]:
    """MLP x[b, dim] -> (MatMul W_i -> Relu)* -> y with enough layers for `gib` GiB of float32 weights."""
    layer_bytes = dim * dim * 4
    layers = max(1, int(np.ceil(gib * 2**30 / layer_bytes)))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    data_name = "model.onnx.data"
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    x = "x"
    offset = 0
    with open(out / data_name, "wb") as f:
        for i in range(layers):
            w = (rng.standard_normal((dim, dim), dtype=np.float32) / np.float32(np.sqrt(dim)))
            f.write(w.tobytes())
            del w
            t = TensorProto(name=f"W{i}", data_type=TensorProto.FLOAT, dims=[dim, dim],
                            data_location=TensorProto.EXTERNAL)
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(layer_bytes))):
                t.external_data.add(key=k, value=v)
            offset += layer_bytes
            inits.append(t)
            h = f"h{i}"
            nodes.append(helper.make_node("MatMul", [x, f"W{i}"], [h], name=f"mm{i}"))
            if i + 1 < layers:
                nodes.append(helper.make_node("Relu", [h], [f"r{i}"], name=f"relu{i}"))
                x = f"r{i}"
            else:
                x = h
    g = helper.make_graph(nodes, "big_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", dim])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["b", dim])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], producer_name="onnxq.big_model_memory")
    m.ir_version = 10
    onnx.save(m, path)
    return path, offset, layers


def write_calibration(out: Path, dim: int, feeds: int, batch: int) -> Path:
    d = out / "calib"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(feeds):
        np.savez(d / f"{i:03d}.npz", x=rng.standard_normal((batch, dim)).astype(np.float32))
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=2.2, help="float32 weight bytes to generate, in GiB (default 2.2)")
    ap.add_argument("--dim", type=int, default=8192, help="layer width (default 8192: 256 MiB per layer)")
    ap.add_argument("--format", default="int8", help="onnxq quantize --format (default int8)")
    ap.add_argument("--feeds", type=int, default=4, help="calibration feeds (default 4)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("/tmp/onnxq-big-model"))
    ap.add_argument("--json", type=Path, help="write the measurements here")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    model, data_bytes, layers = write_model(args.out, args.gib, args.dim)
    calib = write_calibration(args.out, args.dim, args.feeds, args.batch)
    gen_s = time.perf_counter() - t0
    qpath = args.out / "model.q.onnx"
    cmd = [sys.executable, "-m", "onnxq", "quantize", str(model), "-o", str(qpath), "--format", args.format,
           "--data", str(calib), "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t1 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    quant_s = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    if r.returncode != 0:
        print(r.stdout + r.stderr, file=sys.stderr)
        return 1
    if before * 1024 >= peak:
        print("warning: an earlier child had a higher peak; the figure below may be too high", file=sys.stderr)
    q_data = args.out / "model.q.onnx.data"
    out_bytes = qpath.stat().st_size + (q_data.stat().st_size if q_data.exists() else 0)

    # the output: external data, loads and runs in stock onnxruntime
    import onnxruntime as ort

    sess = ort.InferenceSession(str(qpath), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": np.ones((2, args.dim), np.float32)})[0]
    assert y.shape == (2, args.dim) and np.all(np.isfinite(y))
    del sess

    res = {
        "format": args.format, "layers": layers, "dim": args.dim, "feeds": args.feeds, "batch": args.batch,
        "model_bytes": data_bytes, "output_bytes": out_bytes, "peak_rss_bytes": peak,
        "peak_rss_over_model": round(peak / data_bytes, 3), "quantize_seconds": round(quant_s, 1),
        "generate_seconds": round(gen_s, 1), "output_external_data": q_data.exists(),
        "onnxq_version": onnx_version_of_onnxq(),
    }
    print(f"big model: {data_bytes / 2**30:.2f} GiB float32 ({layers} x {args.dim}^2 MatMul) -> "
          f"{out_bytes / 2**30:.2f} GiB {args.format}; onnxq quantize peak RSS {peak / 2**30:.2f} GiB = "
          f"{peak / data_bytes:.2f}x the model, {quant_s:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if not args.keep:
        for p in sorted(args.out.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        args.out.rmdir()
    return 0


def onnx_version_of_onnxq() -> str:
    try:
        from onnxq import __version__

        return __version__
    except Exception:
        return "?"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
