"""Preprocess: make an exported graph quantizable.

* raise the default-domain opset to ``QuantConfig.opset`` with ``onnx.version_converter`` (FP8 Q/DQ needs >= 19);
* ``Constant`` nodes become initializers (exporters write weights both ways);
* ``Transpose`` of a constant is folded into a transposed initializer, so ``MatMul(x, Transpose(W))`` has a
  constant weight (the float original is dropped later if nothing else uses it);
* every node gets a unique name (exclusion patterns, reports and comparisons need one);
* shape inference, so activations have types (and shapes where onnx can tell).

Everything runs on a *skeleton* of the model whose large tensors are stubs (so models beyond protobuf's 2 GiB work,
and weights are neither serialized nor copied more than once); the tensors are copied in at the end.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

from onnxq.core.errors import OnnxqError
from onnxq.core.model_io import is_stub, restore_large_initializers, split_large_initializers
from onnxq.passes.context import PassContext


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    ctx.template = _preprocess(model, ctx.quant.opset, ctx.notes)
    return ctx.template


def _preprocess(model: onnx.ModelProto, opset: int, notes: list[str]) -> onnx.ModelProto:
    # the weights are not copied until the end (peak memory: the input model and the output, not four copies)
    m, stash = split_large_initializers(model)
    _constants_to_initializers(m.graph)
    _fold_transposed_constants(m.graph, stash)
    _name_nodes(m.graph)
    skeleton, made = split_large_initializers(m)  # large tensors the steps above made (Constants, transposes)
    stash.update(made)
    skeleton = _upgrade_opset(skeleton, opset)
    try:
        skeleton = onnx.shape_inference.infer_shapes(skeleton, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # shape inference is best effort: quantization still works without shapes
        notes.append(f"shape inference failed ({str(e).splitlines()[0]}); continuing without it")
    return restore_large_initializers(skeleton, stash)


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


def _fold_transposed_constants(g: onnx.GraphProto, stash: dict[str, onnx.TensorProto]) -> None:
    inits = {t.name: t for t in g.initializer}
    keep = []
    for n in g.node:
        if n.op_type == "Transpose" and n.domain in ("", "ai.onnx") and n.input and n.input[0] in inits:
            src = inits[n.input[0]]
            if is_stub(src):
                src = stash.get(src.name, src)
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
