// Activation x activation MatMul with both sides quantized (the Q.K^T and P.V products of attention):
//
//   a ──[Q]──DQ──┐
//                MatMul ──> y        (both per-tensor; both u8/s8, or both FP8)
//   b ──[Q]──DQ──┘
//
// Unlike the weight pattern nothing is constant: B is quantized and packed on every Run(). Batch dimensions
// broadcast as in numpy (e.g. [B, H, S, D] x [B, H, D, S]).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "ort_api.h"
#include "patterns/qdq_common.h"

namespace onnxq {

struct QdqActMatMulSpec {
  qdq::QuantizedInput a;
  qdq::QuantizedInput b;
  bool fp8 = false;
  std::string key;  // MatMul output name
  std::vector<const OrtNode*> nodes;
};

std::optional<QdqActMatMulSpec> MatchQdqActMatMul(const Ort::ConstNode& matmul, bool fp8_supported,
                                                  std::string* why_not = nullptr);

}  // namespace onnxq
