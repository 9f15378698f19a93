// The divide-free QuantizeLinear step on 16 floats (see quantize_avx512.cc for why it is exact), shared by the
// row quantizer and the sparse kernel's fused quantize-and-repack. Include only from AVX-512-compiled files.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace onnxq::kernels {

// Valid where QuantizeReciprocalIsExact(scale, zero_point).
struct ReciprocalQuantizer {
  __m512 s, y, limit, neg_limit;
  __m512i zp;

  ReciprocalQuantizer(float scale, int32_t zero_point)
      : s(_mm512_set1_ps(scale)),
        y(_mm512_set1_ps(1.0f / scale)),           // correctly rounded reciprocal
        limit(_mm512_set1_ps(256.0f * scale)),     // exact: a power-of-two multiple
        neg_limit(_mm512_set1_ps(-256.0f * scale)),
        zp(_mm512_set1_epi32(zero_point)) {}

  // round_half_even(v / scale) + zero_point as int32, with |round(v / scale)| <= 256: saturate to u8 afterwards
  // (negative -> 0, above 255 -> 255), e.g. with packus or max + vpmovusdb.
  __m512i operator()(__m512 v) const {
    v = _mm512_min_ps(_mm512_max_ps(v, neg_limit), limit);  // NaN -> -256 s (vmaxps returns the 2nd operand)
    const __m512 q0 = _mm512_mul_ps(v, y);
    const __m512 r = _mm512_fnmadd_ps(q0, s, v);  // v - q0 * s, exact
    const __m512 q = _mm512_fmadd_ps(r, y, q0);   // RN(v / s)
    return _mm512_add_epi32(_mm512_cvtps_epi32(q), zp);  // MXCSR default: round half to even
  }
};

}  // namespace onnxq::kernels
