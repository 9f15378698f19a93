#include "patterns/layer_norm_pattern.h"

#include <cmath>
#include <cstring>

#include "patterns/graph_utils.h"
#include "patterns/qdq_common.h"

namespace onnxq {
namespace {

using qdq::NoMatch;

std::vector<float> ReadVectorD(const Ort::ConstValueInfo& v, const char* what, int64_t D) {
  const qdq::Constant c = qdq::ReadConstant(v, what);
  if (c.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw NoMatch{"scale / bias is not float"};
  if (c.shape.size() != 1 || (D > 0 && c.shape[0] != D) || c.count == 0) throw NoMatch{"scale / bias is not [D]"};
  std::vector<float> out(c.count);
  std::memcpy(out.data(), c.data, c.count * sizeof(float));
  return out;
}

bool IsFloatTensor(const Ort::ConstValueInfo& v) {
  return graph::ElementType(v) == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

bool IsConstant(const Ort::ConstValueInfo& v) {
  return static_cast<const OrtValue*>(graph::ConstantValue(v)) != nullptr;
}

// An output nothing reads (absent, or present without consumers and not a graph output).
bool Unused(const Ort::ConstValueInfo& v) {
  return graph::IsNull(v) || (!v.IsGraphOutput() && v.GetConsumers().empty());
}

}  // namespace

std::optional<LayerNormSpec> MatchLayerNorm(const Ort::ConstNode& ln, std::string* why_not,
                                            const std::function<bool(const OrtNode*)>& taken) {
  try {
    if (!graph::IsOp(ln, "LayerNormalization")) throw NoMatch{"not LayerNormalization"};
    const auto inputs = ln.GetInputs();
    const auto outputs = ln.GetOutputs();
    if (inputs.size() < 2 || outputs.empty() || graph::IsNull(inputs[0]) || graph::IsNull(outputs[0]))
      throw NoMatch{"inputs or output missing"};
    for (size_t i = 1; i < outputs.size(); ++i)
      if (!Unused(outputs[i])) throw NoMatch{"Mean / InvStdDev output is used"};
    if (!IsFloatTensor(inputs[0]) || !IsFloatTensor(outputs[0])) throw NoMatch{"not float"};
    if (graph::IntAttr(ln, "stash_type", 1) != 1) throw NoMatch{"stash_type is not float"};
    const auto shape = graph::Shape(inputs[0]);
    if (!shape || shape->empty()) throw NoMatch{"input rank unknown"};
    const int64_t rank = static_cast<int64_t>(shape->size());
    int64_t axis = graph::IntAttr(ln, "axis", -1);
    if (axis < 0) axis += rank;
    if (axis != rank - 1) throw NoMatch{"normalizes over more than the last axis"};
    const float eps = graph::FloatAttr(ln, "epsilon", 1e-5f);
    if (!std::isfinite(eps) || eps < 0.0f) throw NoMatch{"epsilon is not a finite non-negative number"};

    LayerNormSpec spec;
    spec.epsilon = eps;
    const int64_t last = shape->back();
    spec.gamma = ReadVectorD(inputs[1], "scale", last > 0 ? last : -1);
    spec.D = static_cast<int64_t>(spec.gamma.size());
    if (inputs.size() > 2 && !graph::IsNull(inputs[2])) spec.beta = ReadVectorD(inputs[2], "bias", spec.D);
    spec.key = outputs[0].GetName();
    spec.input_name = inputs[0].GetName();

    // residual Add (and the bias Add before it) folded in where nothing else reads their outputs
    Ort::ConstNode add = graph::Producer(inputs[0]);
    std::vector<const OrtNode*> nodes;
    if (graph::IsOp(add, "Add") && !taken(add) && graph::OnlyConsumedBy(inputs[0], ln)) {
      const auto a = add.GetInputs();
      if (a.size() == 2 && !graph::IsNull(a[0]) && !graph::IsNull(a[1]) && IsFloatTensor(a[0]) &&
          IsFloatTensor(a[1]) && !IsConstant(a[0]) && !IsConstant(a[1])) {
        spec.input_name = a[0].GetName();
        spec.skip_name = a[1].GetName();
        nodes.push_back(add);
        // x = Add(t, bias[D]) on either side of the residual Add
        for (int side = 0; side < 2; ++side) {
          Ort::ConstNode bias_add = graph::Producer(a[side]);
          if (!graph::IsOp(bias_add, "Add") || taken(bias_add) || !graph::OnlyConsumedBy(a[side], add)) continue;
          const auto b = bias_add.GetInputs();
          if (b.size() != 2 || graph::IsNull(b[0]) || graph::IsNull(b[1])) continue;
          for (int c = 0; c < 2; ++c) {
            if (!IsConstant(b[c]) || IsConstant(b[1 - c])) continue;
            if (!IsFloatTensor(b[1 - c])) continue;
            try {
              spec.bias = ReadVectorD(b[c], "bias add", spec.D);
            } catch (const NoMatch&) {
              continue;
            }
            spec.input_name = b[1 - c].GetName();
            spec.skip_name = a[1 - side].GetName();
            nodes.insert(nodes.begin(), bias_add);
            break;
          }
          if (!spec.bias.empty()) break;
        }
      }
    }
    nodes.push_back(ln);
    spec.nodes = std::move(nodes);
    return spec;
  } catch (const NoMatch& e) {
    if (why_not != nullptr) *why_not = e.reason;
    return std::nullopt;
  }
}

}  // namespace onnxq
