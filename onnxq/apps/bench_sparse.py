"""Block-sparse INT8 MatMul benchmark (same protocol as onnxq.apps.bench): one pruned INT8 Q/DQ MatMul per shape and
sparsity, run as

  ort-int8-dense     stock onnxruntime on the pruned weights stored dense (its INT8 kernel; zeros cost as much)
  onnxq-dense        the onnxq EP's dense INT8 kernel on the packed file (the EP's `sparse=never` provider option)
  onnxq-sparse       the onnxq EP's 4x1 sparse kernel on the packed file
  deepsparse         DeepSparse 1.8, INT8, on the same pruned int8 weights in the form it runs as sparse INT8
                     (SparseML's QuantizeLinear -> MatMulInteger -> Cast -> Mul export; see onnxq.apps.bench_deepsparse)
  deepsparse-fp32    DeepSparse 1.8 on the same pruned weights dequantized to an FP32 MatMul (its FP32 sparse path)

DeepSparse is optional: it pins onnx < 1.15, so it runs in its own virtualenv, one worker subprocess per engine.
All variants are timed in interleaved passes (the DeepSparse workers take their turn in the same rotation as the
in-process onnxruntime sessions); dense-equivalent TOPS = 2*M*N*K / time.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from onnxq import SparsifyConfig, sparsify
from onnxq.apps.bench import BoundSession, bench_session, environment, pinned, timed_passes
from onnxq.apps.bench_deepsparse import DeepSparseWorker, deepsparse_form
from onnxq.apps.model_builders import qdq_matmul_model
from onnxq.core.atomic_write import write_text_atomic
from onnxq.core.errors import OnnxqError

SPARSITIES = (0.7, 0.8, 0.9, 0.95)
VARIANTS = ("ort-int8-dense", "onnxq-dense", "onnxq-sparse", "deepsparse", "deepsparse-fp32", "deepsparse-pt")
SHAPES = ((128, 768, 768), (128, 768, 3072), (128, 3072, 768), (512, 768, 768))


@dataclass
class SparseBenchConfig:
    shapes: Sequence[tuple[int, int, int]] = SHAPES  # (M, K, N)
    sparsities: Sequence[float] = SPARSITIES
    threads: Sequence[int] = (1,)
    passes: int = 7
    reps: int = 5
    min_pass_seconds: float = 0.02
    deepsparse_python: str | None = None  # a python with deepsparse==1.8.0 installed
    deepsparse_fp32: bool = True  # with deepsparse_python: also DeepSparse's FP32 path on the same pruned weights
    deepsparse_per_tensor: bool = False  # and DeepSparse INT8 on the weights requantized per tensor (same zeros)


@dataclass
class SparseResult:
    variant: str
    m: int
    k: int
    n: int
    sparsity: float
    threads: int
    median_ms: float
    min_ms: float
    tops: float
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    passes_ms: list[float] = field(default_factory=list)  # per interleaved pass, for paired ratios


@dataclass
class SparseReport:
    config: dict[str, Any]
    environment: dict[str, Any]
    results: list[SparseResult] = field(default_factory=list)


def pruned_models(k: int, n: int, sparsity: float, seed: int = 0) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(dense-stored pruned INT8 Q/DQ MatMul, the same with the weight packed) with input x [1, M, K]."""
    base = qdq_matmul_model(k, n, rank=3, bias=False, seed=seed)
    cfg = SparsifyConfig(sparsity=sparsity, block=(4, 1), min_elements=0, pack=False)
    dense = sparsify(base, None, cfg).model
    packed = sparsify(dense, None, SparsifyConfig(sparsity=0.0, min_pack_sparsity=0.0)).model
    return dense, packed


def _session(data: bytes, threads: int, onnxq_mode: str | None) -> ort.InferenceSession:
    """bench_session; for the onnxq EP with its ``sparse`` provider option = `onnxq_mode` ("always" / "never")."""
    if onnxq_mode is None:
        return bench_session(data, threads, onnxq=False)
    return bench_session(data, threads, onnxq=True, ep_options={"sparse": onnxq_mode})


def _deepsparse_workers(cfg: SparseBenchConfig, dense: onnx.ModelProto, x: np.ndarray, threads: int,
                        ref: np.ndarray) -> tuple[dict[str, DeepSparseWorker], dict[str, dict[str, Any]]]:
    """One DeepSparse engine per form (INT8 MatMulInteger, FP32), compiled in the DeepSparse virtualenv on the
    same pruned weights; the note says what it ran itself and how its output compares to stock onnxruntime's."""
    workers: dict[str, DeepSparseWorker] = {}
    details: dict[str, dict[str, Any]] = {}
    m, k = x.shape[1], x.shape[2]
    for variant, form in (("deepsparse", "int8"), ("deepsparse-pt", "int8"), ("deepsparse-fp32", "fp32")):
        if (variant == "deepsparse-fp32" and not cfg.deepsparse_fp32) or \
                (variant == "deepsparse-pt" and not cfg.deepsparse_per_tensor):
            continue
        model, info = deepsparse_form(dense, form, {"x": [1, m, k]}, per_tensor_weights=variant == "deepsparse-pt")
        try:
            w = DeepSparseWorker(cfg.deepsparse_python, model, [x], threads, cfg.min_pass_seconds, cfg.reps)
        except OnnxqError as e:
            details[variant] = {"failed": str(e)}
            continue
        workers[variant] = w
        details[variant] = {"form": form, "ops": [n.op_type for n in model.graph.node],
                            "fraction_of_supported_ops": w.info["fraction_of_supported_ops"],
                            "max_abs_diff_vs_ort": float(np.max(np.abs(w.outputs[0] - ref))),
                            "weight_zero_fraction": info.get("weight_zero_fraction"), "cpu": w.info.get("cpu")}
    return workers, details


def run_sparse_bench(cfg: SparseBenchConfig, progress: Callable[[str], None] | None = None) -> SparseReport:
    report = SparseReport(config=asdict(cfg), environment=environment())
    for (m, k, n) in cfg.shapes:
        for sp in cfg.sparsities:
            dense, packed = pruned_models(k, n, sp)
            for threads in cfg.threads:
                with pinned(threads):
                    _bench_config(cfg, report, progress, dense, packed, m, k, n, sp, threads)
    report.environment["loadavg_end"] = os.getloadavg()
    return report


def _bench_config(cfg: SparseBenchConfig, report: SparseReport, progress: Callable[[str], None] | None,
                  dense: onnx.ModelProto, packed: onnx.ModelProto, m: int, k: int, n: int, sp: float,
                  threads: int) -> None:
    if progress:
        progress(f"M={m} K={k} N={n} sparsity={sp:.2f} threads={threads}")
    sessions = {
        "ort-int8-dense": _session(dense.SerializeToString(), threads, None),
        "onnxq-dense": _session(packed.SerializeToString(), threads, "never"),
        "onnxq-sparse": _session(packed.SerializeToString(), threads, "always"),
    }
    x = np.random.default_rng(m).standard_normal((1, m, k)).astype(np.float32)
    outs = {v: s.run(None, {"x": x})[0] for v, s in sessions.items()}
    agree = bool(np.array_equal(outs["onnxq-dense"], outs["onnxq-sparse"]))
    bound = {v: _Bound3(s, x, n) for v, s in sessions.items()}
    workers, details = ({}, {}) if not cfg.deepsparse_python else \
        _deepsparse_workers(cfg, dense, x, threads, outs["ort-int8-dense"])
    try:
        times = timed_passes(bound, cfg, workers)
    finally:
        for w in workers.values():
            w.close()
    notes = {"onnxq-sparse": "bit-identical to onnxq-dense" if agree else "DIFFERS",
             "deepsparse": "separate process (own virtualenv)",
             "deepsparse-pt": "separate process; weights requantized per tensor (same zeros)",
             "deepsparse-fp32": "separate process (own virtualenv)"}
    for v, ts in times.items():
        med = statistics.median(ts)
        report.results.append(SparseResult(v, m, k, n, sp, threads, med * 1e3, min(ts) * 1e3,
                                           2 * m * n * k / med / 1e12, notes.get(v, ""),
                                           details.get(v, {}), [t * 1e3 for t in ts]))
    for v, d in details.items():
        if "failed" in d:
            report.results.append(SparseResult(v, m, k, n, sp, threads, float("nan"), float("nan"),
                                               float("nan"), f"failed: {d['failed']}"))


class _Bound3(BoundSession):
    """IOBinding for the [1, M, K] -> [1, M, N] models."""

    def __init__(self, sess: ort.InferenceSession, x: np.ndarray, n: int) -> None:
        self.sess = sess
        self.binding = sess.io_binding()
        self.x = ort.OrtValue.ortvalue_from_numpy(x)
        self.y = ort.OrtValue.ortvalue_from_numpy(np.empty((1, x.shape[1], n), np.float32))
        self.binding.bind_ortvalue_input(sess.get_inputs()[0].name, self.x)
        self.binding.bind_ortvalue_output(sess.get_outputs()[0].name, self.y)


def markdown(report: SparseReport) -> str:
    env = report.environment
    lines = [f"Machine: {env.get('cpu_label', env['cpu'])}, onnxruntime {env['onnxruntime']}, "
             f"onnxq {env['onnxq']}, {env['date']}; load average {tuple(round(x, 2) for x in env['loadavg_start'])}"
             f" -> {tuple(round(x, 2) for x in env.get('loadavg_end', ()))}.", "",
             "Dense-equivalent TOPS (2·M·N·K / median time) and speed-ups of the onnxq sparse kernel:", "",
             "| threads | M×K×N | sparsity | ORT INT8 dense | onnxq dense | onnxq sparse | DeepSparse INT8 | "
             "DeepSparse FP32 | sparse / ORT | sparse / onnxq dense | sparse / DeepSparse INT8 | "
             "sparse / DeepSparse FP32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    idx = {(r.variant, r.m, r.k, r.n, r.sparsity, r.threads): r for r in report.results}
    keys = sorted({(r.threads, r.m, r.k, r.n, r.sparsity) for r in report.results})
    for t, m, k, n, sp in keys:
        g = {v: idx.get((v, m, k, n, sp, t)) for v in VARIANTS}

        def cell(v, g=g):
            r = g[v]
            return "" if r is None or r.tops != r.tops else f"{r.tops:.2f}"

        def ratio(a, b, g=g):
            ra, rb = g[a], g[b]
            if ra is None or rb is None or ra.median_ms != ra.median_ms or rb.median_ms != rb.median_ms:
                return ""
            return f"{rb.median_ms / ra.median_ms:.2f}×"

        lines.append(f"| {t} | {m}×{k}×{n} | {sp:.0%} | {cell('ort-int8-dense')} | {cell('onnxq-dense')} | "
                     f"{cell('onnxq-sparse')} | {cell('deepsparse')} | {cell('deepsparse-fp32')} | "
                     f"{ratio('onnxq-sparse', 'ort-int8-dense')} | {ratio('onnxq-sparse', 'onnxq-dense')} | "
                     f"{ratio('onnxq-sparse', 'deepsparse')} | {ratio('onnxq-sparse', 'deepsparse-fp32')} |")
    summary = deepsparse_summary(report)
    if summary:
        lines += ["", "onnxq sparse vs DeepSparse per sparsity, range over shapes and thread counts (paired: median "
                  "over passes of the two times taken in the same pass; min: best pass of each — the least "
                  "disturbed by other load):", "",
                  "| sparsity | peer | ratio of medians | paired ratio | ratio of mins | onnxq sparse TOPS (median) | "
                  "peer TOPS (median) |", "|---|---|---|---|---|---|---|"]
        for row in summary:
            lines.append(f"| {row['sparsity']:.0%} | {row['peer']} | " + " | ".join(
                f"{row[c][0]:.2f}–{row[c][1]:.2f}{'×' if 'ratio' in c else ''}"
                for c in ("ratio_of_medians", "paired_ratio", "ratio_of_mins", "onnxq_tops", "peer_tops")) + " |")
    for v in ("deepsparse", "deepsparse-pt", "deepsparse-fp32"):
        rs = [r for r in report.results if r.variant == v]
        ok = [r for r in rs if r.detail]
        if ok:
            lines += ["", f"{v}: graph {' + '.join(ok[0].detail['ops'])}; DeepSparse's fraction_of_supported_ops "
                      f"{sorted({r.detail['fraction_of_supported_ops'] for r in ok})}; max |output - stock ORT on the "
                      f"Q/DQ file| {max(r.detail['max_abs_diff_vs_ort'] for r in ok):.3g}."]
        fails = sorted({r.note for r in rs if r.note.startswith("failed")})
        if fails:
            lines += ["", f"{v} did not run: " + "; ".join(fails)]
    return "\n".join(lines) + "\n"


def deepsparse_summary(report: SparseReport) -> list[dict[str, Any]]:
    """Per sparsity and DeepSparse variant: (min, max) over shapes/threads of the onnxq-sparse speed-up, three ways."""
    idx = {(r.variant, r.m, r.k, r.n, r.sparsity, r.threads): r for r in report.results}
    out = []
    for peer in ("deepsparse", "deepsparse-pt", "deepsparse-fp32"):
        for sp in sorted({r.sparsity for r in report.results}):
            cols: dict[str, list[float]] = {c: [] for c in ("ratio_of_medians", "paired_ratio", "ratio_of_mins",
                                                           "onnxq_tops", "peer_tops")}
            for r in report.results:
                if r.variant != "onnxq-sparse" or r.sparsity != sp:
                    continue
                d = idx.get((peer, r.m, r.k, r.n, sp, r.threads))
                if d is None or d.median_ms != d.median_ms:
                    continue
                cols["ratio_of_medians"].append(d.median_ms / r.median_ms)
                cols["ratio_of_mins"].append(d.min_ms / r.min_ms)
                if len(d.passes_ms) == len(r.passes_ms) and r.passes_ms:
                    cols["paired_ratio"].append(statistics.median(a / b for a, b in zip(d.passes_ms, r.passes_ms,
                                                                                        strict=True)))
                cols["onnxq_tops"].append(r.tops)
                cols["peer_tops"].append(d.tops)
            if cols["ratio_of_medians"] and cols["paired_ratio"]:
                out.append({"sparsity": sp, "peer": peer, **{c: (min(v), max(v)) for c, v in cols.items()}})
    return out


def write_outputs(report: SparseReport, out_dir: Path, stem: str = "bench_sparse") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"config": report.config, "environment": report.environment,
               "results": [asdict(r) for r in report.results], "deepsparse_summary": deepsparse_summary(report)}
    paths = {"json": write_text_atomic(out_dir / f"{stem}.json", json.dumps(payload, indent=1) + "\n"),
             "markdown": write_text_atomic(out_dir / f"{stem}.md", markdown(report))}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return paths
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for v, style in zip(VARIANTS, ("s--", "^--", "o-", "d-", "v:", "d:"), strict=True):
        rs = [r for r in report.results if r.variant == v and r.threads == min(report.config["threads"]) and
              r.tops == r.tops]
        if not rs:
            continue
        by_sp: dict[float, list[float]] = {}
        for r in rs:
            by_sp.setdefault(r.sparsity, []).append(r.tops)
        xs = sorted(by_sp)
        ax.plot([x * 100 for x in xs], [statistics.median(by_sp[x]) for x in xs], style, label=v)
    ax.set_xlabel("block sparsity (%) — 4x1 blocks")
    ax.set_ylabel("dense-equivalent TOPS (median over shapes)")
    ax.set_title("Block-sparse INT8 MatMul, 1 thread")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}.png", dpi=110)
    plt.close(fig)
    paths["png"] = out_dir / f"{stem}.png"
    return paths
