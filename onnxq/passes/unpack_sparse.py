"""Unpack sparse: expand packed *float* block-sparse weights (``BlockSparseExpand`` nodes fed by initializers)
back into dense initializers, so the passes after it see ordinary constant weights: quantizing a packed sparse
model quantizes its weights. ``ctx.packed_block`` records the block so ``pack_sparse`` packs the result again
(now as INT8 / FP8). Packed weights that are already quantized are left as they are. The compact arrays are
validated first: a hostile index is a clear error, never an out-of-bounds read.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from onnxq.core import block_sparse as bsf
from onnxq.core.errors import OnnxqError
from onnxq.passes.context import PassContext

_PARTS = ("values", "block_rows", "col_ptr", "shape", "dense")


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    expands = [n for n in g.node if n.domain == bsf.DOMAIN and n.op_type in bsf.FUNCTION_NAMES
               and len(n.input) == len(_PARTS) and all(i in inits for i in n.input)
               and inits[n.input[0]].data_type == TensorProto.FLOAT]
    if not expands:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    rename: dict[str, str] = {}
    dropped: set[str] = set()
    blocks: set[tuple[int, int]] = set()
    for n in expands:
        values, rows, col_ptr, shape, dense = (numpy_helper.to_array(inits[i]) for i in n.input)
        if values.ndim != 3 or dense.shape != (2,) or shape.shape != (4,):
            raise OnnxqError(f"{n.name}: packed weight arrays have the wrong ranks (values [nnzb, bk, bn], dense [2])")
        k, nn = (int(d) for d in dense)
        bs = bsf.BlockSparse(values, rows, col_ptr, k, nn, int(values.shape[1]), int(values.shape[2]))
        try:
            w = bs.to_dense()  # validates every index first
        except OnnxqError as e:
            raise OnnxqError(f"{n.name}: invalid packed weight: {e}") from e
        name = n.input[0][: -len(".values")] if n.input[0].endswith(".values") else n.output[0] + ".dense"
        while name in inits and name not in n.input:
            name += "_"
        g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), name))
        rename[n.output[0]] = name
        dropped.update(n.input)
        blocks.add((bs.bk, bs.bn))
    keep_nodes = [n for n in g.node if not (n.domain == bsf.DOMAIN and n.output and n.output[0] in rename)]
    for n in keep_nodes:
        for j, i in enumerate(n.input):
            if i in rename:
                n.input[j] = rename[i]
    for o in g.output:
        if o.name in rename:
            raise OnnxqError(f"packed weight '{o.name}' is a graph output; cannot unpack it")
    still_used = {i for n in keep_nodes for i in n.input}
    kept = [t for t in g.initializer if t.name not in dropped or t.name in still_used]
    del g.initializer[:]
    g.initializer.extend(kept)
    del g.node[:]
    g.node.extend(keep_nodes)
    if len(blocks) == 1:
        ctx.packed_block = next(iter(blocks))
    ctx.notes.append(f"unpacked {len(expands)} packed float weight(s) to quantize them"
                     + (f"; they are packed again ({'x'.join(map(str, next(iter(blocks))))} blocks)"
                        if len(blocks) == 1 else "; mixed block shapes: left dense"))
    return out
