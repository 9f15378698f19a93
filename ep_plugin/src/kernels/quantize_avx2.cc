// QuantizeLinear float -> u8 with AVX2 + FMA, bit-identical to QuantizeLinearU8Ref (divide, clamp in float with NaN
// taking the low bound, round half to even, add the zero point). The same two variants as quantize_avx512.cc:
//   divide-free  where QuantizeReciprocalIsExact(scale, zero_point): x clamped to |x| <= 256 s (NaN to -256 s),
//                q0 = RN(x * RN(1/s)), the residual x - q0 * s exact in one FMA, RN(q0 + r * RN(1/s)) = RN(x / s)
//                (Markstein); the u8 clamp then happens on the rounded integer (saturating packs), which is the same
//                for integer bounds. tools/quantize_exhaustive.cc checks every float32 x for a set of scales.
//   divide       vdivps, then the reference's float clamp; for every other scale and zero point.
// vdivps ymm issues once per 5-10 cycles on the AVX2 class (Zen 1: 8-10 per 8 floats), so the divide-free form
// is the one the EP runs.
#include <immintrin.h>

#include <cstring>

#include "kernels/quantize.h"

namespace onnxq::kernels {
namespace {

// int32 lanes of four vectors (32 values) -> 32 u8 with signed -> unsigned saturation, in order. The packs work per
// 128-bit lane, so a dword permutation restores the order.
inline __m256i PackU8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  return _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// `one(p)` quantizes the 8 floats at p to int32 (out-of-range values saturate in the packs). Whole blocks of 32,
// then of 8, then a tail through a zero-padded copy.
template <typename One>
inline void QuantizeBlocks(const float* x, size_t n, uint8_t* y, One one) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), PackU8(one(x + i), one(x + i + 8), one(x + i + 16), one(x + i + 24)));
  auto eight = [&](const float* p) {  // 8 values -> the low 8 bytes
    const __m256i v = one(p);
    return _mm256_castsi256_si128(PackU8(v, v, v, v));
  };
  for (; i + 8 <= n; i += 8) _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), eight(x + i));
  if (i < n) {
    float tail[8] = {};
    std::memcpy(tail, x + i, (n - i) * sizeof(float));
    alignas(16) uint8_t out[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(out), eight(tail));
    std::memcpy(y + i, out, n - i);
  }
}

void QuantizeDivide(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y) {
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(0 - zero_point));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(255 - zero_point));
  const __m256i zp = _mm256_set1_epi32(zero_point);
  QuantizeBlocks(x, n, y, [&](const float* p) {
    __m256 v = _mm256_div_ps(_mm256_loadu_ps(p), vs);
    v = _mm256_max_ps(v, lo);  // vmaxps returns the second operand when the first is NaN
    v = _mm256_min_ps(v, hi);
    return _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);  // MXCSR default: round half to even
  });
}

void QuantizeReciprocal(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256 r = _mm256_set1_ps(1.0f / scale);             // correctly rounded reciprocal
  const __m256 limit = _mm256_set1_ps(256.0f * scale);       // exact: a power-of-two multiple
  const __m256 neg_limit = _mm256_set1_ps(-256.0f * scale);
  const __m256i zp = _mm256_set1_epi32(zero_point);
  QuantizeBlocks(x, n, y, [&](const float* p) {
    const __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(p), neg_limit), limit);  // NaN -> -256 s
    const __m256 q0 = _mm256_mul_ps(v, r);
    const __m256 res = _mm256_fnmadd_ps(q0, s, v);  // v - q0 * s, exact
    const __m256 q = _mm256_fmadd_ps(res, r, q0);   // RN(v / s)
    return _mm256_add_epi32(_mm256_cvtps_epi32(q), zp);
  });
}

}  // namespace

void QuantizeLinearU8Avx2(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y) {
  if (QuantizeReciprocalIsExact(scale, zero_point)) return QuantizeReciprocal(x, n, scale, zero_point, y);
  QuantizeDivide(x, n, scale, zero_point, y);
}

void QuantizeLinearU8Avx2Divide(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y) {
  QuantizeDivide(x, n, scale, zero_point, y);
}

}  // namespace onnxq::kernels
