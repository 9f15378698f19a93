#!/usr/bin/env python3
"""Which ONNX form of one pruned INT8 MatMul does DeepSparse 1.8 run itself, and how fast? (evidence behind
onnxq/apps/bench_deepsparse.py's choice of form). Every candidate is built from the same pruned weights (onnxq's 4x1
magnitude pruning of a per-channel int8 Q/DQ MatMul), compiled by DeepSparse in its own virtualenv (1 core, batch 1,
static shapes, IR 8 / opset 13), checked against stock onnxruntime on the Q/DQ file, and timed in interleaved passes.

    python tools/deepsparse_forms.py --deepsparse-python /tmp/dsenv/bin/python --out docs/bench/deepsparse_forms

Candidates: the Q/DQ file as onnxq writes it (per-channel, and per-tensor); SparseML's export
(QuantizeLinear -> MatMulInteger(u8 W+128) -> Cast -> Mul rescale; per-channel rescale vector, per-tensor, with the
int32 bias Add, with s8 weights); QLinearMatMul; the FP32 MatMul with the dequantized pruned weights. Then the
chosen form over sparsity (0 = dense) and over block orientation (4x1 along K, 1x4 along N, unstructured).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnxq.apps.bench import environment
from onnxq.apps.bench_deepsparse import DeepSparseWorker, deepsparse_form, downgrade_ir, set_static_shapes
from onnxq.apps.bench_sparse import pruned_models
from onnxq.core.atomic_write import write_text_atomic
from onnxq.core.errors import OnnxqError


def _model(nodes, inits: dict, m: int, k: int, n: int) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, m, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m, n])],
                          [numpy_helper.from_array(np.asarray(v), name) for name, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def candidates(dense: onnx.ModelProto, m: int, k: int, n: int) -> dict[str, onnx.ModelProto]:
    init = {i.name: numpy_helper.to_array(i) for i in dense.graph.initializer}
    w, ws, xs, xz = init["w"], init["w_scale"], init["x_scale"], init["x_zp"]
    # per-tensor requantization of the same weights, keeping exactly the same zero pattern
    st = np.float32(ws.max())
    wt = np.clip(np.rint(w.astype(np.float32) * ws / st), -127, 127).astype(np.int32)
    lost = (wt == 0) & (w != 0)
    wt[lost] = np.sign(w[lost])
    out: dict[str, onnx.ModelProto] = {}
    qdq = onnx.ModelProto()
    qdq.CopyFrom(dense)
    downgrade_ir(qdq)
    set_static_shapes(qdq, {"x": [1, m, k]})
    out["Q/DQ per-channel (onnxq's file)"] = qdq
    q = helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"])
    out["Q/DQ per-tensor, u8 weight"] = _model(
        [q, helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
         helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
         helper.make_node("MatMul", ["xd", "wd"], ["y"])],
        {"xs": xs, "xz": xz, "w": (wt + 128).astype(np.uint8), "ws": st, "wz": np.uint8(128)}, m, k, n)
    mmi = [q, helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["acc"]),
           helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
           helper.make_node("Mul", ["accf", "r"], ["y"])]
    out["MatMulInteger u8 W+128, per-channel rescale (chosen)"] = deepsparse_form(dense, "int8", {"x": [1, m, k]})[0]
    out["MatMulInteger u8 W+128, per-tensor"] = _model(
        mmi, {"xs": xs, "xz": xz, "w": (wt + 128).astype(np.uint8), "wz": np.uint8(128), "r": np.float32(xs * st)},
        m, k, n)
    out["MatMulInteger u8 W+128, per-tensor, int32 bias Add"] = _model(
        [mmi[0], mmi[1], helper.make_node("Add", ["acc", "b"], ["accb"]),
         helper.make_node("Cast", ["accb"], ["accf"], to=TensorProto.FLOAT), mmi[3]],
        {"xs": xs, "xz": xz, "w": (wt + 128).astype(np.uint8), "wz": np.uint8(128), "r": np.float32(xs * st),
         "b": np.zeros(n, np.int32)}, m, k, n)
    out["MatMulInteger s8 W, per-tensor"] = _model(
        mmi, {"xs": xs, "xz": xz, "w": wt.astype(np.int8), "wz": np.int8(0), "r": np.float32(xs * st)}, m, k, n)
    out["QLinearMatMul u8 W+128, per-tensor (u8 output)"] = _model(
        [q, helper.make_node("QLinearMatMul", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"]),
         helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])],
        {"xs": xs, "xz": xz, "w": (wt + 128).astype(np.uint8), "ws": st, "wz": np.uint8(128),
         "ys": np.float32(0.05), "yz": np.uint8(128)}, m, k, n)
    out["FP32 MatMul, same pruned weights"] = deepsparse_form(dense, "fp32", {"x": [1, m, k]})[0]
    return out


def pattern_models(dense: onnx.ModelProto, m: int, k: int, n: int, sp: float) -> dict[str, onnx.ModelProto]:
    """The chosen form with the same int8 values under other zero patterns of the same sparsity."""
    base = {i.name: numpy_helper.to_array(i) for i in dense.graph.initializer}
    rng = np.random.default_rng(1)
    w = base["w"].astype(np.int16)
    w[w == 0] = 1
    masks = {"4x1 (4 along K, onnxq's)": np.repeat(rng.random((k // 4, n)) >= sp, 4, axis=0),
             "1x4 (4 along N)": np.repeat(rng.random((k, n // 4)) >= sp, 4, axis=1),
             "unstructured": rng.random((k, n)) >= sp}
    out = {}
    for name, mask in masks.items():
        d = onnx.ModelProto()
        d.CopyFrom(dense)
        for i in d.graph.initializer:
            if i.name == "w":
                i.CopyFrom(numpy_helper.from_array(np.where(mask, w, 0).astype(np.int8), "w"))
        out[f"MatMulInteger, {name}"] = (deepsparse_form(d, "int8", {"x": [1, m, k]})[0], d)
    return out


def timed(python: str, models: dict, x: np.ndarray, refs: dict, passes: int, reps: int, m: int, k: int, n: int,
          progress) -> list[dict]:  # type: ignore[no-untyped-def]
    workers, rows = {}, {}
    for name, model in models.items():
        progress(f"compiling: {name}")
        try:
            w = DeepSparseWorker(python, model, [x], 1, 0.02, reps)
        except OnnxqError as e:
            rows[name] = {"form": name, "error": str(e)[:300]}
            continue
        workers[name] = w
        rows[name] = {"form": name, "ops": [nd.op_type for nd in model.graph.node],
                      "fraction_of_supported_ops": w.info["fraction_of_supported_ops"],
                      "max_abs_diff_vs_ort_qdq": float(np.max(np.abs(w.outputs[0] - refs[name])))}
    try:
        per = {nm: [] for nm in workers}
        names = list(workers)
        for p in range(passes):
            for nm in names[p % len(names):] + names[: p % len(names)]:
                per[nm].append(workers[nm].timed_pass(reps))
    finally:
        for w in workers.values():
            w.close()
    for nm, ts in per.items():
        med = statistics.median(ts)
        rows[nm].update(median_ms=med * 1e3, min_ms=min(ts) * 1e3, tops=2 * m * n * k / med / 1e12)
    return list(rows.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deepsparse-python", required=True)
    ap.add_argument("--shape", default="128x768x768", metavar="MxKxN")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", help="write OUT.json and OUT.md")
    args = ap.parse_args()
    m, k, n = (int(v) for v in args.shape.lower().split("x"))
    load0 = os.getloadavg()

    def progress(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    x = np.random.default_rng(m).standard_normal((1, m, k)).astype(np.float32)

    def ref(model: onnx.ModelProto) -> np.ndarray:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0]

    dense, _ = pruned_models(k, n, args.sparsity)
    r0 = ref(dense)
    forms = candidates(dense, m, k, n)
    sections = {"forms": timed(args.deepsparse_python, forms, x, dict.fromkeys(forms, r0), args.passes, args.reps,
                               m, k, n, progress)}
    sweep, refs = {}, {}
    for sp in (0.0, 0.7, 0.8, 0.9, 0.95):
        d, _ = pruned_models(k, n, sp)
        sweep[f"MatMulInteger, {sp:.0%} 4x1"] = deepsparse_form(d, "int8", {"x": [1, m, k]})[0]
        sweep[f"FP32 MatMul, {sp:.0%} 4x1"] = deepsparse_form(d, "fp32", {"x": [1, m, k]})[0]
        refs[f"MatMulInteger, {sp:.0%} 4x1"] = ref(d)
        refs[f"FP32 MatMul, {sp:.0%} 4x1"] = ref(d)
    sections["sparsity"] = timed(args.deepsparse_python, sweep, x, refs, args.passes, args.reps, m, k, n, progress)
    pats = pattern_models(dense, m, k, n, args.sparsity)
    sections["pattern"] = timed(args.deepsparse_python, {nm: v[0] for nm, v in pats.items()}, x,
                                {nm: ref(v[1]) for nm, v in pats.items()}, args.passes, args.reps, m, k, n, progress)
    env = environment()
    env["loadavg_begin"] = load0
    lines = [f"DeepSparse 1.8 candidate forms, {m}×{k}×{n} MatMul, batch 1, 1 core; {env['cpu']}, {env['date']}; "
             f"median of {args.passes} interleaved passes × {args.reps}; load average "
             f"{tuple(round(v, 2) for v in load0)} -> {tuple(round(v, 2) for v in env['loadavg_start'])}.", ""]
    titles = {"forms": f"Forms at {args.sparsity:.0%} 4x1 sparsity (same pruned weights)",
              "sparsity": "The chosen INT8 form and FP32 over sparsity (0% = dense)",
              "pattern": f"Zero pattern at {args.sparsity:.0%} (same int8 values)"}
    for sec, rows in sections.items():
        lines += [f"### {titles[sec]}", "", "| graph | DeepSparse ran itself (fraction_of_supported_ops) | "
                  "max abs diff vs stock ORT on the Q/DQ file | median ms | min ms | dense-eq. TOPS (median) | "
                  "dense-eq. TOPS (min) |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['form']} | failed: {r['error']} | | | | | |")
            else:
                lines.append(f"| {r['form']} | {r['fraction_of_supported_ops']} | {r['max_abs_diff_vs_ort_qdq']:.3g} | "
                             f"{r['median_ms']:.3f} | {r['min_ms']:.3f} | {r['tops']:.3f} | "
                             f"{2 * m * n * k / r['min_ms'] / 1e9:.3f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        write_text_atomic(out.with_suffix(".json"), json.dumps({"args": vars(args), "environment": env,
                                                                **sections}, indent=1) + "\n")
        write_text_atomic(out.with_suffix(".md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
