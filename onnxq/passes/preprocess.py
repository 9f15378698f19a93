"""Preprocess: make an exported graph quantizable.

* raise the default-domain opset to ``config.opset`` with ``onnx.version_converter`` (FP8 Q/DQ needs >= 19);
* ``Constant`` nodes become initializers (exporters write weights both ways);
* ``Transpose`` of a constant is folded into a transposed initializer, so ``MatMul(x, Transpose(W))`` has a
  constant weight (the float original is dropped later if nothing else uses it);
* every node gets a unique name (exclusion patterns, reports and comparisons need one);
* shape inference, so activations have types (and shapes where onnx can tell).

Converters and shape inference run on a *skeleton* of the model whose large tensors are stubs (so models
beyond protobuf's 2 GiB work and weights are not serialized twice); the tensors are put back afterwards.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

from onnxq.errors import OnnxqError
from onnxq.quantizer.config import QuantConfig

_STUB_LOCATION = "onnxq-preprocess-stub"


def preprocess(model: onnx.ModelProto, config: QuantConfig) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _constants_to_initializers(m.graph)
    _fold_transposed_constants(m.graph)
    _name_nodes(m.graph)
    skeleton, stash = _skeleton(m)
    skeleton = _upgrade_opset(skeleton, config.opset)
    try:
        skeleton = onnx.shape_inference.infer_shapes(skeleton, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # shape inference is best effort: quantization still works without shapes
        config.notes.append(f"shape inference failed ({str(e).splitlines()[0]}); continuing without it")
    return _restore(skeleton, stash)


# ------------------------------------------------------------------------------------------------ steps


def _constants_to_initializers(g: onnx.GraphProto) -> None:
    keep = []
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.output) == 1:
            t = _constant_value(n)
            if t is not None:
                t.name = n.output[0]
                g.initializer.append(t)
                continue
        keep.append(n)
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)


def _constant_value(n: onnx.NodeProto) -> onnx.TensorProto | None:
    for a in n.attribute:
        if a.name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(a.t)
            return t
        if a.name == "value_float":
            return helper.make_tensor("", onnx.TensorProto.FLOAT, [], [a.f])
        if a.name == "value_floats":
            return helper.make_tensor("", onnx.TensorProto.FLOAT, [len(a.floats)], list(a.floats))
        if a.name == "value_int":
            return helper.make_tensor("", onnx.TensorProto.INT64, [], [a.i])
        if a.name == "value_ints":
            return helper.make_tensor("", onnx.TensorProto.INT64, [len(a.ints)], list(a.ints))
    return None  # sparse_value / strings: leave the node alone


def _fold_transposed_constants(g: onnx.GraphProto) -> None:
    inits = {t.name: t for t in g.initializer}
    keep = []
    for n in g.node:
        if n.op_type == "Transpose" and n.domain in ("", "ai.onnx") and n.input and n.input[0] in inits:
            src = inits[n.input[0]]
            if src.data_location != onnx.TensorProto.EXTERNAL and src.data_type == onnx.TensorProto.FLOAT:
                arr = numpy_helper.to_array(src)
                perm = next((list(a.ints) for a in n.attribute if a.name == "perm"), None)
                t = numpy_helper.from_array(arr.transpose(perm) if perm else arr.T, n.output[0])
                g.initializer.append(t)
                inits[t.name] = t
                continue
        keep.append(n)
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        used |= {i for n in g.node for a in n.attribute if a.type == onnx.AttributeProto.GRAPH
                 for i in _graph_inputs(a.g)}
        kept = [t for t in g.initializer if t.name in used]
        del g.initializer[:]
        g.initializer.extend(kept)


def _graph_inputs(g: onnx.GraphProto) -> set[str]:
    out = {i for n in g.node for i in n.input}
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out |= _graph_inputs(a.g)
    return out


def _name_nodes(g: onnx.GraphProto) -> None:
    seen: set[str] = set()
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        n.name = name
        seen.add(name)


def _upgrade_opset(m: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    current = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    if current is None:
        raise OnnxqError("the model imports no default-domain (ai.onnx) opset; cannot quantize it")
    newest = onnx.defs.onnx_opset_version()
    if current > newest:  # else it would be written out unchanged, and onnxruntime refuses such a file
        raise OnnxqError(f"the model's ai.onnx opset {current} is newer than the newest this onnx knows ({newest}); "
                         f"re-export it with opset {opset}..{newest}")
    if m.ir_version > onnx.IR_VERSION:  # else onnx.checker fails on the output and it looks like onnxq's bug
        raise OnnxqError(f"the model's IR version {m.ir_version} is newer than the newest this onnx knows "
                         f"({onnx.IR_VERSION}); re-export it with an older exporter or a newer onnx")
    if current < opset:
        try:
            m = onnx.version_converter.convert_version(m, opset)
        except Exception as e:
            raise OnnxqError(f"could not convert the model from opset {current} to {opset} "
                             f"(onnx.version_converter: {str(e).splitlines()[0]}); convert it first, e.g. re-export "
                             f"with opset {opset}") from e
    if m.ir_version < 10:
        m.ir_version = 10  # FP8 types need IR >= 9, opset 21 needs IR 10
    return m


def _skeleton(m: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, onnx.TensorProto]]:
    """A copy whose large initializers are stubs pointing at a location nothing reads; returns the originals."""
    stash: dict[str, onnx.TensorProto] = {}
    sk = onnx.ModelProto()
    sk.CopyFrom(m)
    for t in sk.graph.initializer:
        if _nbytes(t) > 4096:
            orig = onnx.TensorProto()
            orig.CopyFrom(t)
            stash[t.name] = orig
            stub = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims,
                                    data_location=onnx.TensorProto.EXTERNAL)
            stub.external_data.add(key="location", value=_STUB_LOCATION)
            t.CopyFrom(stub)
    return sk, stash


def _restore(m: onnx.ModelProto, stash: dict[str, onnx.TensorProto]) -> onnx.ModelProto:
    for t in m.graph.initializer:
        if t.name in stash and t.data_location == onnx.TensorProto.EXTERNAL and any(
                e.key == "location" and e.value == _STUB_LOCATION for e in t.external_data):
            t.CopyFrom(stash[t.name])
    return m


def _nbytes(t: onnx.TensorProto) -> int:
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return 1 << 62  # already external: never load it just to look at it
    return t.ByteSize()
