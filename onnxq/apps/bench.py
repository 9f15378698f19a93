"""Single-node MatMul benchmarks: the onnxq EP against stock onnxruntime, by the team's protocol.

Protocol (../shared/DESIGN.md): ratios measured in one process with interleaved passes on the same files and
shapes; same session options for every session; weights as initializers; IOBinding with preallocated outputs;
median and min over passes; 1 thread as the headline and 2 beside it; dense-equivalent GFLOP/s (2*M*N*K / t) next
to every ratio; the load average recorded. Speed is never asserted in tests: this writes JSON / markdown / PNG.

Sessions per (K, N) and thread count:
  ort-fp32      stock onnxruntime, FP32 MatMul
  ort-int8      stock onnxruntime on the INT8 Q/DQ file (u8 activations, per-column s8 weights)
  onnxq-int8    the onnxq EP on the same INT8 file
  ort-fp8w      stock onnxruntime on the FP8 E4M3FN weight-only Q/DQ file
  onnxq-fp8w    the onnxq EP on the same FP8 weight-only file
  ort-fp8       stock onnxruntime on the FP8 E4M3FN weights + activations Q/DQ file
  onnxq-fp8     the onnxq EP on that file
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnxq import ep
from onnxq.apps.model_builders import IR_VERSION, OPSET, fp8_qdq_matmul_model, qdq_matmul_model
from onnxq.core.atomic_write import write_text_atomic

PROTOCOL_M = (1, 32, 128, 512)
PROTOCOL_KN = ((768, 768), (768, 2304), (768, 3072), (3072, 768))
VARIANTS = ("ort-fp32", "ort-int8", "onnxq-int8", "ort-fp8w", "onnxq-fp8w", "ort-fp8", "onnxq-fp8")


@dataclass
class BenchConfig:
    ms: Sequence[int] = PROTOCOL_M
    kns: Sequence[tuple[int, int]] = PROTOCOL_KN
    threads: Sequence[int] = (1, 2)
    variants: Sequence[str] = VARIANTS
    passes: int = 7
    reps: int = 5  # runs per pass; the pass's time is their median
    min_pass_seconds: float = 0.02  # small shapes repeat more per pass so each pass lasts at least this long


@dataclass
class Result:
    variant: str
    m: int
    k: int
    n: int
    threads: int
    median_ms: float
    min_ms: float
    gflops: float  # dense-equivalent 2*M*N*K / median time
    claimed: bool | None = None  # for onnxq-* variants: did the EP claim the MatMul?


@dataclass
class BenchReport:
    config: dict[str, Any]
    environment: dict[str, Any]
    results: list[Result] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "environment": self.environment, "results": [asdict(r) for r in self.results]}


def _fp32_model(k: int, n: int, seed: int = 0) -> onnx.ModelProto:
    w = (np.random.default_rng(seed).standard_normal((k, n)) * 0.1).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "fp32_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        initializer=[numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR_VERSION
    return m


def build_models(k: int, n: int) -> dict[str, bytes]:
    """One file per format; the onnxq-* and ort-* variants of a format run the same bytes."""
    int8 = qdq_matmul_model(k, n, rank=2, bias=False).SerializeToString()
    fp8w = fp8_qdq_matmul_model(k, n, bias=False).SerializeToString()
    fp8 = fp8_qdq_matmul_model(k, n, activation_format="e4m3fn", bias=False).SerializeToString()
    return {"ort-fp32": _fp32_model(k, n).SerializeToString(), "ort-int8": int8, "onnxq-int8": int8,
            "ort-fp8w": fp8w, "onnxq-fp8w": fp8w, "ort-fp8": fp8, "onnxq-fp8": fp8}


def bench_session(model: bytes | str | os.PathLike[str], threads: int, onnxq: bool,
                  ep_options: dict[str, str] | None = None) -> ort.InferenceSession:
    """The session every benchmark times: `threads` intra-op threads (the EP's pool too), no inter-op
    parallelism, quiet logs, no spinning. Several sessions share few cores in a benchmark: threads that spin after
    their pass would steal the next session's cores. Every session gets the same settings (like for like)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if onnxq:
        return ep.session(model, options=so, provider_options={"num_threads": str(threads), **(ep_options or {})})
    data = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])


class BoundSession:
    """A session with its input and preallocated output bound once (IOBinding): a run is just run_with_iobinding."""

    def __init__(self, sess: ort.InferenceSession, x: np.ndarray, n: int) -> None:
        self.sess = sess
        self.binding = sess.io_binding()
        self.x = ort.OrtValue.ortvalue_from_numpy(x)
        self.y = ort.OrtValue.ortvalue_from_numpy(np.empty((x.shape[0], n), np.float32))
        self.binding.bind_ortvalue_input(sess.get_inputs()[0].name, self.x)
        self.binding.bind_ortvalue_output(sess.get_outputs()[0].name, self.y)

    def run(self) -> None:
        self.sess.run_with_iobinding(self.binding)


class TimedWorker(Protocol):
    """A peer timed in another process (e.g. DeepSparse): `timed_pass(reps)` returns its pass's time in seconds."""

    def timed_pass(self, reps: int) -> float: ...


def timed_passes(bound: dict[str, BoundSession], cfg: Any,
                  workers: dict[str, TimedWorker] | None = None) -> dict[str, list[float]]:
    """Interleaved passes: in each pass every session runs `reps` (x repeat) times back to back; the pass's
    time is the median of those. Passes rotate the order so no session always follows the same neighbour.
    `workers` (other processes) take their turn in the same rotation, so all see the same machine load.
    `cfg` needs `passes`, `reps` and `min_pass_seconds`."""
    workers = workers or {}
    for b in bound.values():  # warm-up (first runs allocate and touch pages)
        b.run()
        b.run()
    repeat: dict[str, int] = {}
    for nm, b in bound.items():
        t0 = time.perf_counter()
        b.run()
        dt = time.perf_counter() - t0
        repeat[nm] = max(1, int(cfg.min_pass_seconds / max(dt, 1e-7) / cfg.reps))
    names = list(bound) + list(workers)
    per_pass: dict[str, list[float]] = {nm: [] for nm in names}
    for p in range(cfg.passes):
        for nm in names[p % len(names):] + names[: p % len(names)]:
            if nm in workers:
                per_pass[nm].append(workers[nm].timed_pass(cfg.reps))
                continue
            b, r = bound[nm], repeat[nm]
            samples = []
            for _ in range(cfg.reps):
                t0 = time.perf_counter()
                for _ in range(r):
                    b.run()
                samples.append((time.perf_counter() - t0) / r)
            per_pass[nm].append(statistics.median(samples))
    return per_pass


@contextlib.contextmanager
def pinned(threads: int) -> Iterator[list[int] | None]:
    """Pin this process — and what it starts meanwhile: onnxruntime's and the EP's pool threads, DeepSparse worker
    processes — to `threads` CPUs (the last ones it may use) for one configuration, then restore the old set.

    On this 2-vCPU VM an unpinned 1-thread run migrates between the vCPUs and loses its L1 / L2 contents: the
    sparse kernel at 90% (128x768x768) measured 1.50-2.05 dense-equivalent TOPS over runs unpinned, 1.89-1.95
    pinned, while stock onnxruntime's dense INT8 moved little. Every variant of a pass runs under the same pinning.
    ONNXQ_BENCH_PIN=0 turns it off; where the process may use no more than `threads` CPUs nothing changes."""
    if os.environ.get("ONNXQ_BENCH_PIN", "1") == "0" or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    old = sorted(os.sched_getaffinity(0))
    if len(old) <= threads:
        yield None
        return
    cpus = old[-threads:]
    os.sched_setaffinity(0, cpus)
    try:
        yield cpus
    finally:
        os.sched_setaffinity(0, old)


def environment() -> dict[str, Any]:
    """What the numbers were measured on: the CPU, the ISA level the kernels ran at (ONNXQ_MAX_ISA caps it), versions,
    load. Every benchmark's JSON carries this and its table header names the CPU and level (cpu_label)."""
    from onnxq import _kernels
    from onnxq.core.version import __version__
    from onnxq.cpu import cpu_info, cpu_label

    info = cpu_info()
    return {
        "cpu": info["model"],
        "cpu_label": cpu_label(info),
        "isa_level": info["isa_level"],
        "detected_isa_level": info["detected_isa_level"],
        "logical_cpus": os.cpu_count(),
        "cpu_features": _kernels.cpu_features(),
        "qgemm_kernel": _kernels.qgemm_u8s8_kernels()[0],
        "fp8_kernel": _kernels.fp8_gemm_kernels()[0],
        "onnxruntime": ort.__version__,
        "onnxq": __version__,
        "loadavg_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "pinning": "off" if os.environ.get("ONNXQ_BENCH_PIN", "1") == "0" else "each configuration to `threads` CPUs",
    }


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchReport:
    env = environment()
    report = BenchReport(config=asdict(cfg), environment=env)
    combos = [(k, n, t) for (k, n) in cfg.kns for t in cfg.threads]
    for i, (k, n, threads) in enumerate(combos):
        with pinned(threads):
            _bench_combo(cfg, report, progress, f"[{i + 1}/{len(combos)}]", k, n, threads)
    report.environment["loadavg_end"] = os.getloadavg()
    return report


def _bench_combo(cfg: BenchConfig, report: BenchReport, progress: Callable[[str], None] | None, step: str, k: int,
                 n: int, threads: int) -> None:
    models = build_models(k, n)
    sessions = {v: bench_session(models[v], threads, onnxq=v.startswith("onnxq-")) for v in cfg.variants}
    claimed = {v: bool(ep.assigned_nodes(s).get(ep.EP_NAME)) for v, s in sessions.items() if v.startswith("onnxq-")}
    for m in cfg.ms:
        if progress:
            progress(f"{step} K={k} N={n} threads={threads} M={m}")
        x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
        bound = {v: BoundSession(s, x, n) for v, s in sessions.items()}
        times = timed_passes(bound, cfg)
        for v, ts in times.items():
            med = statistics.median(ts)
            report.results.append(Result(v, m, k, n, threads, med * 1e3, min(ts) * 1e3, 2 * m * n * k / med / 1e9,
                                         claimed.get(v)))


# ------------------------------------------------------------------------------------------------ reporting

RATIOS = (
    ("onnxq-int8", "ort-int8", "INT8: onnxq / ORT INT8"),
    ("onnxq-fp8w", "ort-fp8w", "FP8 w-only: onnxq / ORT same file"),
    ("onnxq-fp8w", "ort-fp32", "FP8 w-only: onnxq / ORT FP32"),
    ("onnxq-fp8", "ort-fp8", "FP8 w+a: onnxq / ORT same file"),
    ("onnxq-fp8", "ort-fp32", "FP8 w+a: onnxq / ORT FP32"),
)


def _index(report: BenchReport) -> dict[tuple[str, int, int, int, int], Result]:
    return {(r.variant, r.m, r.k, r.n, r.threads): r for r in report.results}


def ratios(report: BenchReport) -> list[dict[str, Any]]:
    """Speed-up (baseline time / onnxq time, medians of the same run) per shape, thread count and comparison."""
    idx = _index(report)
    out = []
    for r in report.results:
        for num, den, label in RATIOS:
            if r.variant != num or (den, r.m, r.k, r.n, r.threads) not in idx:
                continue
            base = idx[(den, r.m, r.k, r.n, r.threads)]
            out.append({"comparison": label, "m": r.m, "k": r.k, "n": r.n, "threads": r.threads,
                        "speedup": base.median_ms / r.median_ms, "onnxq_gflops": r.gflops,
                        "baseline_gflops": base.gflops})
    return out


def markdown(report: BenchReport) -> str:
    env = report.environment
    lines = [
        f"Machine: {env.get('cpu_label', env['cpu'])}; kernels {env['qgemm_kernel']} / "
        f"{env['fp8_kernel']}), onnxruntime {env['onnxruntime']}, onnxq {env['onnxq']}, {env['date']}. "
        f"Load average at start {tuple(round(x, 2) for x in env['loadavg_start'])}, "
        f"end {tuple(round(x, 2) for x in env.get('loadavg_end', ()))}.",
        "",
        "Dense-equivalent GFLOP/s (2·M·N·K / median time; INT8 counts as ops) per variant:",
        "",
    ]
    idx = _index(report)
    variants = [v for v in VARIANTS if any(r.variant == v for r in report.results)]
    lines.append("| threads | M | K×N | " + " | ".join(variants) + " |")
    lines.append("|---|---|---|" + "---|" * len(variants))
    keys = sorted({(r.threads, r.m, r.k, r.n) for r in report.results})
    for t, m, k, n in keys:
        cells = []
        for v in variants:
            r = idx.get((v, m, k, n, t))
            cells.append("" if r is None else f"{r.gflops:.0f}" + ("" if r.claimed in (None, True) else " (unclaimed)"))
        lines.append(f"| {t} | {m} | {k}×{n} | " + " | ".join(cells) + " |")
    lines += ["", "Speed-ups (baseline median time / onnxq median time, same run):", ""]
    rs = ratios(report)
    labels = [lbl for _, _, lbl in RATIOS if any(x["comparison"] == lbl for x in rs)]
    lines.append("| threads | M | K×N | " + " | ".join(labels) + " |")
    lines.append("|---|---|---|" + "---|" * len(labels))
    by = {(x["comparison"], x["threads"], x["m"], x["k"], x["n"]): x for x in rs}
    for t, m, k, n in keys:
        cells = [f"{by[(lbl, t, m, k, n)]['speedup']:.2f}×" if (lbl, t, m, k, n) in by else "" for lbl in labels]
        lines.append(f"| {t} | {m} | {k}×{n} | " + " | ".join(cells) + " |")
    # thread scaling of the onnxq variants
    scale_rows = []
    for v in variants:
        if not v.startswith("onnxq-"):
            continue
        for _, m, k, n in [key for key in keys if key[0] == 1]:
            a, b = idx.get((v, m, k, n, 1)), idx.get((v, m, k, n, 2))
            if a and b:
                scale_rows.append(f"| {v} | {m} | {k}×{n} | {a.median_ms / b.median_ms:.2f}× |")
    if scale_rows:
        lines += ["", "2 threads vs 1 thread (onnxq EP):", "", "| variant | M | K×N | speed-up |", "|---|---|---|---|"]
        lines += scale_rows
    return "\n".join(lines) + "\n"


def plot(report: BenchReport, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rs = [x for x in ratios(report)]
    labels = [lbl for _, _, lbl in RATIOS if any(x["comparison"] == lbl for x in rs)]
    threads = sorted({x["threads"] for x in rs})
    fig, axes = plt.subplots(1, len(threads), figsize=(7 * len(threads), 4.5), squeeze=False, sharey=True)
    shapes = sorted({(x["m"], x["k"], x["n"]) for x in rs})
    for ax, t in zip(axes[0], threads, strict=True):
        width = 0.8 / max(1, len(labels))
        for j, lbl in enumerate(labels):
            vals = []
            for s in shapes:
                hit = [x["speedup"] for x in rs if x["comparison"] == lbl and x["threads"] == t and
                       (x["m"], x["k"], x["n"]) == s]
                vals.append(hit[0] if hit else np.nan)
            ax.bar(np.arange(len(shapes)) + j * width, vals, width, label=lbl)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(shapes)) + 0.4 - width / 2)
        ax.set_xticklabels([f"M{m}\n{k}×{n}" for m, k, n in shapes], fontsize=7)
        ax.set_yscale("log")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}: speed-up of the onnxq EP (higher is better)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("baseline time / onnxq time")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(report: BenchReport, out_dir: Path, stem: str = "bench_matmul") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_text_atomic(out_dir / f"{stem}.json", json.dumps(report.to_dict(), indent=1) + "\n"),
             "markdown": write_text_atomic(out_dir / f"{stem}.md", markdown(report))}
    png = plot(report, out_dir / f"{stem}.png")
    if png is not None:
        paths["png"] = png
    return paths
