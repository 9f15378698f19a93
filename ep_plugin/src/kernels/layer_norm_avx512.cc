// Three passes over a row held in L1 (D = 768: 3 KiB): t = x (+ bias) (+ skip) - k stored into y while summing, the
// centred sum of squares, then the affine output in place. 16 float lanes, two accumulators per pass.
// k is the row's first value, as in layer_norm_avx2.cc (s - k is exact where the row lies within a factor 2 of k):
// a large common offset costs the float sums no precision.
#include <immintrin.h>

#include <cmath>

#include "kernels/layer_norm.h"

namespace onnxq::kernels {

void LayerNormAvx512(const LayerNormArgs& a, int64_t row_begin, int64_t row_end) {
  // locals, not a.*: the vector stores may alias anything, which would reload the pointers every step
  const float* const bias = a.bias;
  const float* const gamma = a.gamma;
  const float* const beta = a.beta;
  const int64_t D = a.D;
  const int64_t full = D / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (D - full)) - 1u);
  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* x = a.x + r * D;
    const float* skip = a.skip != nullptr ? a.skip + r * D : nullptr;
    float* y = a.y + r * D;
    float k = x[0];  // the shift, computed in the vector order
    if (bias != nullptr) k += bias[0];
    if (skip != nullptr) k += skip[0];
    const __m512 vk = _mm512_set1_ps(k);
    auto sum_in = [&](int64_t d, __mmask16 m) {
      __m512 s = _mm512_maskz_loadu_ps(m, x + d);
      if (bias != nullptr) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, bias + d));
      if (skip != nullptr) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, skip + d));
      const __m512 t = _mm512_maskz_sub_ps(m, s, vk);
      _mm512_mask_storeu_ps(y + d, m, t);
      return t;
    };
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t d = 0;
    for (; d + 32 <= full; d += 32) {
      acc0 = _mm512_add_ps(acc0, sum_in(d, 0xFFFF));
      acc1 = _mm512_add_ps(acc1, sum_in(d + 16, 0xFFFF));
    }
    for (; d < full; d += 16) acc0 = _mm512_add_ps(acc0, sum_in(d, 0xFFFF));
    if (tail != 0) acc1 = _mm512_add_ps(acc1, sum_in(full, tail));
    // mean = k + mean_t; the centred values are t - mean_t
    const float mean_t = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) / static_cast<float>(D);
    const __m512 vm = _mm512_set1_ps(mean_t);
    auto centred = [&](__m512 t) { return _mm512_sub_ps(t, vm); };
    acc0 = _mm512_setzero_ps();
    acc1 = _mm512_setzero_ps();
    for (d = 0; d + 32 <= full; d += 32) {
      const __m512 c0 = centred(_mm512_loadu_ps(y + d));
      const __m512 c1 = centred(_mm512_loadu_ps(y + d + 16));
      acc0 = _mm512_fmadd_ps(c0, c0, acc0);
      acc1 = _mm512_fmadd_ps(c1, c1, acc1);
    }
    for (; d < full; d += 16) {
      const __m512 c = centred(_mm512_loadu_ps(y + d));
      acc0 = _mm512_fmadd_ps(c, c, acc0);
    }
    if (tail != 0) {
      const __m512 c = _mm512_maskz_sub_ps(tail, _mm512_maskz_loadu_ps(tail, y + full), vm);
      acc1 = _mm512_fmadd_ps(c, c, acc1);
    }
    const float var = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) / static_cast<float>(D);
    const __m512 rstd = _mm512_set1_ps(1.0f / std::sqrt(var + a.epsilon));
    auto out = [&](int64_t i, __mmask16 m) {
      const __m512 n = _mm512_mul_ps(centred(_mm512_maskz_loadu_ps(m, y + i)), rstd);
      __m512 v = _mm512_mul_ps(n, _mm512_maskz_loadu_ps(m, gamma + i));
      if (beta != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, beta + i));
      _mm512_mask_storeu_ps(y + i, m, v);
    };
    for (d = 0; d < full; d += 16) out(d, 0xFFFF);
    if (tail != 0) out(full, tail);
  }
}

}  // namespace onnxq::kernels
