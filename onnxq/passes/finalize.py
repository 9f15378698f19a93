"""Finalize: drop what the rewrite left unused, sort, export to ONNX at the configured opset and IR version,
stamp provenance, and check the result with ``onnx.checker`` (a failure here is onnxq's bug, said so)."""

from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs

from onnxq import __version__
from onnxq.errors import OnnxqError
from onnxq.quantizer.config import QuantConfig

_PROTOBUF_LIMIT = 2**31 - 1


def finalize(graph: gs.Graph, config: QuantConfig, template: onnx.ModelProto, *, check: bool = True) -> onnx.ModelProto:
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    graph.opset = max(int(graph.opset or 0), config.opset)
    if graph.import_domains:
        for d in graph.import_domains:
            if d.domain in ("", "ai.onnx"):
                d.version = graph.opset
    model = gs.export_onnx(graph, do_type_check=False)
    model.ir_version = max(template.ir_version, 10)
    model.producer_name = template.producer_name or "onnxq"
    model.producer_version = template.producer_version
    model.doc_string = template.doc_string
    del model.metadata_props[:]
    model.metadata_props.extend(template.metadata_props)
    for k, v in (("onnxq.version", __version__), ("onnxq.format", config.format),
                 ("onnxq.recipe", config.recipe or ""), ("onnxq.calibration", config.calibration_method)):
        model.metadata_props.add(key=k, value=str(v))
    del model.functions[:]
    model.functions.extend(template.functions)
    if check:
        check_model(model)
    return model


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
