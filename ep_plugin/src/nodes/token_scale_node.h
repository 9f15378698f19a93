// The fused per-token scale reduction (patterns/token_scale_pattern.h): s[row] = max(max |x[row, :]|, floor) / c.
#pragma once
#include <cstddef>
#include <cstdint>

#include "nodes/compiled_node.h"
#include "patterns/token_scale_pattern.h"

namespace onnxq {

class TokenScaleNode : public CompiledNode {
 public:
  TokenScaleNode(const TokenScaleSpec& spec, size_t input_index) : input_index_(input_index), spec_(spec) {}
  void Compute(OrtKernelContext* context) const override;
  const char* kernel_name() const override { return "token-scale"; }

 private:
  size_t input_index_;
  TokenScaleSpec spec_;
};

// One row: max(max_k |x[k]|, floor) / divisor, in that order of float operations (the reference and the kernel).
float TokenScale(const float* x, int64_t k, float floor, float divisor);

}  // namespace onnxq
