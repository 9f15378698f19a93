// Which LayerNormalization groups the EP claims (the memory-bound residual + LayerNorm of transformer layers):
//
//   LayerNormalization(x)                          plain
//   LayerNormalization(Add(x, skip))               residual ("skip") fused in
//   LayerNormalization(Add(Add(x, bias), skip))    and the preceding MatMul's bias, a constant [D]
//
// Stock onnxruntime turns the second and third into its SkipLayerNormalization, whose CPU kernel is slow (about
// 0.5 ms for 128 x 768 on Zen 4, ~20 cycles per value): that is most of the time a quantized BERT spends outside
// its MatMuls. Conditions: float input and output, normalization over the last axis only, float stash type, no
// Mean / InvStdDev output in use, constant float scale (and bias) of shape [D]; the Adds are folded only when
// nothing else reads their outputs and neither residual operand is a constant. Operand shapes are often not
// known at claim time (exported graphs lose symbolic dim names), so the node checks them per run: equal shapes
// take the fused kernel, anything else is broadcast as ONNX Add does and then normalized.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ort_api.h"

namespace onnxq {

struct LayerNormSpec {
  std::vector<const OrtNode*> nodes;  // the Adds folded in, then the LayerNormalization
  std::string key;                    // the LayerNormalization's output name
  std::string input_name;             // x
  std::string skip_name;              // empty: no residual
  std::vector<float> bias;            // empty: none (added to x first, as the graph does)
  std::vector<float> gamma, beta;     // beta empty: zeros
  float epsilon = 1e-5f;
  int64_t D = 0;
};

// `taken`: nodes another group already claimed (a MatMul group often holds the bias Add): never folded in.
std::optional<LayerNormSpec> MatchLayerNorm(const Ort::ConstNode& layer_norm, std::string* why_not,
                                            const std::function<bool(const OrtNode*)>& taken);

}  // namespace onnxq
