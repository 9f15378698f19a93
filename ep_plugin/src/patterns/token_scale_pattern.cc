#include "patterns/token_scale_pattern.h"

#include <cmath>

#include "patterns/graph_utils.h"
#include "patterns/qdq_common.h"

namespace onnxq {
namespace {

using graph::ElementType;
using graph::IntAttr;
using graph::IsNull;
using graph::IsOp;
using graph::OnlyConsumedBy;
using graph::Producer;
using qdq::Constant;
using qdq::NoMatch;
using qdq::ReadConstant;

float ReadPositiveScalar(const Ort::ConstValueInfo& v, const char* what) {
  const Constant c = ReadConstant(v, what);
  if (c.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || c.count != 1) throw NoMatch{what};
  const float f = *static_cast<const float*>(c.data);
  if (!(f > 0.0f) || !std::isfinite(f)) throw NoMatch{what};
  return f;
}

// ReduceMax over the last axis only, keepdims=1: axes as the opset-18 input or the older attribute.
void RequireLastAxisReduceMax(const Ort::ConstNode& reduce, const Ort::ConstValueInfo& x) {
  if (IntAttr(reduce, "keepdims", 1) != 1) throw NoMatch{"ReduceMax without keepdims"};
  if (IntAttr(reduce, "noop_with_empty_axes", 0) != 0) throw NoMatch{"ReduceMax with noop_with_empty_axes"};
  const auto shape = graph::Shape(x);
  if (!shape.has_value() || shape->empty()) throw NoMatch{"the reduced tensor's rank is unknown"};
  const int64_t rank = static_cast<int64_t>(shape->size());
  const auto in = reduce.GetInputs();
  if (in.size() < 2 || IsNull(in[1])) throw NoMatch{"ReduceMax without an axes input"};
  const Constant axes = ReadConstant(in[1], "ReduceMax axes are not a constant");
  if (axes.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 || axes.count != 1) throw NoMatch{"ReduceMax over several axes"};
  const int64_t a = *static_cast<const int64_t*>(axes.data);
  if (a != -1 && a != rank - 1) throw NoMatch{"ReduceMax not over the last axis"};
}

TokenScaleSpec Match(const Ort::ConstNode& div) {
  TokenScaleSpec spec;
  if (!IsOp(div, "Div")) throw NoMatch{"not a Div"};
  const auto div_in = div.GetInputs();
  if (div_in.size() != 2 || div.GetOutputs().size() != 1) throw NoMatch{"unexpected Div arity"};
  spec.divisor = ReadPositiveScalar(div_in[1], "Div by something other than a positive finite float scalar");
  const Ort::ConstNode max = Producer(div_in[0]);
  if (!IsOp(max, "Max") || !OnlyConsumedBy(div_in[0], div)) throw NoMatch{"Div input is not an exclusive Max"};
  const auto max_in = max.GetInputs();
  if (max_in.size() != 2) throw NoMatch{"Max of more than two inputs"};
  spec.floor = ReadPositiveScalar(max_in[1], "Max with something other than a positive finite float scalar");
  const Ort::ConstNode reduce = Producer(max_in[0]);
  if (!IsOp(reduce, "ReduceMax") || !OnlyConsumedBy(max_in[0], max)) throw NoMatch{"Max input is not a ReduceMax"};
  const auto red_in = reduce.GetInputs();
  const Ort::ConstNode abs = Producer(red_in[0]);
  if (!IsOp(abs, "Abs") || !OnlyConsumedBy(red_in[0], reduce)) throw NoMatch{"ReduceMax input is not an exclusive Abs"};
  const auto abs_in = abs.GetInputs();
  if (abs_in.size() != 1 || ElementType(abs_in[0]) != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
    throw NoMatch{"Abs input is not float"};
  RequireLastAxisReduceMax(reduce, abs_in[0]);
  if (ElementType(div.GetOutputs()[0]) != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw NoMatch{"scale is not float"};
  spec.input_name = abs_in[0].GetName();
  spec.key = div.GetOutputs()[0].GetName();
  spec.nodes = {abs, reduce, max, div};
  return spec;
}

}  // namespace

std::optional<TokenScaleSpec> MatchTokenScale(const Ort::ConstNode& div, std::string* why_not) {
  try {
    return Match(div);
  } catch (const NoMatch& e) {
    if (why_not != nullptr) *why_not = e.reason;
    return std::nullopt;
  }
}

}  // namespace onnxq
