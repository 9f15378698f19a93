"""Structure-aware mutations of ONNX models for the EP fuzzer.

``mutate(data, seed)`` parses a model, applies 1-4 random edits that keep it a parseable ModelProto (but usually not
a valid model), and serializes it again; the same (data, seed) always gives the same result. The edits are what a
hostile or broken file can do to the patterns the onnxq EP claims:

* initializers: dims (rank changes, count-preserving reshapes, 0, -1, enormous), dtype, values (NaN, inf, 0,
  negative, denormal, huge; integers out of range: -1, the dim itself, INT32/INT64 limits — block indices of
  sparse formats included), raw data truncated or extended;
* node attributes (axis, block_size, transA/B, alpha/beta, saturate, output_dtype, any int attribute), added,
  removed, retyped;
* node inputs and outputs (rewired to another tensor, dropped, emptied, swapped, duplicated), op types and domains,
  nodes duplicated (extra consumers of a DQ, intermediate tensors as graph outputs) or removed;
* graph inputs / outputs / value_info: element types and shapes (symbolic, 0, enormous, rank changes, no shape);
* opset and IR versions.

Nodes inside subgraphs and model-local functions (custom-domain ops with a function body) are mutated too, so new
seed formats need no new code here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

# element types worth trying where a Q/DQ pattern expects another one
DTYPES = [TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, TensorProto.INT64,
          TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16, TensorProto.FLOAT8E4M3FN,
          TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E4M3FNUZ, TensorProto.INT16, TensorProto.UINT16,
          TensorProto.INT4, TensorProto.UINT4, TensorProto.BOOL]
BIG_DIMS = [2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**62]
OP_TYPES = ["MatMul", "Gemm", "QuantizeLinear", "DequantizeLinear", "Add", "MatMulInteger", "QLinearMatMul",
            "Identity", "Transpose", "Relu", "Cast"]
INT_ATTRS = ["axis", "block_size", "transA", "transB", "saturate", "output_dtype", "perm", "to"]
INT_VALUES = [-(2**63), -(2**31), -3, -2, -1, 0, 1, 2, 3, 4, 7, 16, 2**31 - 1, 2**31, 2**63 - 1]
FLOAT_VALUES = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -1.0, 1e-45, 1e-38, 3e38, 1.0, 0.5, 1e-8]
OPSETS = [1, 7, 10, 13, 18, 19, 20, 21, 22, 23, 24, 25, 99]
IR_VERSIONS = [1, 3, 7, 8, 9, 10, 11, 12, 13, 99]


# ---------------------------------------------------------------------------------------------- walking


def _graphs(model: onnx.ModelProto) -> list[onnx.GraphProto]:
    out = []

    def walk(g: onnx.GraphProto) -> None:
        out.append(g)
        for n in g.node:
            for a in n.attribute:
                if a.type == AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        walk(sg)

    walk(model.graph)
    return out


def _node_lists(model: onnx.ModelProto) -> list:  # type: ignore[type-arg]
    """Every repeated NodeProto field: the graphs (and subgraphs) and the model-local functions."""
    return [g.node for g in _graphs(model)] + [f.node for f in model.functions]


def _nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for lst in _node_lists(model) for n in lst]


def _tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    out = [t for g in _graphs(model) for t in g.initializer]
    for n in _nodes(model):
        for a in n.attribute:
            if a.type == AttributeProto.TENSOR:
                out.append(a.t)
    return out


def _value_names(model: onnx.ModelProto) -> list[str]:
    names: dict[str, None] = {}
    for g in _graphs(model):
        for v in list(g.input) + list(g.output) + list(g.value_info):
            names[v.name] = None
        for t in g.initializer:
            names[t.name] = None
    for n in _nodes(model):
        for x in list(n.input) + list(n.output):
            if x:
                names[x] = None
    return list(names)


def _choice(rng: random.Random, seq):  # type: ignore[no-untyped-def]
    if not seq:
        raise _Skip
    return seq[rng.randrange(len(seq))]


class _Skip(Exception):
    """This mutation does not apply to this model; another is tried."""


# ---------------------------------------------------------------------------------------------- tensors


def _as_array(t: onnx.TensorProto) -> np.ndarray:
    if t.data_location == TensorProto.EXTERNAL:
        raise _Skip
    try:
        return numpy_helper.to_array(t)
    except Exception as e:
        raise _Skip from e


def _set_array(t: onnx.TensorProto, arr: np.ndarray) -> None:
    new = numpy_helper.from_array(arr, t.name)
    if new.data_type != t.data_type:  # keep exotic types (FP8, INT4) as raw bytes of the original type
        raw = arr.view(np.uint8).tobytes() if arr.dtype.itemsize == 1 else arr.tobytes()
        new = helper.make_tensor(t.name, t.data_type, list(arr.shape), raw, raw=True)
    t.CopyFrom(new)


def m_tensor_values(model: onnx.ModelProto, rng: random.Random) -> None:
    t = _choice(rng, _tensors(model))
    arr = _as_array(t).copy()
    if arr.size == 0:
        raise _Skip
    flat = arr.reshape(-1)
    idx = [rng.randrange(flat.size) for _ in range(rng.choice([1, 1, 2, max(1, flat.size // 2)]))]
    if np.issubdtype(arr.dtype, np.floating) or "float" in arr.dtype.name:  # ml_dtypes FP8 / bfloat16 too
        vals = [rng.choice(FLOAT_VALUES) for _ in idx]
        try:
            flat[idx] = np.asarray(vals, np.float32).astype(arr.dtype)
        except (TypeError, ValueError, OverflowError) as e:
            raise _Skip from e
    elif np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        # out-of-range indices and extremes of the type (block indices, zero points, quantized biases)
        dims = [int(d) for d in t.dims] or [1]
        cands = [-1, 0, 1, max(dims), max(dims) + 1, sum(dims), 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]
        info = np.iinfo(arr.dtype) if arr.dtype != np.bool_ else None
        for i in idx:
            v = rng.choice(cands)
            if info is not None:
                v = int(np.clip(v, info.min, info.max))
            flat[i] = v
    else:
        raise _Skip
    _set_array(t, arr)


def m_tensor_dims(model: onnx.ModelProto, rng: random.Random) -> None:
    t = _choice(rng, _tensors(model))
    dims = [int(d) for d in t.dims]
    count = math.prod(dims)
    kind = rng.randrange(6)
    if kind == 0 and count > 0:  # a count-preserving reshape: the data stays consistent with the dims
        choices = [[count], [1, count], [count, 1], list(reversed(dims)), [1, *dims], [*dims, 1], []]
        if count == 1:
            choices.append([1, 1])
        new = rng.choice(choices)
        if math.prod(new) != count:
            raise _Skip
    elif kind == 1 and dims:
        new = list(dims)
        new[rng.randrange(len(new))] = rng.choice([0, -1, 1, 2, rng.choice(BIG_DIMS)])
    elif kind == 2 and dims:
        new = dims[:-1]
    elif kind == 3:
        new = [*dims, rng.choice([1, 2, 3])]
    elif kind == 4 and dims:
        new = list(dims)
        i = rng.randrange(len(new))
        new[i] = max(0, new[i] + rng.choice([-1, 1]))
    else:
        new = [rng.choice([0, 1, 4, 2**40])]
    del t.dims[:]
    t.dims.extend(new)


def m_tensor_dtype(model: onnx.ModelProto, rng: random.Random) -> None:
    t = _choice(rng, _tensors(model))
    if rng.random() < 0.5 and t.HasField("raw_data"):
        t.data_type = rng.choice(DTYPES)  # same bytes, another meaning (sizes may no longer match)
        return
    arr = _as_array(t)
    target = rng.choice([np.float32, np.int8, np.uint8, np.int32, np.int64, np.float16, np.float64])
    try:
        with np.errstate(all="ignore"):
            _set_array_new_type(t, arr.astype(np.float64).astype(target))
    except (TypeError, ValueError) as e:
        raise _Skip from e


def _set_array_new_type(t: onnx.TensorProto, arr: np.ndarray) -> None:
    t.CopyFrom(numpy_helper.from_array(arr, t.name))


def m_tensor_bytes(model: onnx.ModelProto, rng: random.Random) -> None:
    t = _choice(rng, [t for t in _tensors(model) if t.HasField("raw_data")])
    raw = bytearray(t.raw_data)
    kind = rng.randrange(3)
    if kind == 0 and raw:
        del raw[rng.randrange(len(raw)):]
    elif kind == 1:
        raw += bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 4, 64])))
    elif raw:
        for _ in range(rng.choice([1, 2, 8])):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    t.raw_data = bytes(raw)


# ---------------------------------------------------------------------------------------------- nodes


def m_attribute(model: onnx.ModelProto, rng: random.Random) -> None:
    n = _choice(rng, _nodes(model))
    kind = rng.randrange(4)
    if kind == 0 and n.attribute:
        del n.attribute[rng.randrange(len(n.attribute))]
        return
    if kind == 1 and n.attribute:
        a = n.attribute[rng.randrange(len(n.attribute))]
        if a.type == AttributeProto.INT:
            a.i = rng.choice(INT_VALUES)
        elif a.type == AttributeProto.FLOAT:
            a.f = rng.choice(FLOAT_VALUES)
        elif a.type == AttributeProto.INTS and a.ints:
            a.ints[rng.randrange(len(a.ints))] = rng.choice(INT_VALUES)
        else:  # retype it
            name = a.name
            a.Clear()
            a.name, a.type, a.f = name, AttributeProto.FLOAT, 1.0
        return
    name = rng.choice(INT_ATTRS + ["alpha", "beta", "precision"])
    for i, a in enumerate(n.attribute):
        if a.name == name:
            del n.attribute[i]
            break
    if name in ("alpha", "beta"):
        n.attribute.append(helper.make_attribute(name, rng.choice(FLOAT_VALUES)))
    elif name == "perm":
        perm = [rng.choice([0, 1, 2, -1, 5]) for _ in range(1 + rng.randrange(4))]
        n.attribute.append(helper.make_attribute(name, perm))
    elif name in ("output_dtype", "precision", "to"):
        n.attribute.append(helper.make_attribute(name, rng.choice(DTYPES + [0, 999])))
    else:
        n.attribute.append(helper.make_attribute(name, rng.choice(INT_VALUES)))


def m_rewire(model: onnx.ModelProto, rng: random.Random) -> None:
    n = _choice(rng, _nodes(model))
    names = _value_names(model)
    kind = rng.randrange(6)
    if kind == 0 and n.input:
        n.input[rng.randrange(len(n.input))] = rng.choice(names)
    elif kind == 1 and n.input:
        n.input[rng.randrange(len(n.input))] = ""
    elif kind == 2 and n.input:
        del n.input[-1]
    elif kind == 3:
        n.input.append(rng.choice(names + [""]))
    elif kind == 4 and len(n.input) >= 2:
        i, j = rng.sample(range(len(n.input)), 2)
        n.input[i], n.input[j] = n.input[j], n.input[i]
    elif n.output:
        n.output[rng.randrange(len(n.output))] = rng.choice(names)
    else:
        raise _Skip


def m_op_type(model: onnx.ModelProto, rng: random.Random) -> None:
    n = _choice(rng, _nodes(model))
    if rng.random() < 0.8:
        n.op_type = rng.choice(OP_TYPES)
    else:
        n.domain = rng.choice(["", "ai.onnx", "com.microsoft", "onnxq", "ai.onnx.ml"])


def m_duplicate_node(model: onnx.ModelProto, rng: random.Random) -> None:
    """A second copy of a node with fresh outputs that become graph outputs: shared DQs, extra consumers."""
    g = model.graph
    if not g.node:
        raise _Skip
    n = g.node[rng.randrange(len(g.node))]
    dup = onnx.NodeProto()
    dup.CopyFrom(n)
    dup.name = (n.name or n.op_type) + "_dup"
    del dup.output[:]
    for i, o in enumerate(n.output):
        new = f"{o}_dup{i}"
        dup.output.append(new)
        g.output.append(helper.make_empty_tensor_value_info(new))
    g.node.append(dup)


def m_remove_node(model: onnx.ModelProto, rng: random.Random) -> None:
    lst = _choice(rng, [x for x in _node_lists(model) if len(x)])
    del lst[rng.randrange(len(lst))]


def m_expose_output(model: onnx.ModelProto, rng: random.Random) -> None:
    """An intermediate tensor becomes a graph output too (or a graph output is dropped)."""
    g = model.graph
    if rng.random() < 0.8:
        outs = [o for n in g.node for o in n.output if o and o not in {v.name for v in g.output}]
        g.output.append(helper.make_empty_tensor_value_info(_choice(rng, outs)))
    elif len(g.output) > 1:
        del g.output[rng.randrange(len(g.output))]
    else:
        raise _Skip


# ---------------------------------------------------------------------------------------------- graph I/O


def _dim_edit(shape: onnx.TensorShapeProto, rng: random.Random) -> None:
    kind = rng.randrange(4)
    if kind == 0 and shape.dim:
        d = shape.dim[rng.randrange(len(shape.dim))]
        choice = rng.randrange(3)
        if choice == 0:
            d.dim_param = rng.choice(["batch", "seq", "m", "n", "k", "other"])
        else:
            d.dim_value = rng.choice([0, 1, 2, 3, 8, *BIG_DIMS]) if choice == 1 else -1
    elif kind == 1 and shape.dim:
        del shape.dim[rng.randrange(len(shape.dim))]
    elif kind == 2:
        shape.dim.add().dim_value = rng.choice([1, 2, 3])
    else:
        shape.dim.add().dim_param = "extra"


def m_value_info(model: onnx.ModelProto, rng: random.Random) -> None:
    g = model.graph
    pools = [p for p in (g.input, g.output, g.value_info) if len(p)]
    kind = rng.randrange(4)
    if kind == 0:  # a shape or type claim about an intermediate tensor that may be a lie
        name = _choice(rng, [o for n in g.node for o in n.output if o])
        dims = [rng.choice([1, 2, "d", 0, 2**40]) for _ in range(rng.randrange(5))]
        g.value_info.append(helper.make_tensor_value_info(name, rng.choice(DTYPES), dims))
        return
    v = _choice(rng, [v for p in pools for v in p])
    tt = v.type.tensor_type
    if kind == 1:
        tt.elem_type = rng.choice(DTYPES + [0])
    elif kind == 2:
        tt.ClearField("shape")
    else:
        _dim_edit(tt.shape, rng)


def m_opset(model: onnx.ModelProto, rng: random.Random) -> None:
    if rng.random() < 0.7:
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = rng.choice(OPSETS)
    else:
        model.ir_version = rng.choice(IR_VERSIONS)


MUTATIONS: list[tuple[Callable[[onnx.ModelProto, random.Random], None], int]] = [
    (m_tensor_values, 5), (m_tensor_dims, 5), (m_tensor_dtype, 3), (m_tensor_bytes, 2), (m_attribute, 5),
    (m_rewire, 4), (m_op_type, 2), (m_duplicate_node, 3), (m_remove_node, 1), (m_expose_output, 3),
    (m_value_info, 4), (m_opset, 1),
]
_FUNCS = [f for f, _ in MUTATIONS]
_WEIGHTS = [w for _, w in MUTATIONS]


def mutate_model(model: onnx.ModelProto, rng: random.Random, count: int | None = None) -> list[str]:
    """Edit `model` in place; returns the names of the edits applied."""
    done: list[str] = []
    want = count if count is not None else rng.choice([1, 1, 1, 2, 2, 3, 4])
    tries = 0
    while len(done) < want and tries < 20:
        tries += 1
        fn = rng.choices(_FUNCS, _WEIGHTS)[0]
        try:
            fn(model, rng)
            done.append(fn.__name__)
        except (_Skip, ValueError, TypeError, OverflowError, IndexError):  # not applicable here: try another
            continue
    return done


def mutate(data: bytes, seed: int) -> bytes | None:
    """The mutated serialization of `data`, or None when `data` does not parse as a ModelProto."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:
        return None
    mutate_model(model, random.Random(seed))
    try:
        return model.SerializeToString()
    except Exception:
        return None
