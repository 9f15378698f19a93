"""Check: ``onnx.checker`` (full check) on the result, unless finalize already checked this very model."""

from __future__ import annotations

import onnx

from onnxq.passes.context import PassContext
from onnxq.passes.finalize import check_model


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    if ctx.check and ctx.checked is not model:
        check_model(model)
        ctx.checked = model
    return model
