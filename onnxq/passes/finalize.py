"""Finalize: the configured opset and IR version, the input's metadata and functions, onnxq's provenance stamp,
and ``onnx.checker`` on the result (a failure here is onnxq's bug, said so)."""

from __future__ import annotations

import onnx

from onnxq.core import provenance
from onnxq.core.config import QuantConfig
from onnxq.core.errors import OnnxqError
from onnxq.passes.context import PassContext

_PROTOBUF_LIMIT = 2**31 - 1


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    """``model`` is written by insert_qdq (a fresh proto this pass may change in place)."""
    assert ctx.template is not None, "finalize runs after preprocess"
    finalize(model, ctx.quant, ctx.template)
    if ctx.check:
        check_model(model)
        ctx.checked = model
    return model


def finalize(model: onnx.ModelProto, config: QuantConfig, template: onnx.ModelProto) -> None:
    for d in model.opset_import:
        if d.domain in ("", "ai.onnx"):
            d.version = max(int(d.version), config.opset)
    model.ir_version = max(template.ir_version, 10)
    model.producer_name = template.producer_name
    model.producer_version = template.producer_version
    model.doc_string = template.doc_string
    del model.metadata_props[:]
    model.metadata_props.extend(template.metadata_props)
    provenance.stamp(model, {"onnxq.format": config.format, "onnxq.recipe": config.recipe or "",
                             "onnxq.calibration": config.calibration_method})
    del model.functions[:]
    model.functions.extend(template.functions)


def check_model(model: onnx.ModelProto) -> None:
    try:
        if model.ByteSize() < _PROTOBUF_LIMIT:
            onnx.checker.check_model(model, full_check=True)
        else:  # the checker needs serialisation; the graph structure is what matters here
            sk = onnx.ModelProto()
            sk.CopyFrom(model)
            for t in sk.graph.initializer:
                if t.ByteSize() > 4096:  # an empty stub: the checker reads neither shapes nor data here
                    t.CopyFrom(onnx.TensorProto(name=t.name, data_type=t.data_type, dims=[0]))
            onnx.checker.check_model(sk, full_check=False)
    except onnx.checker.ValidationError as e:
        raise OnnxqError(f"internal error: the quantized model fails onnx.checker ({str(e).splitlines()[0]}); "
                         "please report it with the input model") from e
