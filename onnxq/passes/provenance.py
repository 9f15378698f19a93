"""Provenance: stamp the producer fields and what the sparsify recipe did (finalize stamps quantized models)."""

from __future__ import annotations

import onnx

from onnxq.core import provenance
from onnxq.passes.context import PassContext


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    if ctx.sparse is None:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    s = ctx.sparse
    provenance.stamp(out, {"onnxq.sparsify": f"sparsity {s.sparsity:g}, block {s.block[0]}x{s.block[1]}, "
                                             f"{'reconstructed' if s.reconstruct else 'magnitude'}"})
    return out
