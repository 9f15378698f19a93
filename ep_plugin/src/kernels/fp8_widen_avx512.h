// FP8 -> BF16 widening in registers (AVX512-VBMI vpermi2b lookups). Include only from files compiled with
// AVX-512 VBMI flags.
#pragma once
#include <immintrin.h>

#include "kernels/fp8.h"

namespace onnxq::kernels {
namespace {

struct Tables {
  __m512i lo_a, lo_b, hi_a, hi_b;
};

Tables LoadTables(Fp8Format f) {
  const Fp8ToBf16Tables& t = GetFp8ToBf16Tables(f);
  return {_mm512_load_si512(t.lo), _mm512_load_si512(t.lo + 64), _mm512_load_si512(t.hi),
          _mm512_load_si512(t.hi + 64)};
}

// 64 FP8 bytes (laid out by PackWeightsFp8) -> two registers of 32 bf16 (16 columns x 2 K each).
inline void Widen64(const uint8_t* p, const Tables& t, __m512i& w0, __m512i& w1) {
  const __m512i bytes = _mm512_loadu_si512(p);
  const __m512i lo = _mm512_permutex2var_epi8(t.lo_a, bytes, t.lo_b);  // index bits 6:0 select the magnitude
  __m512i hi = _mm512_permutex2var_epi8(t.hi_a, bytes, t.hi_b);
  hi = _mm512_ternarylogic_epi32(hi, bytes, _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);  // hi | (bytes & sign)
  w0 = _mm512_unpacklo_epi8(lo, hi);
  w1 = _mm512_unpackhi_epi8(lo, hi);
}

}  // namespace
}  // namespace onnxq::kernels
