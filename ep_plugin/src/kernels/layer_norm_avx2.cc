// AVX2 (+FMA) residual + LayerNorm: the passes of layer_norm_avx512.cc with 8 float lanes and four accumulators
// per pass (32 partial sums; hides the add / FMA latency on 2x128-bit and 2x256-bit FPUs alike). A row of
// D = 768 (3 KiB) stays in L1 across the three passes. Row tails (D % 8) use vmaskmov loads / stores.
//
// The row is shifted by its first value k as it is summed, t = s - k (exact, Sterbenz, where the row's values lie
// within a factor 2 of k), and t is what pass 1 stores: a residual stream with a large common offset then loses no
// precision to the float sums, and the centred values t - mean(t) are as accurate as for an offset-free row.
#include <immintrin.h>

#include <cmath>

#include "kernels/layer_norm.h"

namespace onnxq::kernels {
namespace {

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lane mask of the first `n` (0..7) lanes, for vmaskmov.
inline __m256i TailMask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace

void LayerNormAvx2(const LayerNormArgs& a, int64_t row_begin, int64_t row_end) {
  // locals, not a.*: the vector stores may alias anything (__m256_u), which would reload the pointers every step
  const float* const bias = a.bias;
  const float* const gamma = a.gamma;
  const float* const beta = a.beta;
  const int64_t D = a.D;
  const int64_t full = D / 8 * 8;
  const bool has_tail = full < D;
  const __m256i tail = TailMask(D - full);
  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* x = a.x + r * D;
    const float* skip = a.skip != nullptr ? a.skip + r * D : nullptr;
    float* y = a.y + r * D;
    // the shift: s[0], computed in the same order as the vector sums below
    float k = x[0];
    if (bias != nullptr) k += bias[0];
    if (skip != nullptr) k += skip[0];
    const __m256 vk = _mm256_set1_ps(k);

    // pass 1: t = ((x + bias) + skip) - k into y, summing t
    auto sum_in = [&](int64_t d) {
      __m256 s = _mm256_loadu_ps(x + d);
      if (bias != nullptr) s = _mm256_add_ps(s, _mm256_loadu_ps(bias + d));
      if (skip != nullptr) s = _mm256_add_ps(s, _mm256_loadu_ps(skip + d));
      const __m256 t = _mm256_sub_ps(s, vk);
      _mm256_storeu_ps(y + d, t);
      return t;
    };
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
           acc3 = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d + 32 <= full; d += 32) {
      acc0 = _mm256_add_ps(acc0, sum_in(d));
      acc1 = _mm256_add_ps(acc1, sum_in(d + 8));
      acc2 = _mm256_add_ps(acc2, sum_in(d + 16));
      acc3 = _mm256_add_ps(acc3, sum_in(d + 24));
    }
    for (; d < full; d += 8) acc0 = _mm256_add_ps(acc0, sum_in(d));
    if (has_tail) {
      __m256 s = _mm256_maskload_ps(x + full, tail);
      if (bias != nullptr) s = _mm256_add_ps(s, _mm256_maskload_ps(bias + full, tail));
      if (skip != nullptr) s = _mm256_add_ps(s, _mm256_maskload_ps(skip + full, tail));
      const __m256 t = _mm256_and_ps(_mm256_sub_ps(s, vk), _mm256_castsi256_ps(tail));
      _mm256_maskstore_ps(y + full, tail, t);
      acc1 = _mm256_add_ps(acc1, t);
    }
    // mean = k + mean_t; the centred values are t - mean_t
    const float mean_t = HorizontalSum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3))) /
                         static_cast<float>(D);
    const __m256 vm = _mm256_set1_ps(mean_t);
    auto centred = [&](__m256 t) { return _mm256_sub_ps(t, vm); };

    // pass 2: sum of squares of the centred values
    acc0 = acc1 = acc2 = acc3 = _mm256_setzero_ps();
    for (d = 0; d + 32 <= full; d += 32) {
      const __m256 c0 = centred(_mm256_loadu_ps(y + d)), c1 = centred(_mm256_loadu_ps(y + d + 8));
      const __m256 c2 = centred(_mm256_loadu_ps(y + d + 16)), c3 = centred(_mm256_loadu_ps(y + d + 24));
      acc0 = _mm256_fmadd_ps(c0, c0, acc0);
      acc1 = _mm256_fmadd_ps(c1, c1, acc1);
      acc2 = _mm256_fmadd_ps(c2, c2, acc2);
      acc3 = _mm256_fmadd_ps(c3, c3, acc3);
    }
    for (; d < full; d += 8) {
      const __m256 c = centred(_mm256_loadu_ps(y + d));
      acc0 = _mm256_fmadd_ps(c, c, acc0);
    }
    if (has_tail) {
      const __m256 c = _mm256_and_ps(centred(_mm256_maskload_ps(y + full, tail)), _mm256_castsi256_ps(tail));
      acc1 = _mm256_fmadd_ps(c, c, acc1);
    }
    const float var = HorizontalSum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3))) /
                      static_cast<float>(D);
    const __m256 rstd = _mm256_set1_ps(1.0f / std::sqrt(var + a.epsilon));

    // pass 3: y = centred * rstd * gamma + beta, in place
    auto out = [&](__m256 t, __m256 g, __m256 b) {
      return _mm256_fmadd_ps(_mm256_mul_ps(centred(t), rstd), g, b);
    };
    const __m256 zero = _mm256_setzero_ps();
    for (d = 0; d < full; d += 8) {
      const __m256 b = beta != nullptr ? _mm256_loadu_ps(beta + d) : zero;
      _mm256_storeu_ps(y + d, out(_mm256_loadu_ps(y + d), _mm256_loadu_ps(gamma + d), b));
    }
    if (has_tail) {
      const __m256 b = beta != nullptr ? _mm256_maskload_ps(beta + full, tail) : zero;
      _mm256_maskstore_ps(y + full, tail,
                          out(_mm256_maskload_ps(y + full, tail), _mm256_maskload_ps(gamma + full, tail), b));
    }
  }
}

}  // namespace onnxq::kernels
