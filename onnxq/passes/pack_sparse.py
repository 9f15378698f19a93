"""Pack block-sparse weights: every MatMul / Gemm weight whose zeros form whole bk x bn blocks (at least
`min_sparsity` of them) is replaced by the compact format of ``onnxq.core.block_sparse`` and a BlockSparseExpand node
(int8 / FP8 weights behind a DequantizeLinear, or float weights feeding the MatMul directly). The model stays
runnable by stock onnxruntime through the node's ONNX function; the onnxq EP runs the INT8 ones sparse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from onnxq.core import block_sparse as fmt
from onnxq.passes.context import PassContext

_FP8 = (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2)
_PACKABLE = (TensorProto.INT8, TensorProto.FLOAT, TensorProto.FLOAT16, *_FP8)


@dataclass
class PackedWeight:
    initializer: str
    shape: tuple[int, int]
    sparsity: float
    dense_bytes: int
    packed_bytes: int


@dataclass
class PackReport:
    packed: list[PackedWeight] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def bytes_ratio(self) -> float:
        d = sum(p.dense_bytes for p in self.packed)
        return sum(p.packed_bytes for p in self.packed) / d if d else 1.0


def _raw_view(t: onnx.TensorProto) -> np.ndarray:
    """The weight as an array whose zero elements are exactly the pruned ones (FP8 as raw bytes)."""
    if t.data_type in _FP8:
        return np.frombuffer(t.raw_data, np.uint8).reshape(tuple(t.dims))
    return numpy_helper.to_array(t)


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    """Packs with ``ctx.sparse``'s block (when it asks to pack), or repacks what unpack_sparse expanded."""
    if ctx.sparse is not None and ctx.sparse.pack:
        block, min_sparsity = ctx.sparse.block, ctx.sparse.min_pack_sparsity
    elif ctx.packed_block is not None:
        block, min_sparsity = ctx.packed_block, 0.5
    else:
        return model
    out, ctx.reports["pack"] = pack_sparse(model, block, min_sparsity)
    return out


def pack_sparse(model: onnx.ModelProto, block: tuple[int, int] = (4, 1),
                min_sparsity: float = 0.5) -> tuple[onnx.ModelProto, PackReport]:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    bk, bn = block
    report = PackReport()
    expand_nodes: list[onnx.NodeProto] = []
    rewire: dict[tuple[int, int], str] = {}  # (node index, input index) -> expanded weight name
    replaced: set[str] = set()
    index_of = {id(n): i for i, n in enumerate(g.node)}
    for node in g.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        trans_b = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
        b = node.input[1]
        if b in inits:
            holder, input_index, wname = node, 1, b
        elif b in producers and producers[b].op_type == "DequantizeLinear" and producers[b].input[0] in inits:
            holder, input_index, wname = producers[b], 0, producers[b].input[0]
        else:
            continue
        t = inits[wname]
        reason = None
        if trans_b:
            reason = "Gemm transB weights stay dense"
        elif t.data_type not in _PACKABLE or len(t.dims) != 2:
            reason = "not a 2-D int8 / FP8 / float weight"
        elif consumers.get(wname, 0) != 1:
            reason = "weight shared by several nodes"
        elif t.dims[0] % bk or t.dims[1] % bn:
            reason = "shape is not a multiple of the block"
        elif t.dims[0] // bk > fmt.MAX_BLOCK_ROWS:
            reason = "too many block rows for the int16 index"
        if reason is None:
            w = _raw_view(t)
            bs = fmt.from_dense(w, bk, bn)
            if bs.sparsity < min_sparsity:
                reason = f"block sparsity {bs.sparsity:.2f} below {min_sparsity}"
            else:
                dense_out = f"{wname}.expanded"
                expand_nodes.append(fmt.expand_node(wname, dense_out, t.data_type))
                g.initializer.extend(fmt.initializers(bs, wname, t.data_type))
                rewire[(index_of[id(holder)], input_index)] = dense_out
                replaced.add(wname)
                itemsize = 1 if t.data_type in (*_FP8, TensorProto.INT8) else w.dtype.itemsize
                report.packed.append(PackedWeight(wname, (int(t.dims[0]), int(t.dims[1])), bs.sparsity,
                                                  int(w.size * itemsize), bs.nbytes()))
        if reason is not None:
            report.skipped[node.name or node.output[0]] = reason
    if not replaced:
        return out, report
    new_nodes = list(expand_nodes)  # they read initializers only: first is a valid topological place
    for i, n in enumerate(g.node):
        c = onnx.NodeProto()
        c.CopyFrom(n)
        for j in range(len(c.input)):
            if (i, j) in rewire:
                c.input[j] = rewire[(i, j)]
        new_nodes.append(c)
    keep = [t for t in g.initializer if t.name not in replaced]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.node[:]
    g.node.extend(new_nodes)
    fmt.ensure_functions(out)
    return out, report
