"""DeepSparse 1.8 as a benchmark peer: the graph forms it runs natively, and a timing worker in its own virtualenv.

DeepSparse pins onnx < 1.15, so it lives in a separate virtualenv and is driven through a subprocess. It does not
accelerate the Q/DQ form onnxq writes (`DequantizeLinear(int8 W) -> MatMul`): there it reported
`fraction_of_supported_ops: 0` (symbolic shapes) or ran the dequantized weight at ~0.1 dense-equivalent TOPS.
What it runs as sparse INT8 is the form SparseML's `ONNXToDeepsparse` export writes for a quantized linear layer:

    x -> QuantizeLinear (u8, per tensor) -> MatMulInteger(x_q, W_u8 [K, N], x_zp, 128) -> Cast(float) -> Mul(rescale)

with the int8 weight shifted to uint8 (+128, zero point 128) and the rescale `x_scale * w_scale`; onnxq's
per-output-channel weight scales become a [N] rescale vector, so the converted graph computes exactly what the Q/DQ
graph does (the int32 accumulator is the same). Static input shapes, IR 8, opset 13 (or the opset that introduced
the graph's newest op: 17 with LayerNormalization).

`deepsparse_form(model, "int8")` makes that form from an onnxq INT8 file (packed or dense-stored, any of onnxq's
sparse weights are expanded to dense initializers: DeepSparse finds the zeros itself); `"fp32"` makes the FP32
model with the same pruned weights (all Q/DQ removed), DeepSparse's unstructured-sparse FP32 path.
`DeepSparseWorker` compiles a file once in the DeepSparse virtualenv and times passes on request, so its passes
can be interleaved with in-process onnxruntime passes.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxq.core import block_sparse as bsf
from onnxq.core.errors import OnnxqError

FORMS = ("int8", "fp32")


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _expand_packed(model: onnx.ModelProto) -> None:
    """onnxq's compact block-sparse weights -> plain dense initializers (the zeros stay zeros)."""
    inits = {i.name: i for i in model.graph.initializer}
    keep, new_inits, drop = [], [], set()
    for node in model.graph.node:
        if node.domain != bsf.DOMAIN:
            keep.append(node)
            continue
        vals, rows, cols, shape, dense = (numpy_helper.to_array(inits[i]) for i in node.input)
        if inits[node.input[0]].data_type in bsf.FP8_TYPES:
            raise OnnxqError(f"{node.name}: FP8 block-sparse weights have no DeepSparse form")
        nb, kb, bk, bn = (int(v) for v in shape)
        bs = bsf.BlockSparse(vals, rows, cols, int(dense[0]), int(dense[1]), bk, bn)
        if (kb, nb) != (bs.k // bk, bs.n // bn):
            raise OnnxqError(f"{node.name}: inconsistent block-sparse shape")
        new_inits.append(numpy_helper.from_array(bs.to_dense(), node.output[0]))
        drop.update(node.input)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {i for n in keep for i in n.input}
    kept_inits = [i for i in model.graph.initializer if i.name not in drop or i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept_inits + new_inits)
    del model.functions[:]
    for i in reversed(range(len(model.opset_import))):
        if model.opset_import[i].domain == bsf.DOMAIN:
            del model.opset_import[i]


def _scalar_init(inits: Mapping[str, TensorProto], name: str) -> np.ndarray | None:
    t = inits.get(name)
    if t is None:
        return None
    a = numpy_helper.to_array(t)
    return a if a.size == 1 else None


def _per_tensor(w: np.ndarray, sw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Requantize per-column int8 weights to one scale (the largest), keeping exactly the same zeros."""
    st = np.float32(sw.max())
    wt = np.clip(np.rint(w.astype(np.float32) * sw.astype(np.float32) / st), -127, 127).astype(np.int16)
    lost = (wt == 0) & (w != 0)
    wt[lost] = np.sign(w[lost])
    return wt.astype(np.int8), np.array(st, np.float32)


def _to_int8_form(model: onnx.ModelProto, act_matmuls: bool = True, per_tensor_weights: bool = False) -> int:
    """DQ(Q(x)) x DQ(int8 W) -> MatMul  ==>  MatMulInteger(x_q, W+128) -> Cast -> Mul(x_scale * w_scale).
    Activation x activation MatMuls with per-tensor DQ on both sides become MatMulInteger -> Cast -> Mul too.
    Returns the number of MatMuls converted."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    new_inits: list[TensorProto] = []
    out_nodes: list[onnx.NodeProto] = []
    converted = 0
    for node in g.node:
        dqa, dqb = (prod.get(i) for i in node.input[:2]) if node.op_type == "MatMul" else (None, None)
        if dqa is None or dqb is None or dqa.op_type != "DequantizeLinear" or dqb.op_type != "DequantizeLinear":
            out_nodes.append(node)
            continue
        sa, za = _scalar_init(inits, dqa.input[1]), _scalar_init(inits, dqa.input[2]) if len(dqa.input) > 2 else None
        if sa is None or za is None or za.dtype not in (np.uint8, np.int8) or dqa.input[0] in inits:
            out_nodes.append(node)
            continue
        tag = node.name or node.output[0]
        if dqb.input[0] in inits:  # weight
            w = numpy_helper.to_array(inits[dqb.input[0]])
            sw = numpy_helper.to_array(inits[dqb.input[1]])
            zw = numpy_helper.to_array(inits[dqb.input[2]]) if len(dqb.input) > 2 else np.zeros(1, np.int8)
            axis = _attrs(dqb).get("axis", 1)
            if w.dtype != np.int8 or w.ndim != 2 or np.any(zw != 0) or not (
                    sw.size == 1 or (sw.shape == (w.shape[1],) and axis in (1, -1))):
                out_nodes.append(node)
                continue
            if per_tensor_weights and sw.size > 1:
                w, sw = _per_tensor(w, sw)
            b_name, zb_name = f"{tag}.w_u8", f"{tag}.w_zp"
            new_inits += [numpy_helper.from_array((w.astype(np.int16) + 128).astype(np.uint8), b_name),
                          numpy_helper.from_array(np.array(128, np.uint8), zb_name)]
            rescale = (sa.astype(np.float32).reshape(()) * sw.astype(np.float32)).astype(np.float32)
        else:  # activation x activation
            if not act_matmuls:
                out_nodes.append(node)
                continue
            sb = _scalar_init(inits, dqb.input[1])
            zb = _scalar_init(inits, dqb.input[2]) if len(dqb.input) > 2 else None
            if sb is None or zb is None or zb.dtype not in (np.uint8, np.int8):
                out_nodes.append(node)
                continue
            b_name, zb_name = dqb.input[0], dqb.input[2]
            rescale = np.array(sa.reshape(()) * sb.reshape(()), np.float32)
        new_inits.append(numpy_helper.from_array(rescale.reshape(rescale.shape if rescale.size > 1 else ()),
                                                 f"{tag}.rescale"))
        acc, accf = f"{tag}.acc_i32", f"{tag}.acc_f32"
        out_nodes += [
            helper.make_node("MatMulInteger", [dqa.input[0], b_name, dqa.input[2], zb_name], [acc], f"{tag}.mmi"),
            helper.make_node("Cast", [acc], [accf], f"{tag}.cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [accf, f"{tag}.rescale"], [node.output[0]], f"{tag}.rescale_mul"),
        ]
        converted += 1
    del g.node[:]
    g.node.extend(out_nodes)
    g.initializer.extend(new_inits)
    return converted


def _to_fp32_form(model: onnx.ModelProto) -> None:
    """Every DQ of an initializer -> a float initializer; every Q -> DQ pair on activations -> bypassed."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    rename: dict[str, str] = {}
    new_inits, keep = [], []
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
            s = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            z = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if len(node.input) > 2 else 0.0
            if s.size > 1:
                axis = _attrs(node).get("axis", 1) % q.ndim
                shape = [1] * q.ndim
                shape[axis] = s.size
                s, z = s.reshape(shape), np.reshape(z, shape) if np.size(z) > 1 else z
            new_inits.append(numpy_helper.from_array(((q - z) * s).astype(np.float32), node.output[0]))
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in prod and prod[node.input[0]].op_type == \
                "QuantizeLinear":
            rename[node.output[0]] = prod[node.input[0]].input[0]
            continue
        keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for o in g.output:
        if o.name in rename:
            raise OnnxqError(f"graph output {o.name} is a DequantizeLinear output")
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)


def _prune_dead(model: onnx.ModelProto) -> None:
    g = model.graph
    live = {o.name for o in g.output}
    keep = []
    for node in reversed(g.node):
        if any(o in live for o in node.output):
            keep.append(node)
            live.update(node.input)
    del g.node[:]
    g.node.extend(reversed(keep))
    inits = [i for i in g.initializer if i.name in live]
    del g.initializer[:]
    g.initializer.extend(inits)


@functools.cache
def _first_opsets() -> dict[str, int]:
    first: dict[str, int] = {}
    for s in onnx.defs.get_all_schemas_with_history():
        if s.domain in ("", "ai.onnx"):
            first[s.name] = min(first.get(s.name, 10**6), s.since_version)
    return first


def downgrade_ir(model: onnx.ModelProto) -> None:
    """IR 8 and the lowest opset the graph needs: 13, or the opset that introduced its newest op (17 for
    LayerNormalization). DeepSparse 1.8's onnx is 1.14 (opset <= 19); its onnxruntime rejected newer files."""
    first = _first_opsets()
    opset = max([13] + [first.get(n.op_type, 13) for n in model.graph.node])
    for n in model.graph.node:  # attributes added after that opset (all at their default in onnxq's files)
        for i in reversed(range(len(n.attribute))):
            a = n.attribute[i]
            if (n.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast") and a.name in
                    ("saturate", "block_size", "output_dtype")):
                if (a.name == "saturate" and a.i != 1) or (a.name == "block_size" and a.i != 0) or \
                        (a.name == "output_dtype" and a.i != 0):
                    raise OnnxqError(f"{n.name}: attribute {a.name}={a.i} has no opset-{opset} form")
                del n.attribute[i]
    model.ir_version = 8
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = opset
    for p in model.metadata_props:
        p.value = p.value[:1000]


def set_static_shapes(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> None:
    """Graph inputs get these shapes; stale intermediate shape annotations are dropped; shapes re-inferred."""
    for vi in model.graph.input:
        if vi.name in shapes:
            dims = vi.type.tensor_type.shape.dim
            if len(dims) != len(shapes[vi.name]):
                raise OnnxqError(f"input {vi.name}: rank {len(dims)}, shape {list(shapes[vi.name])} given")
            for d, v in zip(dims, shapes[vi.name], strict=True):
                d.ClearField("dim_param")
                d.dim_value = int(v)
    del model.graph.value_info[:]
    for vi in model.graph.output:
        for d in vi.type.tensor_type.shape.dim:
            d.ClearField("dim_param")
            d.ClearField("dim_value")
    inferred = onnx.shape_inference.infer_shapes(model)
    outs = {o.name: o for o in inferred.graph.output}
    for vi in model.graph.output:
        if vi.name in outs:
            vi.CopyFrom(outs[vi.name])


def deepsparse_form(model: onnx.ModelProto, form: str = "int8", shapes: Mapping[str, Sequence[int]] | None = None,
                    act_matmuls: bool = True, per_tensor_weights: bool = False) -> tuple[onnx.ModelProto, dict]:
    """(a copy of `model` in the form DeepSparse 1.8 accelerates, a small report). `form` is "int8" (SparseML's
    MatMulInteger form, same int8 weights) or "fp32" (same pruned weights dequantized, no Q/DQ);
    `act_matmuls=False` leaves activation x activation MatMuls (attention) in their Q/DQ form;
    `per_tensor_weights=True` requantizes per-channel weights to one scale per tensor (same zero pattern; no longer
    the same numbers): DeepSparse runs that form about 10 % faster than the exact per-channel rescale."""
    if form not in FORMS:
        raise OnnxqError(f"form must be one of {FORMS}, got {form!r}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _expand_packed(m)
    info: dict = {"form": form}
    if form == "int8":
        info["matmuls_converted"] = _to_int8_form(m, act_matmuls, per_tensor_weights)
    else:
        _to_fp32_form(m)
    _prune_dead(m)
    downgrade_ir(m)
    if shapes:
        set_static_shapes(m, shapes)
    counts: dict[str, int] = defaultdict(int)
    for n in m.graph.node:
        counts[n.op_type] += 1
    info["ops"] = dict(sorted(counts.items()))
    inits = {i.name: i for i in m.graph.initializer}
    zero = total = 0
    for n in m.graph.node:  # the zeros DeepSparse sees in the weights of the MatMul(Integer)s
        if n.op_type in ("MatMul", "MatMulInteger") and n.input[1] in inits:
            w = numpy_helper.to_array(inits[n.input[1]])
            zero += int(np.count_nonzero(w == (128 if n.op_type == "MatMulInteger" else 0)))
            total += w.size
    if total:
        info["weight_zero_fraction"] = zero / total
    return m, info


# ----------------------------------------------------------------------------------------- the timing worker

#: the timing worker, run by DeepSparse's own Python (its virtualenv): a script of its own, not a string; run with
#: ``-I`` so its directory (which holds onnxq's ``inspect.py``) is not put on ``sys.path``
WORKER_SCRIPT = Path(__file__).with_name("deepsparse_worker.py")


class DeepSparseWorker:
    """One DeepSparse engine compiled in a subprocess (`python` of the DeepSparse virtualenv); `timed_pass(reps)`
    runs `reps` samples there (each `repeat` runs, as the in-process timings do) and returns their median."""

    def __init__(self, python: str, model: onnx.ModelProto, feeds: Sequence[np.ndarray], threads: int,
                 min_pass_seconds: float = 0.02, reps: int = 5) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="onnxq-ds-")
        tmp = Path(self._tmp.name)
        path = tmp / "model.onnx"
        onnx.save_model(model, path)
        feeds_path = tmp / "feeds.npz"
        np.savez(feeds_path, **{f"in{i}": np.ascontiguousarray(a) for i, a in enumerate(feeds)})
        env = dict(os.environ, NM_DISABLE_ANALYTICS="1")
        self._stderr_path = tmp / "stderr.txt"
        with open(self._stderr_path, "w") as err:  # a file, not a pipe: DeepSparse logs freely to stderr
            self._proc = subprocess.Popen([python, "-I", str(WORKER_SCRIPT), str(path), str(feeds_path), str(threads),
                                           str(min_pass_seconds), str(reps)], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        self.info = self._read()
        with np.load(str(feeds_path) + ".out.npz") as z:
            self.outputs = [z[f"arr_{i}"] for i in range(len(z.files))]

    def _read(self) -> dict:
        assert self._proc.stdout is not None
        while True:
            line = self._proc.stdout.readline()
            if not line:
                self._proc.wait()
                err = self._stderr_path.read_text(errors="replace")
                self.close()
                tail = [ln for ln in err.strip().splitlines() if ln.strip()][-3:]
                raise OnnxqError("DeepSparse worker failed: " + (" | ".join(tail) or "no output")[:500])
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)

    def timed_pass(self, reps: int) -> float:
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"pass {reps}\n")
        self._proc.stdin.flush()
        return float(self._read()["median"])

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                if self._proc.stdin:
                    self._proc.stdin.write("quit\n")
                    self._proc.stdin.close()
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._tmp.cleanup()

    def __enter__(self) -> DeepSparseWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
