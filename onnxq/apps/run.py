"""`onnxq run`: run a model with the onnxq EP and with stock onnxruntime, side by side.

Shows what the EP claimed, how far its outputs are from onnxruntime's CPU provider on the same inputs, and a
quick latency ratio measured in the same process with interleaved runs. It is a smoke check and a demo, not
the benchmark: `tools/` holds the benchmarks with the full protocol.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from onnxq import ep
from onnxq.core.errors import OnnxqError, onnxruntime_errors
from onnxq.core.model_io import load_model

_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def make_inputs(sess: ort.InferenceSession, dims: Mapping[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for every model input; symbolic dims take their value from `dims` (default 1)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for i in sess.get_inputs():
        shape = []
        for d in i.shape:
            if isinstance(d, int) and d >= 0:
                shape.append(d)
            else:
                shape.append(int(dims.get(str(d), dims.get("*", 1))))
        t = _NP_TYPES.get(i.type)
        if t is None:
            raise OnnxqError(f"input '{i.name}' has type {i.type}; give inputs with --inputs FILE.npz")
        if np.issubdtype(t, np.floating):
            feeds[i.name] = rng.standard_normal(shape).astype(t)
        elif t is np.bool_:
            feeds[i.name] = rng.integers(0, 2, shape).astype(t)
        else:
            info = np.iinfo(t)
            feeds[i.name] = rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(t)
    return feeds


@dataclass
class RunReport:
    model: str
    ep_claims: dict[str, list[str]]
    output_max_abs_diff: dict[str, float]
    output_max_abs: dict[str, float]
    runs: int
    threads: int
    cpu_median_ms: float | None = None
    onnxq_median_ms: float | None = None
    speedup_vs_cpu: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_model(
    path: str | os.PathLike[str],
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    dims: Mapping[str, int] | None = None,
    runs: int = 20,
    threads: int = 1,
) -> RunReport:
    load_model(path, load_external_data=True)  # clear error for unreadable files before onnxruntime sees them
    try:
        return _run_model(path, inputs=inputs, dims=dims, runs=runs, threads=threads)
    except UnicodeDecodeError as e:  # before onnxruntime_errors (a ValueError); cannot hand such a name to Python
        raise OnnxqError(f"{path}: an input or output name or symbolic dimension is not valid UTF-8 ({e.reason} "
                         f"at byte {e.start}); rename it, e.g. with onnx.load / save") from e
    except onnxruntime_errors() as e:
        raise OnnxqError(f"{path}: onnxruntime: {str(e).strip().splitlines()[0]}") from e


def _run_model(path, *, inputs, dims, runs, threads) -> RunReport:  # type: ignore[no-untyped-def]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    cpu = ort.InferenceSession(os.fspath(path), sess_options=so, providers=["CPUExecutionProvider"])
    so2 = ort.SessionOptions()
    so2.log_severity_level = 3
    so2.intra_op_num_threads = threads
    so2.inter_op_num_threads = 1
    fast = ep.session(path, options=so2)
    feeds = dict(inputs) if inputs is not None else make_inputs(cpu, dims or {})
    ref = cpu.run(None, feeds)
    got = fast.run(None, feeds)
    names = [o.name for o in cpu.get_outputs()]
    diff, mags = {}, {}
    for n, a, b in zip(names, ref, got, strict=True):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        diff[n] = float(np.max(np.abs(a64 - b64))) if a64.size else 0.0
        mags[n] = float(np.max(np.abs(a64))) if a64.size else 0.0
    report = RunReport(model=str(path), ep_claims=ep.assigned_nodes(fast), output_max_abs_diff=diff,
                       output_max_abs=mags, runs=runs, threads=threads)
    if runs > 0:
        t_cpu, t_fast = [], []
        for _ in range(2):  # warm-up
            cpu.run(None, feeds)
            fast.run(None, feeds)
        for _ in range(runs):  # interleaved, so drift on a shared machine hits both alike
            t0 = time.perf_counter()
            cpu.run(None, feeds)
            t1 = time.perf_counter()
            fast.run(None, feeds)
            t2 = time.perf_counter()
            t_cpu.append(t1 - t0)
            t_fast.append(t2 - t1)
        report.cpu_median_ms = statistics.median(t_cpu) * 1e3
        report.onnxq_median_ms = statistics.median(t_fast) * 1e3
        report.speedup_vs_cpu = report.cpu_median_ms / report.onnxq_median_ms
    if not report.ep_claims.get(ep.EP_NAME):
        report.notes.append("the onnxq EP claimed nothing in this model; everything ran on the CPU provider")
    return report


def format_run_report(r: RunReport) -> str:
    claimed = r.ep_claims.get(ep.EP_NAME, [])
    total = sum(len(v) for v in r.ep_claims.values())
    lines = [f"model     {Path(r.model).name}", f"claimed   onnxq EP {len(claimed)} / {total} nodes"]
    for name in r.output_max_abs_diff:
        lines.append(
            f"output    {name}: max |onnxq - onnxruntime| = {r.output_max_abs_diff[name]:.3g}"
            f" (max |output| {r.output_max_abs[name]:.3g})"
        )
    if r.cpu_median_ms is not None:
        lines.append(
            f"latency   onnxruntime CPU {r.cpu_median_ms:.3f} ms, onnxq EP {r.onnxq_median_ms:.3f} ms "
            f"(median of {r.runs}, {r.threads} thread{'s' if r.threads > 1 else ''}, interleaved) "
            f"-> {r.speedup_vs_cpu:.2f}x"
        )
    lines += [f"note      {n}" for n in r.notes]
    return "\n".join(lines)
