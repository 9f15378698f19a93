#include "patterns/qdq_act_matmul_pattern.h"

#include <cmath>

#include "kernels/qgemm_u8s8.h"
#include "patterns/graph_utils.h"

namespace onnxq {

std::optional<QdqActMatMulSpec> MatchQdqActMatMul(const Ort::ConstNode& matmul, bool fp8_supported,
                                                  std::string* why_not) {
  using qdq::NoMatch;
  try {
    if (!graph::IsOp(matmul, "MatMul")) throw NoMatch{"not a MatMul"};
    const auto inputs = matmul.GetInputs();
    const auto outputs = matmul.GetOutputs();
    if (inputs.size() != 2 || outputs.size() != 1) throw NoMatch{"unexpected MatMul arity"};
    if (graph::ElementType(outputs[0]) != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw NoMatch{"output is not float"};
    if (inputs[0].GetName() == inputs[1].GetName()) throw NoMatch{"both inputs are one tensor"};
    QdqActMatMulSpec spec;
    spec.a = qdq::MatchQuantizedInput(inputs[0], matmul);
    spec.b = qdq::MatchQuantizedInput(inputs[1], matmul);
    // A constant B is the weight pattern's business (which already declined it, for its own reason).
    const auto dqb_inputs = graph::Producer(inputs[1]).GetInputs();
    if (!dqb_inputs.empty() && dqb_inputs[0].IsConstantInitializer()) throw NoMatch{"B is a constant (weight)"};
    const bool a_fp8 = qdq::IsFp8(spec.a.type), b_fp8 = qdq::IsFp8(spec.b.type);
    if (a_fp8 != b_fp8) throw NoMatch{"one side FP8, the other integer"};
    spec.fp8 = a_fp8;
    // One combined scale a_scale * b_scale multiplies the exact sum: if it overflows float, a zero sum would give
    // 0 * inf = NaN where onnxruntime gives 0 (found by tools/fuzz; tests/test_hardening_ep.py).
    if (!std::isfinite(spec.a.dequantize_scale * spec.b.dequantize_scale))
      throw NoMatch{"scale a x scale b overflows float"};
    if (spec.fp8 && !fp8_supported) throw NoMatch{"FP8 needs AVX512-BF16 + VBMI on this CPU"};
    const auto ra = graph::Shape(inputs[0]), rb = graph::Shape(inputs[1]);
    if (!ra || !rb || ra->size() < 2 || rb->size() < 2) throw NoMatch{"inputs of unknown rank or rank < 2"};
    // INT8 sums are exact in int32 only up to K = kQGemmMaxK: a larger static K stays with onnxruntime. An unknown K
    // (attention's P x V, K = the sequence length) is claimed; a run with K past the limit takes an exact int64 path.
    const int64_t k_static = ra->back();
    if (!spec.fp8 && k_static > kernels::kQGemmMaxK) throw NoMatch{"K too large for exact int32 accumulation"};
    spec.key = outputs[0].GetName();
    spec.nodes = spec.a.nodes;
    spec.nodes.insert(spec.nodes.end(), spec.b.nodes.begin(), spec.b.nodes.end());
    spec.nodes.push_back(matmul);
    return spec;
  } catch (const NoMatch& e) {
    if (why_not != nullptr) *why_not = e.reason;
    return std::nullopt;
  }
}

}  // namespace onnxq
