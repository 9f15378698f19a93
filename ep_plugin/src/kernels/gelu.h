// GELU with the exact (erf) definition, y = x / 2 * (1 + erf(x / sqrt 2)): the other memory-bound op of a
// transformer's feed-forward block. The vector variant computes erfc(|z|) = t * exp(-z^2 + P(t)), t = 1 / (1 + |z| / 2),
// with P a degree-9 polynomial fitted here (least squares on [1/6.25, 1], relative error 5e-8 in double), and
// 1 + erf(z) as 2 - erfc(|z|) or erfc(|z|) by sign, so large negative x keep their relative accuracy.
#pragma once
#include <cstddef>

namespace onnxq::kernels {

void GeluRef(const float* x, size_t n, float* y);     // double erf
void GeluAvx512(const float* x, size_t n, float* y);  // AVX512F

}  // namespace onnxq::kernels
