// QuantizeLinear float -> u8 with AVX-512, bit-identical to QuantizeLinearU8Ref (divide, clamp in float with NaN
// taking the low bound, round half to even, add the zero point).
//
// vdivps is the bottleneck of the plain version (Zen 4: one zmm divide per ~5 cycles). For scales in a safe range
// the quotient is instead computed without a divide, still correctly rounded: with y = RN(1/s), q0 = RN(x * y)
// is within one ulp of x / s, the residual r = x - q0 * s is exact in one FMA, and RN(q0 + r * y) = RN(x / s)
// (Markstein's theorem; tools/quantize_exhaustive.cc checks every float32 x for a set of scales). x is first clamped
// to |x| <= 256 s (NaN to -256 s, so it ends at the low bound as in the reference) so nothing overflows; the clamp
// to the u8 range then happens on the rounded integer (saturating packs), which is the same for integer bounds.
// Zen 4, 128 x 768 floats: 6.6 cycles per 16 values with the divide, 4.x without.
#include <immintrin.h>

#include <cmath>

#include "kernels/quantize.h"
#include "kernels/quantize_avx512.h"

namespace onnxq::kernels {
namespace {

void QuantizeDivide(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y) {
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

void QuantizeReciprocal(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y) {
  const ReciprocalQuantizer quantize(scale, zero_point);
  // int32 -> u8 with signed-to-unsigned saturation (negative, i.e. below the low bound, to 0; above 255 to 255) in
  // two packs per 64 values; the packs work per 128-bit lane, so one dword permutation restores the order
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  auto one = [&](const float* p) { return quantize(_mm512_loadu_ps(p)); };
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i ab = _mm512_packus_epi32(one(x + i), one(x + i + 16));
    const __m512i cd = _mm512_packus_epi32(one(x + i + 32), one(x + i + 48));
    _mm512_storeu_si512(y + i, _mm512_permutexvar_epi32(order, _mm512_packus_epi16(ab, cd)));
  }
  const __m512i zero = _mm512_setzero_si512();
  for (; i + 16 <= n; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm512_cvtusepi32_epi8(_mm512_max_epi32(one(x + i), zero)));
  if (i < n) {
    float tail[16] = {};
    for (size_t j = i; j < n; ++j) tail[j - i] = x[j];
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_cvtusepi32_storeu_epi8(y + i, m, _mm512_max_epi32(one(tail), zero));
  }
}

}  // namespace

void QuantizeLinearU8Avx512(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y) {
  if (QuantizeReciprocalIsExact(scale, zero_point)) return QuantizeReciprocal(x, n, scale, zero_point, y);
  QuantizeDivide(x, n, scale, zero_point, y);
}

void QuantizeLinearU8Avx512Divide(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y) {
  QuantizeDivide(x, n, scale, zero_point, y);
}

}  // namespace onnxq::kernels
