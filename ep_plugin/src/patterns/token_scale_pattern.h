// The per-token scale reduction `onnxq quantize --recipe int8-per-token` writes in front of its blocked Q/DQ:
//
//   x ──Abs──ReduceMax(axis -1, keepdims=1)──Max(·, floor)──Div(·, max_code)──> s   ([..., 1], one value per row)
//
// onnxruntime runs it as four kernels with a full-size temporary for Abs; the EP fuses it into one pass over x.
// The same float operations in the same order (max of |x|, max with the floor, one IEEE division), so s is
// bit-identical to onnxruntime's for finite inputs.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "ort_api.h"

namespace onnxq {

struct TokenScaleSpec {
  std::string input_name;  // x
  std::string key;         // s, the group's output
  float floor = 0.0f;      // Max's constant (> 0)
  float divisor = 1.0f;    // Div's constant (> 0, finite)
  std::vector<const OrtNode*> nodes;
};

// `div` is a Div node; matches when it ends the chain above with every intermediate used only inside it.
std::optional<TokenScaleSpec> MatchTokenScale(const Ort::ConstNode& div, std::string* why_not = nullptr);

}  // namespace onnxq
