// GELU groups the EP claims: ONNX `Gelu` (opset 20, approximate = "none") and the form exporters write for the
// exact GELU, x * 0.5 * (1 + Erf(x / sqrt 2)) in either multiplication order:
//
//   Div(x, 1.4142..) | Mul(x, 0.7071..) -> Erf -> Add(., 1) -> Mul(x, .) -> Mul(., 0.5)
//                                                            -> Mul(Mul(x, 0.5), .)
//
// Float only; the constants scalar initializers within 1e-4 of their exact values; every intermediate read only
// inside the group. (Stock onnxruntime fuses the same nodes into its own Gelu after the EP has claimed its nodes.)
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ort_api.h"

namespace onnxq {

struct GeluSpec {
  std::vector<const OrtNode*> nodes;
  std::string key;         // the Erf's (or Gelu's) output name: unique per group
  std::string input_name;  // x
};

// `anchor` is an Erf or a Gelu node; `taken`: nodes another group already holds.
std::optional<GeluSpec> MatchGelu(const Ort::ConstNode& anchor, std::string* why_not,
                                  const std::function<bool(const OrtNode*)>& taken);

}  // namespace onnxq
