#!/usr/bin/env python3
"""End-to-end latency of whole models: stock onnxruntime on the FP32 original, and for every quantized file
stock onnxruntime and the onnxq EP on that same file — one process, interleaved passes, IOBinding-free plain
run() with identical feeds, same session options (threads) for all.

    python tools/bench_e2e.py --fp32 minilm.fp32.onnx --model fp8=minilm.fp8.onnx --model int8=minilm.int8.onnx \\
        --batch 1 --seq 128 --threads 1 --out docs/bench/e2e_minilm

Transformer inputs are filled sensibly by name (input_ids random tokens, attention_mask ones, token_type_ids
zeros); other inputs get seeded random values. Besides latency it reports, per quantized file, how close the onnxq
EP's outputs are to stock onnxruntime's on the same file (cosine, max |diff|) and to the FP32 model (cosine).

DeepSparse 1.8 (optional; its own virtualenv since it pins onnx < 1.15) runs the same quantized files converted to
the form it accelerates (onnxq/apps/bench_deepsparse.py: SparseML's MatMulInteger form for INT8, or the same weights
dequantized to FP32), with the feeds' shapes fixed in the file, in a worker subprocess that takes its turn in the
same interleaved passes:

    python tools/bench_e2e.py --fp32 mpnet.fp32.onnx --model int8-sparse90=mpnet.int8.sp90.onnx \
        --deepsparse-python /tmp/dsenv/bin/python --deepsparse-model int8-sparse90 --deepsparse-form int8 \
        --deepsparse-form fp32 --threads 1 --out docs/bench/deepsparse_e2e_mpnet
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from onnxq import ep
from onnxq.apps.bench import bench_session, environment, pinned
from onnxq.apps.bench_deepsparse import FORMS, DeepSparseWorker, deepsparse_form
from onnxq.core.atomic_write import write_text_atomic


def feeds_for(sess: ort.InferenceSession, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else (batch if j == 0 else seq) for j, d in enumerate(i.shape)]
        name = i.name.lower()
        if i.type == "tensor(int64)" or i.type == "tensor(int32)":
            dt = np.int64 if i.type == "tensor(int64)" else np.int32
            if "mask" in name:
                out[i.name] = np.ones(shape, dt)
            elif "type" in name or "segment" in name:
                out[i.name] = np.zeros(shape, dt)
            else:
                out[i.name] = rng.integers(1000, 5000, shape).astype(dt)
        else:
            out[i.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fp32", required=True)
    ap.add_argument("--model", action="append", default=[], metavar="LABEL=PATH")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", help="write OUT.json and OUT.md")
    ap.add_argument("--deepsparse-python", help="python of a virtualenv with deepsparse==1.8.0")
    ap.add_argument("--deepsparse-model", action="append", default=[], metavar="LABEL",
                    help="a --model label to run in DeepSparse too (default with --deepsparse-python: all)")
    ap.add_argument("--deepsparse-form", action="append", choices=FORMS,
                    help="DeepSparse graph form(s): int8 (MatMulInteger, same int8 weights; default) or fp32 (the "
                         "same weights dequantized, no Q/DQ)")
    args = ap.parse_args()
    labels = dict(m.split("=", 1) for m in args.model)
    if args.deepsparse_python and (unknown := [x for x in (args.deepsparse_model or []) if x not in labels]):
        ap.error(f"--deepsparse-model {unknown}: no such --model label")
    with pinned(args.threads):  # sessions, DeepSparse workers and timing alike (see onnxq.apps.bench.pinned)
        return _run(args, labels)


def _run(args: argparse.Namespace, models: dict[str, str]) -> int:
    load_start = os.getloadavg()
    ds_labels = (args.deepsparse_model or list(models)) if args.deepsparse_python else []
    sessions = {"ort fp32": bench_session(args.fp32, args.threads, False)}
    claims = {}
    for label, path in models.items():
        sessions[f"ort {label}"] = bench_session(path, args.threads, False)
        s = bench_session(path, args.threads, True)
        sessions[f"onnxq {label}"] = s
        assigned = ep.assigned_nodes(s)
        claims[label] = {"onnxq": len(assigned.get(ep.EP_NAME, [])), "total": sum(len(v) for v in assigned.values())}
    feeds = feeds_for(sessions["ort fp32"], args.batch, args.seq)
    outs = {k: s.run(None, feeds)[0] for k, s in sessions.items()}
    for s in sessions.values():
        s.run(None, feeds)
    workers: dict[str, DeepSparseWorker] = {}
    ds_info: dict[str, dict] = {}
    try:
        for label in ds_labels:
            src = onnx.load(models[label])
            names_in = [i.name for i in src.graph.input]
            for form in args.deepsparse_form or ["int8"]:
                key = f"deepsparse-{form} {label}"
                dsm, info = deepsparse_form(src, form, {n: feeds[n].shape for n in names_in})
                mms = ", ".join(f"{v} {k}" for k, v in info["ops"].items() if k in ("MatMul", "MatMulInteger"))
                print(f"{key}: compiling in DeepSparse ({mms})", file=sys.stderr, flush=True)
                # the converted file on stock onnxruntime: separates conversion error from DeepSparse's numerics
                info["cosine_converted_on_ort_vs_ort_same_file"] = cosine(
                    ort.InferenceSession(dsm.SerializeToString(), providers=["CPUExecutionProvider"]).run(
                        None, {n: feeds[n] for n in names_in})[0], outs[f"ort {label}"])
                w = DeepSparseWorker(args.deepsparse_python, dsm, [feeds[n] for n in names_in], args.threads,
                                     min_pass_seconds=0.0, reps=args.reps)
                workers[key] = w
                outs[key] = w.outputs[0]
                ds_info[key] = {"label": label, "form": form, "fraction_of_supported_ops":
                                w.info["fraction_of_supported_ops"], "compile_s": w.info["compile_s"],
                                "cpu": w.info.get("cpu"), **info}
        per_pass = _passes(sessions, workers, feeds, args.passes, args.reps)
    finally:
        for w in workers.values():
            w.close()
    med = {k: statistics.median(v) * 1e3 for k, v in per_pass.items()}
    return _report(args, models, med, outs, claims, ds_info, load_start)


def _passes(sessions: dict[str, ort.InferenceSession], workers: dict[str, DeepSparseWorker],
            feeds: dict[str, np.ndarray], passes: int, reps: int) -> dict[str, list[float]]:
    """Interleaved passes; a DeepSparse worker times its `reps` runs in its own process when its turn comes."""
    names = list(sessions) + list(workers)
    per_pass: dict[str, list[float]] = {k: [] for k in names}
    for p in range(passes):
        for k in names[p % len(names):] + names[: p % len(names)]:
            if k in workers:
                per_pass[k].append(workers[k].timed_pass(reps))
                continue
            samples = []
            for _ in range(reps):
                t0 = time.perf_counter()
                sessions[k].run(None, feeds)
                samples.append(time.perf_counter() - t0)
            per_pass[k].append(statistics.median(samples))
    return per_pass


def _rows(models, med, outs, claims) -> list[dict]:
    rows = []
    for label in models:
        rows.append({
            "model": label,
            "claimed": claims[label],
            "ort_fp32_ms": med["ort fp32"],
            "ort_same_file_ms": med[f"ort {label}"],
            "onnxq_ms": med[f"onnxq {label}"],
            "speedup_vs_ort_fp32": med["ort fp32"] / med[f"onnxq {label}"],
            "speedup_vs_ort_same_file": med[f"ort {label}"] / med[f"onnxq {label}"],
            "cosine_onnxq_vs_ort_same_file": cosine(outs[f"onnxq {label}"], outs[f"ort {label}"]),
            "max_abs_diff_onnxq_vs_ort_same_file": float(np.max(np.abs(outs[f"onnxq {label}"] - outs[f"ort {label}"]))),
            "cosine_onnxq_vs_fp32": cosine(outs[f"onnxq {label}"], outs["ort fp32"]),
            "cosine_ort_same_file_vs_fp32": cosine(outs[f"ort {label}"], outs["ort fp32"]),
        })
    return rows


def _report(args, models, med, outs, claims, ds_info, load_start) -> int:
    rows = _rows(models, med, outs, claims)
    ds_rows = []
    for key, info in ds_info.items():
        label = info["label"]
        ds_rows.append({
            "model": label, "deepsparse_form": info["form"], "ops": info["ops"],
            "matmuls_converted": info.get("matmuls_converted", 0),
            "fraction_of_supported_ops": info["fraction_of_supported_ops"], "compile_s": info["compile_s"],
            "cpu_seen_by_deepsparse": info["cpu"], "deepsparse_ms": med[key], "onnxq_ms": med[f"onnxq {label}"],
            "ort_same_file_ms": med[f"ort {label}"], "ort_fp32_ms": med["ort fp32"],
            "onnxq_speedup_vs_deepsparse": med[key] / med[f"onnxq {label}"],
            "deepsparse_speedup_vs_ort_same_file": med[f"ort {label}"] / med[key],
            "cosine_deepsparse_vs_ort_same_file": cosine(outs[key], outs[f"ort {label}"]),
            "cosine_deepsparse_vs_fp32": cosine(outs[key], outs["ort fp32"]),
            "cosine_converted_file_on_ort_vs_ort_same_file": info["cosine_converted_on_ort_vs_ort_same_file"],
        })
    env = environment()
    env["loadavg_begin"] = load_start
    lines = [f"{env['cpu_label']}, onnxruntime {env['onnxruntime']}, onnxq "
             f"{env['onnxq']}, {env['date']}; batch {args.batch}, sequence {args.seq}, {args.threads} thread(s); "
             f"median of {args.passes} interleaved passes x {args.reps} runs; load average "
             f"{tuple(round(x, 2) for x in load_start)} -> {tuple(round(x, 2) for x in env['loadavg_start'])}.",
             "", "| model | EP claims | ORT FP32 ms | ORT same file ms | onnxq EP ms | vs ORT FP32 | vs ORT same file |"
             " cos(onnxq, ORT same file) | cos(onnxq, FP32) | cos(ORT same file, FP32) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['claimed']['onnxq']}/{r['claimed']['total']} | {r['ort_fp32_ms']:.2f} | "
                     f"{r['ort_same_file_ms']:.2f} | {r['onnxq_ms']:.2f} | {r['speedup_vs_ort_fp32']:.2f}× | "
                     f"{r['speedup_vs_ort_same_file']:.2f}× | {r['cosine_onnxq_vs_ort_same_file']:.6f} | "
                     f"{r['cosine_onnxq_vs_fp32']:.6f} | {r['cosine_ort_same_file_vs_fp32']:.6f} |")
    if ds_rows:
        lines += ["", "DeepSparse 1.8 on the same files (converted to the form it accelerates; worker subprocess in "
                  "the same interleaved passes):", "",
                  "| model | DeepSparse form | DeepSparse ran itself | DeepSparse ms | onnxq EP ms | ORT same file ms "
                  "| onnxq vs DeepSparse | DeepSparse vs ORT same file | cos(DeepSparse, ORT same file) | "
                  "cos(DeepSparse, FP32) | cos(converted file on stock ORT, ORT same file) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in ds_rows:
            form = (f"int8 ({r['matmuls_converted']} MatMul → MatMulInteger)" if r["deepsparse_form"] == "int8"
                    else "fp32 (same weights dequantized, no Q/DQ)")
            lines.append(f"| {r['model']} | {form} | {r['fraction_of_supported_ops']:.1%} of ops | "
                         f"{r['deepsparse_ms']:.2f} | {r['onnxq_ms']:.2f} | {r['ort_same_file_ms']:.2f} | "
                         f"{r['onnxq_speedup_vs_deepsparse']:.2f}× | {r['deepsparse_speedup_vs_ort_same_file']:.2f}× | "
                         f"{r['cosine_deepsparse_vs_ort_same_file']:.6f} | {r['cosine_deepsparse_vs_fp32']:.6f} | "
                         f"{r['cosine_converted_file_on_ort_vs_ort_same_file']:.6f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out.with_suffix(".json"), json.dumps({"args": vars(args), "environment": env,
                                                                "results": rows, "deepsparse": ds_rows},
                                                               indent=1) + "\n")
        write_text_atomic(out.with_suffix(".md"), text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
