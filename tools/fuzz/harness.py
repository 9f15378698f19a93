"""Run one (possibly hostile) model through the onnxq EP, with stock onnxruntime as the oracle.

``check(data)`` opens an onnxq EP session and a CPU-only session on the same bytes, runs both on the same seeded
inputs when both open, and classifies what happened. What it may do: fail cleanly (an onnxruntime exception) at
session creation or at run time. What it must never do, and what makes ``check`` raise ``Finding``:

* an exception that is not onnxruntime's (a crash of the process is caught by the fuzzer / sanitizer instead);
* different results from stock onnxruntime on a model both accept: different output names, types, shapes,
  NaN/inf where onnxruntime has finite values or the reverse, or values further apart than a loose tolerance
  (5% of the output's range: quantization differences are far smaller; reading the wrong weights or memory is not);
* with ``strict=True`` also: the EP makes a model that onnxruntime accepts fail (it should decline a group it
  cannot run, not fail the session), or fails a run that onnxruntime completes.

Limits keep one check fast and bounded: initializer data over 64 MiB and models with external data are skipped
(declared dims are *not* limited: enormous declared shapes with little data are exactly what should fail
cleanly); inputs get small values for symbolic dims, and inputs over 2^16 elements are not run.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import re
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort

import onnxq.ep as ep
from onnxq.core.errors import onnxruntime_errors

MAX_DATA_BYTES = 64 << 20
MAX_INPUT_ELEMENTS = 1 << 16
TOLERANCE = 0.05  # of max |reference| per output

ORT_ERRORS = onnxruntime_errors()
_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
       "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(uint16)": np.uint16,
       "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}
_FP8 = {"tensor(float8e4m3fn)": onnx.TensorProto.FLOAT8E4M3FN, "tensor(float8e5m2)": onnx.TensorProto.FLOAT8E5M2,
        "tensor(float8e4m3fnuz)": onnx.TensorProto.FLOAT8E4M3FNUZ,
        "tensor(float8e5m2fnuz)": onnx.TensorProto.FLOAT8E5M2FNUZ}

_FP8_NP = {"tensor(float8e4m3fn)": ml_dtypes.float8_e4m3fn, "tensor(float8e5m2)": ml_dtypes.float8_e5m2,
           "tensor(float8e4m3fnuz)": ml_dtypes.float8_e4m3fnuz, "tensor(float8e5m2fnuz)": ml_dtypes.float8_e5m2fnuz}


class Finding(AssertionError):
    """The EP did something it must never do with this model (see the module docstring)."""


@dataclass
class Outcome:
    label: str                      # what happened, e.g. "ran", "both-reject", "skip:external-data"
    claimed: tuple[str, ...] = ()   # op types the onnxq EP took
    ep_error: str = ""
    cpu_error: str = ""
    notes: list[str] = field(default_factory=list)

    def signature(self) -> str:
        """A coarse fingerprint of the behaviour (for the fuzzer's novelty feedback)."""
        return "|".join([self.label, ",".join(self.claimed), _shape_of(self.ep_error), _shape_of(self.cpu_error)])


def _shape_of(msg: str) -> str:
    return re.sub(r"[0-9]+", "#", re.sub(r"'[^']*'", "'_'", msg))[:60]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _data_bytes(model: onnx.ModelProto) -> tuple[int, bool]:
    total, external = 0, False

    def tensor(t: onnx.TensorProto) -> None:
        nonlocal total, external
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            external = True
        total += t.ByteSize()

    def graph(g: onnx.GraphProto) -> None:
        for t in g.initializer:
            tensor(t)
        for s in g.sparse_initializer:
            tensor(s.values)
            tensor(s.indices)
        for n in g.node:
            for a in n.attribute:
                if a.HasField("t"):
                    tensor(a.t)
                if a.HasField("g"):
                    graph(a.g)
                for sg in a.graphs:
                    graph(sg)

    graph(model.graph)
    for f in model.functions:
        for n in f.node:
            for a in n.attribute:
                if a.HasField("t"):
                    tensor(a.t)
    return total, external


_MATERIALIZED_ELEMENTS = 1 << 26
_SHAPE_INPUTS = {"ConstantOfShape": (0,), "Expand": (1,), "Tile": (1,), "BlockSparseExpand": (3, 4),
                 "BlockSparseExpandE4M3FN": (3, 4), "BlockSparseExpandE5M2": (3, 4)}


def _declares_huge_tensor(model: onnx.ModelProto) -> bool:
    """A shape-like constant that makes onnxruntime itself materialize a huge tensor (a block-sparse weight's
    dense size, ConstantOfShape, Expand): such inputs only measure how the machine runs out of memory."""
    inits = {t.name: t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT64}
    for n in model.graph.node:
        for i in _SHAPE_INPUTS.get(n.op_type, ()):
            if i < len(n.input) and n.input[i] in inits:
                try:
                    dims = onnx.numpy_helper.to_array(inits[n.input[i]]).ravel()
                except Exception:
                    continue
                if dims.size and math.prod(abs(int(d)) for d in dims[:8]) > _MATERIALIZED_ELEMENTS:
                    return True
    return False


def _crashes_onnxruntime(model: onnx.ModelProto) -> bool:
    """Models that crash stock onnxruntime 1.32 itself (a segfault while the session is created, with or without the
    onnxq EP), so there is nothing to test and the fuzzing process would die: a LayerNormalization whose optional
    input is given as an empty name (found by this fuzzer; tools/fuzz/ort_crashes/)."""
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    return any(n.op_type == "LayerNormalization" and "" in list(n.input)[1:] for n in nodes)


def _altered_onnxq_functions(model: onnx.ModelProto) -> list[str]:
    """com.onnxq functions whose body differs from the canonical one. The onnxq EP claims such a node by its name
    and computes the canonical expansion; stock onnxruntime runs the body in the file. (A known limitation: the EP
    API does not show a plugin EP the function body, so it cannot check it.) Results are not compared then."""
    from onnxq.core import block_sparse as sparse_format

    canonical = {f.name: f for f in sparse_format.expand_functions(21)}
    out = []
    for f in model.functions:
        ref = canonical.get(f.name) if f.domain == sparse_format.DOMAIN else None
        if ref is not None and ([_node_key(n) for n in f.node] != [_node_key(n) for n in ref.node]
                                or list(f.input) != list(ref.input) or list(f.output) != list(ref.output)):
            out.append(f.name)
    return out


def _node_key(n: onnx.NodeProto) -> bytes:
    c = onnx.NodeProto()
    c.CopyFrom(n)
    c.ClearField("name")
    return c.SerializeToString(deterministic=True)


def _options() -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = 4            # fatal only: hostile models make onnxruntime log a lot
    so.enable_cpu_mem_arena = False      # every tensor its own allocation: AddressSanitizer sees overruns
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return so


def make_feeds(sess: ort.InferenceSession, seed: int) -> dict[str, object] | str:
    """Seeded inputs for every session input, or the reason no run is attempted."""
    rng = np.random.default_rng(seed)
    dims: dict[str, int] = {}
    feeds: dict[str, object] = {}
    for i in sess.get_inputs():
        shape = []
        for d in i.shape:
            if isinstance(d, int) and d >= 0:
                shape.append(d)
            else:
                key = str(d)
                if key not in dims:
                    dims[key] = int(rng.choice([1, 2, 3]))
                shape.append(dims[key])
        if math.prod(shape) > MAX_INPUT_ELEMENTS:
            return "skip:input-too-big"
        if i.type in _FP8:
            raw = np.asarray(rng.integers(0, 256, shape, dtype=np.uint8))
            feeds[i.name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, _FP8[i.type])
            continue
        t = _NP.get(i.type)
        if t is None:
            return "skip:input-type"
        if np.issubdtype(t, np.floating):
            feeds[i.name] = np.asarray(rng.standard_normal(shape) * 2, dtype=t)  # rank 0 too
        elif t is np.bool_:
            feeds[i.name] = np.asarray(rng.integers(0, 2, shape), dtype=t)
        else:
            info = np.iinfo(t)
            feeds[i.name] = np.asarray(rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape), dtype=t)
    return feeds


def run_onnxruntime_alone(data: bytes) -> None:
    """What check() asks of stock onnxruntime, without the EP: a session, the seeded feeds, one run; errors are
    swallowed. For the fuzz supervisor, which calls it in a fresh process to see whether a crash is onnxruntime's."""
    try:
        sess = ort.InferenceSession(data, sess_options=_options(), providers=["CPUExecutionProvider"],
                                    enable_fallback=0)
        feeds = make_feeds(sess, seed_of(data))
        if not isinstance(feeds, str):
            sess.run(None, feeds)
    except Exception:  # noqa: BLE001 - only a crash of the process matters here
        pass


def _run(sess: ort.InferenceSession, names: list[str], feeds: dict[str, object]) -> list[np.ndarray]:
    """Run with OrtValues in and out, so outputs numpy has no type for (FP8) come back as their raw bytes."""
    values = {k: v if isinstance(v, ort.OrtValue) else ort.OrtValue.ortvalue_from_numpy(v) for k, v in feeds.items()}
    out = []
    for v in sess.run_with_ort_values(names, values):
        if not v.is_tensor():
            out.append(np.asarray([v.data_type()], dtype=object))
        elif v.data_type() in _NP:
            out.append(v.numpy())
        elif v.data_type() in _FP8:
            shape = v.shape()
            n = math.prod(shape)
            raw = (ctypes.c_uint8 * n).from_address(v.data_ptr()) if n else b""
            fp8 = np.frombuffer(bytes(raw), np.uint8).reshape(shape).view(_FP8_NP[v.data_type()])
            out.append(fp8.astype(np.float32))
        else:
            out.append(np.asarray([v.data_type(), *v.shape()], dtype=object))
    return out


def _compare(names: list[str], ref: list, got: list) -> None:  # type: ignore[type-arg]
    for name, r, g in zip(names, ref, got, strict=True):
        r, g = np.asarray(r), np.asarray(g)
        if r.dtype != g.dtype or r.shape != g.shape:
            raise Finding(f"output '{name}': onnxruntime gives {r.dtype}{list(r.shape)}, "
                          f"the onnxq EP {g.dtype}{list(g.shape)}")
        if r.size == 0:
            continue
        if not (np.issubdtype(r.dtype, np.floating) or np.issubdtype(r.dtype, np.integer)):
            if not np.array_equal(r, g):
                raise Finding(f"output '{name}' differs")
            continue
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        fr, fg = np.isfinite(r64), np.isfinite(g64)
        if np.any(fr & ~fg):
            raise Finding(f"output '{name}': the onnxq EP gives {int(np.sum(fr & ~fg))} NaN/inf where onnxruntime "
                          "is finite")
        if np.any(~fr & fg):
            raise Finding(f"output '{name}': the onnxq EP gives {int(np.sum(~fr & fg))} finite values where "
                          "onnxruntime gives NaN/inf")
        both = fr & fg
        if not np.any(both):
            continue
        scale = float(np.max(np.abs(r64[both])))
        err = float(np.max(np.abs(r64[both] - g64[both])))
        if err > TOLERANCE * scale + 1e-4:
            raise Finding(f"output '{name}': max |onnxq - onnxruntime| = {err:.4g} with max |output| {scale:.4g}")


def seed_of(data: bytes) -> int:
    """The seed of an input's feeds (make_feeds): a function of its bytes, so a replay feeds the same values."""
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "little")


def _bias_overflows_int32(model: onnx.ModelProto) -> bool:
    """A constant float bias (an Add operand or Gemm's C) holding NaN / inf or a value past 1e7: quantized to int32
    by onnxruntime's MatMulAddFusion with any realistic scale product, it saturates."""
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        operands = node.input[2:3] if node.op_type == "Gemm" else node.input if node.op_type == "Add" else []
        for name in operands:
            t = inits.get(name)
            if t is None or t.data_type != onnx.TensorProto.FLOAT:
                continue
            try:
                v = onnx.numpy_helper.to_array(t)
            except Exception:
                continue
            if v.size and (not np.all(np.isfinite(v)) or float(np.max(np.abs(v))) > 1e7):
                return True
    return False


def check(data: bytes, *, strict: bool = False, differential: bool = True, ep_threads: int = 2) -> Outcome:
    """Classify one model; raises Finding for anything the EP must never do (see the module docstring)."""
    seed = seed_of(data)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
        parsed = True
    except Exception:
        parsed = False
    if parsed:
        size, external = _data_bytes(model)
        if external:
            return Outcome("skip:external-data")
        if size > MAX_DATA_BYTES:
            return Outcome("skip:too-big")
        if _declares_huge_tensor(model):
            return Outcome("skip:declares-huge-tensor")
        if _crashes_onnxruntime(model):
            return Outcome("skip:crashes-onnxruntime")

    try:
        # ep.session disables onnxruntime's Python fallback (which would retry a failed EP session or run on the
        # CPU provider alone, hiding exactly what is tested here)
        fast = ep.session(data, options=_options(), provider_options={"num_threads": str(ep_threads)})
    except ORT_ERRORS as e:
        fast, ep_error = None, _first_line(e)
    else:
        ep_error = ""
    cpu = None
    cpu_error = ""
    if differential or fast is None:
        try:
            cpu = ort.InferenceSession(data, sess_options=_options(), providers=["CPUExecutionProvider"],
                                       enable_fallback=0)
        except ORT_ERRORS as e:
            cpu_error = _first_line(e)
    if fast is None:
        if cpu is None and differential:
            return Outcome("both-reject", ep_error=ep_error, cpu_error=cpu_error)
        if strict and cpu is not None:
            raise Finding(f"onnxruntime accepts the model, the onnxq EP session fails: {ep_error}")
        return Outcome("ep-only-reject", ep_error=ep_error)

    claimed = tuple(sorted({n.split(":", 1)[0] for n in ep.assigned_nodes(fast).get(ep.EP_NAME, [])}))
    try:
        feeds = make_feeds(fast, seed)
        names = [o.name for o in fast.get_outputs()]
        cpu_names = [o.name for o in cpu.get_outputs()] if cpu is not None else names
    except UnicodeDecodeError:
        # an input/output name or symbolic dim that is not UTF-8: the session opened (what is tested here), but
        # onnxruntime's Python API cannot hand the name to Python, so there is nothing to feed (found by the fuzzer)
        return Outcome("skip:io-name-not-utf8", claimed, ep_error, cpu_error)
    if isinstance(feeds, str):
        return Outcome(feeds, claimed, ep_error, cpu_error)
    try:
        got = _run(fast, names, feeds)
        ep_run_error = ""
    except ORT_ERRORS as e:
        got, ep_run_error = None, _first_line(e)
    if cpu is None:
        return Outcome("cpu-only-reject" if differential else ("ran" if got is not None else "ep-run-error"),
                       claimed, ep_run_error, cpu_error)
    if cpu_names != names:
        raise Finding(f"output names differ: onnxruntime {cpu_names}, onnxq EP {names}")
    try:
        ref = _run(cpu, names, feeds)
        cpu_run_error = ""
    except ORT_ERRORS as e:
        ref, cpu_run_error = None, _first_line(e)
    if got is None and ref is None:
        return Outcome("both-run-error", claimed, ep_run_error, cpu_run_error)
    if got is None:
        if strict:
            raise Finding(f"onnxruntime runs the model, the onnxq EP run fails: {ep_run_error}")
        return Outcome("ep-only-run-error", claimed, ep_run_error)
    if ref is None:
        return Outcome("cpu-only-run-error", claimed, cpu_error=cpu_run_error)
    altered = _altered_onnxq_functions(model) if parsed else []
    if altered:
        return Outcome("ran:function-body-altered", claimed, notes=altered)
    try:
        _compare(names, ref, got)
    except Finding as first:
        # onnxruntime's own graph optimizations are not always exact (ReluQuantFusion drops a Relu before an FP8
        # QuantizeLinear with zero point 0, which is only right for uint8): judge against the unoptimized model,
        # which is the ONNX semantics, before calling it the EP's fault
        so = _options()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            plain = _run(ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"],
                                              enable_fallback=0), names, feeds)
        except ORT_ERRORS:
            raise first from None
        try:
            _compare(names, plain, got)
        except Finding:
            # onnxruntime's MatMulAddFusion rewrites Q/DQ MatMul + Add(float bias) into Gemm with the bias quantized
            # to int32; a bias that does not fit (NaN, inf, huge) becomes INT32_MIN / MAX, and what is computed then
            # depends on how onnxruntime partitions and fuses the rest (its QGemm wraps around in int32, its float
            # Gemm does not): no run of stock onnxruntime is the reference. The EP declines such a bias itself.
            if _bias_overflows_int32(model) if parsed else False:
                return Outcome("ran:onnxruntime-bias-overflows-int32", claimed, notes=[str(first)])
            raise
        # on CPUs where stock onnxruntime's fused INT8 kernel saturates (AVX2 vpmaddubsw), that is the usual reason
        from onnxq.cpu import onnxruntime_int8_saturates

        saturates = onnxruntime_int8_saturates()
        label = "ran:onnxruntime-int8-saturates" if saturates else "ran:onnxruntime-optimizer-differs"
        return Outcome(label, claimed, notes=[str(first)])
    return Outcome("ran", claimed)
