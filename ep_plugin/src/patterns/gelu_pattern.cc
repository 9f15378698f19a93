#include "patterns/gelu_pattern.h"

#include <cmath>
#include <cstring>

#include "patterns/graph_utils.h"
#include "patterns/qdq_common.h"

namespace onnxq {
namespace {

using qdq::NoMatch;

bool IsFloat(const Ort::ConstValueInfo& v) { return graph::ElementType(v) == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }

// A scalar-like float constant within 1e-4 (relative) of `want`.
bool IsConstantNear(const Ort::ConstValueInfo& v, double want) {
  if (graph::IsNull(v) || static_cast<const OrtValue*>(graph::ConstantValue(v)) == nullptr) return false;
  try {
    const qdq::Constant c = qdq::ReadConstant(v, "constant");
    if (c.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || !qdq::IsScalarLike(c)) return false;
    float f;
    std::memcpy(&f, c.data, sizeof f);
    return std::isfinite(f) && std::fabs(f - want) <= 1e-4 * std::fabs(want);
  } catch (const NoMatch&) {
    return false;
  }
}

// The single consumer of `v` (which must not be a graph output), or a null node.
Ort::ConstNode OnlyConsumer(const Ort::ConstValueInfo& v) {
  if (graph::IsNull(v) || v.IsGraphOutput()) return Ort::ConstNode{nullptr};
  const auto consumers = v.GetConsumers();
  if (consumers.size() != 1) return Ort::ConstNode{nullptr};
  return consumers[0].node;
}

// For a binary node with the value named `known` as one input: the other input, else null.
Ort::ConstValueInfo OtherInput(const Ort::ConstNode& n, const std::string& known) {
  const auto in = n.GetInputs();
  if (in.size() != 2 || graph::IsNull(in[0]) || graph::IsNull(in[1])) return Ort::ConstValueInfo{nullptr};
  if (in[0].GetName() == known) return in[1];
  if (in[1].GetName() == known) return in[0];
  return Ort::ConstValueInfo{nullptr};
}

std::string Name(const Ort::ConstValueInfo& v) { return graph::IsNull(v) ? std::string() : v.GetName(); }

}  // namespace

std::optional<GeluSpec> MatchGelu(const Ort::ConstNode& anchor, std::string* why_not,
                                  const std::function<bool(const OrtNode*)>& taken) {
  try {
    GeluSpec spec;
    if (graph::IsOp(anchor, "Gelu")) {
      const auto in = anchor.GetInputs();
      const auto out = anchor.GetOutputs();
      if (in.size() != 1 || out.size() != 1 || !IsFloat(in[0]) || !IsFloat(out[0])) throw NoMatch{"not a float Gelu"};
      Ort::ConstOpAttr attr{nullptr};
      if (anchor.GetAttributeByName("approximate", attr).IsOK() && static_cast<const OrtOpAttr*>(attr) != nullptr) {
        std::string mode;
        if (!attr.GetValue(mode).IsOK() || mode != "none") throw NoMatch{"approximate Gelu (tanh)"};
      }
      spec.nodes = {anchor};
      spec.key = out[0].GetName();
      spec.input_name = in[0].GetName();
      return spec;
    }
    if (!graph::IsOp(anchor, "Erf")) throw NoMatch{"not Erf / Gelu"};
    const auto erf_in = anchor.GetInputs();
    const auto erf_out = anchor.GetOutputs();
    if (erf_in.size() != 1 || erf_out.size() != 1) throw NoMatch{"Erf arity"};
    // x / sqrt 2
    Ort::ConstNode scale = graph::Producer(erf_in[0]);
    if (graph::IsNull(scale) || taken(scale) || !graph::OnlyConsumedBy(erf_in[0], anchor)) throw NoMatch{"Erf input"};
    const auto s_in = scale.GetInputs();
    if (s_in.size() != 2 || graph::IsNull(s_in[0])) throw NoMatch{"Erf input"};
    const bool div = graph::IsOp(scale, "Div") && IsConstantNear(s_in[1], std::sqrt(2.0));
    const bool mul = graph::IsOp(scale, "Mul") && IsConstantNear(s_in[1], std::sqrt(0.5));
    if (!div && !mul) throw NoMatch{"Erf input is not x / sqrt 2"};
    const Ort::ConstValueInfo x = s_in[0];
    if (!IsFloat(x)) throw NoMatch{"not float"};
    // 1 + erf
    Ort::ConstNode add = OnlyConsumer(erf_out[0]);
    if (!graph::IsOp(add, "Add") || taken(add)) throw NoMatch{"Erf is not followed by Add"};
    if (!IsConstantNear(OtherInput(add, Name(erf_out[0])), 1.0)) throw NoMatch{"Add is not 1 + erf"};
    const auto one_plus = add.GetOutputs();
    if (one_plus.size() != 1) throw NoMatch{"Add arity"};
    Ort::ConstNode m = OnlyConsumer(one_plus[0]);
    if (!graph::IsOp(m, "Mul") || taken(m)) throw NoMatch{"1 + erf is not multiplied"};
    const Ort::ConstValueInfo other = OtherInput(m, Name(one_plus[0]));
    if (graph::IsNull(other)) throw NoMatch{"Mul operands"};
    const auto m_out = m.GetOutputs();
    if (m_out.size() != 1) throw NoMatch{"Mul arity"};
    std::vector<const OrtNode*> nodes = {scale, anchor, add};
    Ort::ConstNode last{nullptr};
    if (Name(other) == Name(x)) {  // (x * (1 + erf)) * 0.5
      Ort::ConstNode half = OnlyConsumer(m_out[0]);
      if (!graph::IsOp(half, "Mul") || taken(half) || !IsConstantNear(OtherInput(half, Name(m_out[0])), 0.5))
        throw NoMatch{"no * 0.5"};
      nodes.push_back(m);
      nodes.push_back(half);
      last = half;
    } else {  // (x * 0.5) * (1 + erf)
      Ort::ConstNode half = graph::Producer(other);
      if (!graph::IsOp(half, "Mul") || taken(half) || !graph::OnlyConsumedBy(other, m) ||
          !IsConstantNear(OtherInput(half, Name(x)), 0.5))
        throw NoMatch{"no x * 0.5"};
      nodes.insert(nodes.begin(), half);
      nodes.push_back(m);
      last = m;
    }
    const auto y = last.GetOutputs();
    if (y.size() != 1 || !IsFloat(y[0])) throw NoMatch{"not float"};
    spec.nodes = std::move(nodes);
    spec.key = erf_out[0].GetName();
    spec.input_name = x.GetName();
    return spec;
  } catch (const NoMatch& e) {
    if (why_not != nullptr) *why_not = e.reason;
    return std::nullopt;
  }
}

}  // namespace onnxq
