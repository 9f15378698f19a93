"""Compare a float model with its quantized version on the same data: per-layer SQNR and cosine (layers =
the float model's node outputs that exist under the same name in the quantized one; the quantizer keeps
them), and per model output SQNR, mean row cosine (rows along the last axis: one embedding / logit vector
each) and max |error|. Streaming: a running sum per tensor, activations fetched in memory-bounded groups."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from onnxq.calibration.data import model_inputs, validate_feed
from onnxq.calibration.runner import TensorRunner
from onnxq.core.errors import OnnxqError, onnxruntime_errors
from onnxq.core.metrics import TensorStats
from onnxq.core.model_io import load_model

DEFAULT_LAYER_OPS = ("MatMul", "Gemm", "Conv", "Gather", "Softmax", "LayerNormalization", "Add")


@dataclass
class CompareReport:
    reference: str
    quantized: str
    samples: int
    outputs: dict[str, dict[str, float]]
    layers: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    runtime: str = ""  # what computed the quantized model's outputs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return _jsonable(d)

    @property
    def mean_output_row_cosine(self) -> float:
        vals = [o["row_cosine"] for o in self.outputs.values()]
        return float(np.mean(vals)) if vals else 1.0


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _as_model(m: onnx.ModelProto | str | os.PathLike[str]) -> tuple[onnx.ModelProto, str]:
    if isinstance(m, onnx.ModelProto):
        return m, "<model>"
    return load_model(m), os.fspath(m)


def layer_tensors(reference: onnx.ModelProto, quantized: onnx.ModelProto,
                  ops: Sequence[str] = DEFAULT_LAYER_OPS) -> dict[str, tuple[str, str]]:
    """tensor name -> (node name, op type) of the reference's node outputs that the quantized model also has."""
    qnames = {o for n in quantized.graph.node for o in n.output}
    outputs = {o.name for o in reference.graph.output}
    out = {}
    for n in reference.graph.node:
        if n.op_type in ops:
            for o in n.output:
                if o and o in qnames and o not in outputs:
                    out[o] = (n.name, n.op_type)
    return out


def compare_models(reference: onnx.ModelProto | str | os.PathLike[str],
                   quantized: onnx.ModelProto | str | os.PathLike[str],
                   feeds: Iterable[tuple[str, Mapping[str, Any]]], *, layers: bool = True,
                   layer_ops: Sequence[str] = DEFAULT_LAYER_OPS, memory_mb: float = 1024.0,
                   max_samples: int | None = None, progress: Callable[[int], None] | None = None,
                   runtime: str = "onnxq") -> CompareReport:
    """Per output and per layer statistics of `quantized` against `reference` on `feeds`.

    ``runtime="onnxq"`` (default): the quantized model's outputs come from a session with the onnxq EP, as users run
    it (its INT8 kernels are exact on every CPU; stock onnxruntime's AVX2 INT8 kernel saturates 16-bit pair sums and
    would charge that error to the quantizer). Layer statistics need intermediate tensors as extra outputs, which
    stock onnxruntime computes (the report says so). ``runtime="onnxruntime"``: stock onnxruntime computes everything.
    """
    if runtime not in ("onnxq", "onnxruntime"):
        raise OnnxqError(f"runtime must be 'onnxq' or 'onnxruntime', got '{runtime}'")
    ref, ref_name = _as_model(reference)
    qm, q_name = _as_model(quantized)
    ref_inputs = model_inputs(ref)
    q_in = {i.name for i in model_inputs(qm)}
    if {i.name for i in ref_inputs} != q_in:
        raise OnnxqError(f"the models take different inputs: {sorted(i.name for i in ref_inputs)} vs {sorted(q_in)}")
    out_names = [o.name for o in ref.graph.output]
    if out_names != [o.name for o in qm.graph.output]:
        raise OnnxqError(f"the models have different outputs: {out_names} vs {[o.name for o in qm.graph.output]}")
    lt = layer_tensors(ref, qm, layer_ops) if layers else {}
    names = out_names + list(lt)
    stats = {n: TensorStats() for n in names}
    samples = 0
    half = memory_mb / 2
    q_outputs, used = _output_session(qm, runtime)
    notes = []
    if lt and q_outputs is not None:
        notes.append("layer statistics: quantized model's intermediate tensors computed by stock onnxruntime")
    q_names = list(lt) if q_outputs is not None else names
    with TensorRunner(ref, names, memory_mb=half) as rr, TensorRunner(qm, q_names, memory_mb=half) as qr:
        for label, raw in feeds:
            if max_samples is not None and samples >= max_samples:
                break
            feed = validate_feed(label, raw, ref_inputs)
            try:
                q_out = dict(zip(out_names, q_outputs.run(out_names, dict(feed)), strict=True)) if q_outputs else {}
                for group in rr.groups(names, feed):
                    taps = [n for n in group if n not in q_out]
                    q_val = dict(q_out)
                    if taps:
                        q_val.update(zip(taps, qr.run(taps, feed), strict=True))
                    for n, a in zip(group, rr.run(group, feed), strict=True):
                        stats[n].update(a, q_val[n])
            except OnnxqError as e:
                raise OnnxqError(f"{label}: {e}") from e
            except onnxruntime_errors() as e:
                raise OnnxqError(f"{label}: {used} failed: {str(e).strip().splitlines()[0]}") from e
            samples += 1
            if progress:
                progress(1)
    if samples == 0:
        raise OnnxqError("comparison data is empty: give at least one feed")
    layer_rows = {}
    for n, (node, op) in lt.items():
        layer_rows[node if node not in layer_rows else f"{node}:{n}"] = {"tensor": n, "op": op, **stats[n].summary()}
    return CompareReport(ref_name, q_name, samples, {n: stats[n].summary() for n in out_names}, layer_rows,
                         notes=notes, runtime=used)


def _output_session(qm: onnx.ModelProto, runtime: str) -> tuple[Any, str]:
    """(session for the quantized model's outputs, label) with the onnxq EP, or (None, label) where stock onnxruntime
    computes them with the layer taps (runtime 'onnxruntime', or the EP cannot load here)."""
    import onnxruntime as ort

    stock = f"onnxruntime {ort.__version__} CPU"
    if runtime == "onnxruntime":
        return None, stock
    from onnxq.ep import measuring_session

    size = qm.ByteSize()
    if size >= 2**31 - 1:
        return None, stock + " (model over 2 GiB: the onnxq EP comparison needs it in memory)"
    try:
        sess, used = measuring_session(qm.SerializeToString(), use_ep=True)
    except onnxruntime_errors() as e:
        raise OnnxqError(f"onnxruntime cannot load the quantized model: {str(e).strip().splitlines()[0]}") from e
    return (sess, used) if used.startswith("onnxq") else (None, used)


def format_compare(r: CompareReport, top: int = 15) -> str:
    lines = [f"reference {r.reference}", f"quantized {r.quantized}", f"samples   {r.samples}"]
    if r.runtime:
        lines.append(f"runtime   {r.runtime} (quantized model's outputs)")
    for n, s in r.outputs.items():
        lines.append(f"output    {n}: SQNR {s['sqnr_db']} dB, cosine {s['cosine']}, mean row cosine "
                     f"{s['row_cosine']}, max |err| {s['max_abs_err']:.4g}"
                     + (f", {s['nonfinite']} non-finite values" if s["nonfinite"] else ""))
    if r.layers:
        worst = sorted(r.layers.items(), key=lambda kv: _sortkey(kv[1]["sqnr_db"]))[:top]
        lines.append(f"layers    {len(r.layers)} compared; lowest SQNR first (accumulated error up to that layer):")
        for name, s in worst:
            lines.append(f"  {s['sqnr_db']:>8} dB  cos {s['cosine']:.6f}  {s['op']:<18} {name}")
    lines += [f"note      {n}" for n in r.notes]
    return "\n".join(lines)


def _sortkey(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return -math.inf
