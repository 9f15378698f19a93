// Residual + LayerNorm over the last axis, the memory-bound tail of a transformer sublayer:
//   s = (x + bias) + skip          (bias, skip optional; bias is [D], skip has x's shape)
//   y = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta     (beta optional)
// Mean and variance in two passes (no E[s^2] - mean^2 cancellation). Not bit-identical to onnxruntime's
// SkipLayerNormalization / LayerNormalization (summation order differs): the tests bound the difference.
// Variants: Ref (scalar, double sums), Avx2 (8 lanes, vmaskmov tails), Avx512 (16 lanes, masked tails).
#pragma once
#include <cstdint>

namespace onnxq::kernels {

struct LayerNormArgs {
  const float* x = nullptr;
  const float* skip = nullptr;   // null: none
  const float* bias = nullptr;   // null: none
  const float* gamma = nullptr;  // [D]
  const float* beta = nullptr;   // null: zeros
  float epsilon = 1e-5f;
  int64_t D = 0;
  float* y = nullptr;
};

// Rows [row_begin, row_end) of x / skip / y (row stride D).
void LayerNormRef(const LayerNormArgs& a, int64_t row_begin, int64_t row_end);     // double accumulation
void LayerNormAvx2(const LayerNormArgs& a, int64_t row_begin, int64_t row_end);    // AVX2 + FMA
void LayerNormAvx512(const LayerNormArgs& a, int64_t row_begin, int64_t row_end);  // AVX512F

}  // namespace onnxq::kernels
