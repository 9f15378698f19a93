"""Block-sparse INT8 MatMul benchmark (same protocol as onnxq.bench): one pruned INT8 Q/DQ MatMul per shape and
sparsity, run as

  ort-int8-dense     stock onnxruntime on the pruned weights stored dense (its INT8 kernel; zeros cost as much)
  onnxq-dense        the onnxq EP's dense INT8 kernel on the packed file (ONNXQ_SPARSE=never at session creation)
  onnxq-sparse       the onnxq EP's 4x1 sparse kernel on the packed file
  deepsparse         DeepSparse 1.8 on the dense-stored file (optional: a separate virtualenv, since it pins
                     onnx < 1.15; timed in a subprocess with the same passes and reps, right after the others)

The first three are timed in one process with interleaved passes; dense-equivalent TOPS = 2*M*N*K / time.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from onnxq import ep
from onnxq.bench import _Bound, _timed_passes, environment
from onnxq.reporting import write_text_atomic
from onnxq.sparse.api import SparsifyConfig, sparsify
from onnxq.testing import qdq_matmul_model

SPARSITIES = (0.7, 0.8, 0.9, 0.95)
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
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if onnxq_mode is None:
        return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])
    old = os.environ.get("ONNXQ_SPARSE")
    os.environ["ONNXQ_SPARSE"] = onnxq_mode  # read when the EP compiles the node
    try:
        return ep.session(data, options=so, provider_options={"num_threads": str(threads)})
    finally:
        if old is None:
            os.environ.pop("ONNXQ_SPARSE", None)
        else:
            os.environ["ONNXQ_SPARSE"] = old


_DEEPSPARSE_SCRIPT = r"""
import json, os, statistics, sys, time
os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
import numpy as np
from deepsparse import compile_model
path, m, k, threads, passes, reps, min_pass = sys.argv[1:8]
m, k, threads, passes, reps, min_pass = int(m), int(k), int(threads), int(passes), int(reps), float(min_pass)
engine = compile_model(path, batch_size=1, num_cores=threads)
x = [np.random.default_rng(m).standard_normal((1, m, k)).astype(np.float32)]
for _ in range(3):
    engine.run(x)
t0 = time.perf_counter(); engine.run(x); dt = time.perf_counter() - t0
repeat = max(1, int(min_pass / max(dt, 1e-7) / reps))
per_pass = []
for _ in range(passes):
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(repeat):
            engine.run(x)
        samples.append((time.perf_counter() - t0) / repeat)
    per_pass.append(statistics.median(samples))
print(json.dumps({"per_pass": per_pass, "engine": str(engine)[:200]}))
"""


def _deepsparse(python: str, model: onnx.ModelProto, m: int, k: int, threads: int,
                cfg: SparseBenchConfig) -> tuple[list[float] | None, str]:
    with tempfile.TemporaryDirectory(prefix="onnxq-ds-") as tmp:
        path = Path(tmp) / "model.onnx"
        old = onnx.ModelProto()
        old.CopyFrom(model)
        # DeepSparse 1.8 embeds an older onnxruntime: IR 8 / opset 13 (enough for per-axis Q/DQ + MatMul)
        old.ir_version = 8
        for o in old.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = 13
        # and static shapes: with a symbolic dimension it runs nothing itself ("fraction_of_supported_ops: 0")
        for vi in (old.graph.input[0], old.graph.output[0]):
            dims = vi.type.tensor_type.shape.dim
            for d, v in zip(dims[:2], (1, m), strict=True):
                d.ClearField("dim_param")
                d.dim_value = v
        onnx.save_model(old, path)
        env = dict(os.environ, NM_DISABLE_ANALYTICS="1")
        r = subprocess.run([python, "-c", _DEEPSPARSE_SCRIPT, str(path), str(m), str(k), str(threads),
                            str(cfg.passes), str(cfg.reps), str(cfg.min_pass_seconds)],
                           capture_output=True, text=True, env=env, timeout=900)
        if r.returncode != 0:
            return None, (r.stderr.strip().splitlines() or ["failed"])[-1][:300]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        return out["per_pass"], out.get("engine", "")


def run_sparse_bench(cfg: SparseBenchConfig, progress: Callable[[str], None] | None = None) -> SparseReport:
    report = SparseReport(config=asdict(cfg), environment=environment())
    for (m, k, n) in cfg.shapes:
        for sp in cfg.sparsities:
            dense, packed = pruned_models(k, n, sp)
            for threads in cfg.threads:
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
                times = _timed_passes(bound, cfg)
                for v, ts in times.items():
                    med = statistics.median(ts)
                    note = "" if v != "onnxq-sparse" else ("bit-identical to onnxq-dense" if agree else "DIFFERS")
                    report.results.append(SparseResult(v, m, k, n, sp, threads, med * 1e3, min(ts) * 1e3,
                                                       2 * m * n * k / med / 1e12, note))
                if cfg.deepsparse_python:
                    ts, info = _deepsparse(cfg.deepsparse_python, dense, m, k, threads, cfg)
                    if ts is None:
                        report.results.append(SparseResult("deepsparse", m, k, n, sp, threads, float("nan"),
                                                           float("nan"), float("nan"), f"failed: {info}"))
                    else:
                        med = statistics.median(ts)
                        report.results.append(SparseResult("deepsparse", m, k, n, sp, threads, med * 1e3,
                                                           min(ts) * 1e3, 2 * m * n * k / med / 1e12,
                                                           "separate process (onnx<1.15 venv)"))
    report.environment["loadavg_end"] = os.getloadavg()
    return report


class _Bound3(_Bound):
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
    lines = [f"Machine: {env['cpu']} ({env['logical_cpus']} logical CPUs), onnxruntime {env['onnxruntime']}, "
             f"onnxq {env['onnxq']}, {env['date']}; load average {tuple(round(x, 2) for x in env['loadavg_start'])}"
             f" -> {tuple(round(x, 2) for x in env.get('loadavg_end', ()))}.", "",
             "Dense-equivalent TOPS (2·M·N·K / median time) and speed-ups of the onnxq sparse kernel:", "",
             "| threads | M×K×N | sparsity | ORT INT8 dense | onnxq dense | onnxq sparse | DeepSparse | "
             "sparse / ORT | sparse / onnxq dense | sparse / DeepSparse |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    idx = {(r.variant, r.m, r.k, r.n, r.sparsity, r.threads): r for r in report.results}
    keys = sorted({(r.threads, r.m, r.k, r.n, r.sparsity) for r in report.results})
    for t, m, k, n, sp in keys:
        g = {v: idx.get((v, m, k, n, sp, t)) for v in ("ort-int8-dense", "onnxq-dense", "onnxq-sparse", "deepsparse")}

        def cell(v, g=g):
            r = g[v]
            return "" if r is None or r.tops != r.tops else f"{r.tops:.2f}"

        def ratio(a, b, g=g):
            ra, rb = g[a], g[b]
            if ra is None or rb is None or ra.median_ms != ra.median_ms or rb.median_ms != rb.median_ms:
                return ""
            return f"{rb.median_ms / ra.median_ms:.2f}×"

        lines.append(f"| {t} | {m}×{k}×{n} | {sp:.0%} | {cell('ort-int8-dense')} | {cell('onnxq-dense')} | "
                     f"{cell('onnxq-sparse')} | {cell('deepsparse')} | {ratio('onnxq-sparse', 'ort-int8-dense')} | "
                     f"{ratio('onnxq-sparse', 'onnxq-dense')} | {ratio('onnxq-sparse', 'deepsparse')} |")
    notes = sorted({r.note for r in report.results if r.variant == "deepsparse" and r.note.startswith("failed")})
    if notes:
        lines += ["", "DeepSparse did not run: " + "; ".join(notes)]
    return "\n".join(lines) + "\n"


def write_outputs(report: SparseReport, out_dir: Path, stem: str = "bench_sparse") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"config": report.config, "environment": report.environment,
               "results": [asdict(r) for r in report.results]}
    paths = {"json": write_text_atomic(out_dir / f"{stem}.json", json.dumps(payload, indent=1) + "\n"),
             "markdown": write_text_atomic(out_dir / f"{stem}.md", markdown(report))}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return paths
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for v, style in (("ort-int8-dense", "s--"), ("onnxq-dense", "^--"), ("onnxq-sparse", "o-"), ("deepsparse", "d-")):
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
