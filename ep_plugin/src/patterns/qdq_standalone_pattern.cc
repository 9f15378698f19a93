#include "patterns/qdq_standalone_pattern.h"

#include "patterns/graph_utils.h"
#include "patterns/qdq_common.h"

namespace onnxq {
namespace {

using qdq::Constant;
using qdq::NoMatch;

StandaloneQdqSpec MatchGather(const Ort::ConstNode& gather) {
  StandaloneQdqSpec spec;
  spec.kind = StandaloneQdqSpec::Kind::kGatherDequantize;
  const auto in = gather.GetInputs();
  const auto out = gather.GetOutputs();
  if (in.size() != 2 || out.size() != 1) throw NoMatch{"unexpected Gather arity"};
  if (graph::IntAttr(gather, "axis", 0) != 0) throw NoMatch{"Gather axis is not 0"};
  if (graph::ElementType(out[0]) != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw NoMatch{"Gather output is not float"};
  const auto it = graph::ElementType(in[1]);
  if (it != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 && it != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32)
    throw NoMatch{"Gather indices are not int32 / int64"};
  const Ort::ConstNode dq = graph::Producer(in[0]);
  if (!graph::IsOp(dq, "DequantizeLinear") || !graph::OnlyConsumedBy(in[0], gather))
    throw NoMatch{"Gather data is not a DequantizeLinear used only here"};
  if (graph::IntAttr(dq, "block_size", 0) != 0) throw NoMatch{"blocked table quantization"};
  const auto dq_in = dq.GetInputs();
  if (dq_in.size() < 2) throw NoMatch{"table DQ without a scale"};
  const Constant t = qdq::ReadConstant(dq_in[0], "table is not a constant");
  if (!qdq::Is8Bit(t.type) && !qdq::IsFp8(t.type)) throw NoMatch{"table is not 8-bit"};
  if (t.shape.size() != 2 || t.shape[0] <= 0 || t.shape[1] <= 0) throw NoMatch{"table is not 2-D"};
  spec.type = t.type;
  spec.rows = t.shape[0];
  spec.cols = t.shape[1];
  if (t.count != static_cast<size_t>(spec.rows * spec.cols)) throw NoMatch{"table size does not match its shape"};
  const Constant s = qdq::ReadConstant(dq_in[1], "table scale is not a constant");
  if (s.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw NoMatch{"table scale is not float"};
  if (qdq::IsScalarLike(s)) {
    spec.scale_axis = -1;
  } else {
    int64_t axis = graph::IntAttr(dq, "axis", 1);
    if (axis < 0) axis += 2;
    if (s.shape.size() != 1 || (axis != 0 && axis != 1) || s.count != static_cast<size_t>(axis == 0 ? spec.rows : spec.cols))
      throw NoMatch{"table scale is neither per-tensor, per-row nor per-column"};
    spec.scale_axis = static_cast<int>(axis);
  }
  spec.table_scale.resize(s.count);
  for (size_t i = 0; i < s.count; ++i) {
    const float v = static_cast<const float*>(s.data)[i];
    if (!(v == v)) throw NoMatch{"table scale is NaN"};
    spec.table_scale[i] = v;  // any finite or infinite value: dequantization is defined for it
  }
  if (dq_in.size() >= 3 && !graph::IsNull(dq_in[2])) {
    const Constant z = qdq::ReadConstant(dq_in[2], "table zero point is not a constant");
    if (z.type != t.type || z.count != s.count) throw NoMatch{"table zero point does not match the scale"};
    if (qdq::IsFp8(t.type)) {
      qdq::RequireZeroFp8(z);
    } else {
      spec.table_zero_point.resize(z.count);
      for (size_t i = 0; i < z.count; ++i) spec.table_zero_point[i] = qdq::ReadZeroPoint8(z, i);
    }
  }
  const auto* td = static_cast<const uint8_t*>(t.data);
  spec.table.assign(td, td + t.count);
  spec.input_name = in[1].GetName();
  spec.key = out[0].GetName();
  spec.nodes = {dq, gather};
  return spec;
}

StandaloneQdqSpec Match(const Ort::ConstNode& node, bool fp8_supported) {
  if (graph::IsOp(node, "Gather")) return MatchGather(node);
  const bool is_q = graph::IsOp(node, "QuantizeLinear"), is_dq = graph::IsOp(node, "DequantizeLinear");
  if (!is_q && !is_dq) throw NoMatch{"not a Q, DQ or Gather"};
  if (!fp8_supported) throw NoMatch{"FP8 needs the AVX-512 kernels"};
  const auto in = node.GetInputs();
  const auto out = node.GetOutputs();
  if (in.empty() || out.size() != 1) throw NoMatch{"unexpected Q/DQ arity"};
  StandaloneQdqSpec spec;
  const auto fp8_type = is_q ? graph::ElementType(out[0]) : graph::ElementType(in[0]);
  if (!qdq::IsFp8(fp8_type)) throw NoMatch{"not FP8 (onnxruntime's own 8-bit integer Q/DQ kernels are fast)"};
  const auto float_side = is_q ? graph::ElementType(in[0]) : graph::ElementType(out[0]);
  if (float_side != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw NoMatch{"not float"};
  if (in[0].IsConstantInitializer()) throw NoMatch{"constant input (onnxruntime folds it)"};
  if (is_q && (graph::IntAttr(node, "saturate", 1) != 1 || graph::HasAttr(node, "precision")))
    throw NoMatch{"non-saturating or precision-attributed FP8 Q"};
  int32_t zp = 0;
  qdq::ReadPerTensorParams(node, fp8_type, &spec.scale, &zp);
  spec.kind = is_q ? StandaloneQdqSpec::Kind::kQuantizeFp8 : StandaloneQdqSpec::Kind::kDequantizeFp8;
  spec.type = fp8_type;
  spec.input_name = in[0].GetName();
  spec.key = out[0].GetName();
  spec.nodes = {node};
  return spec;
}

}  // namespace

std::optional<StandaloneQdqSpec> MatchStandaloneQdq(const Ort::ConstNode& node, bool fp8_supported,
                                                    std::string* why_not) {
  try {
    return Match(node, fp8_supported);
  } catch (const NoMatch& e) {
    if (why_not != nullptr) *why_not = e.reason;
    return std::nullopt;
  }
}

}  // namespace onnxq
