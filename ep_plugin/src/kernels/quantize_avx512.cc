// QuantizeLinear float -> u8 with AVX-512, bit-identical to QuantizeLinearU8Ref (same operation order:
// divide, clamp in float with NaN taking the low bound, round half to even, add the zero point).
#include <immintrin.h>

#include "kernels/quantize.h"

namespace onnxq::kernels {

void QuantizeLinearU8Avx512(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y) {
  const __m512 vs = _mm512_set1_ps(scale);
  const __m512 lo = _mm512_set1_ps(static_cast<float>(0 - zero_point));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(255 - zero_point));
  const __m512i zp = _mm512_set1_epi32(zero_point);
  size_t i = 0;
  auto one = [&](__m512 v) {
    v = _mm512_div_ps(v, vs);
    v = _mm512_max_ps(v, lo);  // vmaxps returns the second operand when the first is NaN
    v = _mm512_min_ps(v, hi);
    return _mm512_add_epi32(_mm512_cvtps_epi32(v), zp);  // MXCSR default: round half to even
  };
  for (; i + 16 <= n; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm512_cvtusepi32_epi8(one(_mm512_loadu_ps(x + i))));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_cvtusepi32_storeu_epi8(y + i, m, one(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace onnxq::kernels
