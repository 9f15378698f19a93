// AVX-512 activation preparation for the bf16 GEMMs; bit-identical to the references in fp8_ref.cc.
#include <immintrin.h>

#include "kernels/fp8.h"

namespace onnxq::kernels {

void ConvertToBf16Avx512(const float* x, size_t n, uint16_t* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm256_mask_storeu_epi16(y + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

namespace {

struct Fp8Consts {
  __m512 max, min_normal, inv_quantum, quantum;
  __m512i round_base, keep_mask;
  int drop;
};

inline __m512i QuantizeFp8Bits(__m512 v, const Fp8Consts& c) {
  const __m512i vb = _mm512_castps_si512(v);
  const __m512i sign = _mm512_and_si512(vb, _mm512_set1_epi32(static_cast<int>(0x80000000u)));
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  __m512 a = _mm512_abs_ps(v);
  a = _mm512_min_ps(a, c.max);  // saturate; NaN lanes are replaced below
  // normal range: round the fp32 mantissa to the FP8 width, half to even, on the bit pattern
  __m512i b = _mm512_castps_si512(a);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, c.drop), _mm512_set1_epi32(1));
  b = _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(b, c.round_base), lsb), c.keep_mask);
  // subnormal range: multiples of the quantum, half to even
  const __m512 sub = _mm512_mul_ps(
      _mm512_roundscale_ps(_mm512_mul_ps(a, c.inv_quantum), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), c.quantum);
  const __mmask16 is_sub = _mm512_cmp_ps_mask(a, c.min_normal, _CMP_LT_OQ);
  __m512i r = _mm512_mask_blend_epi32(is_sub, b, _mm512_castps_si512(sub));
  r = _mm512_or_si512(r, sign);
  r = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(sign, _mm512_set1_epi32(0x7FC00000)));
  return _mm512_srli_epi32(r, 16);  // exact: FP8 values have at most 3 mantissa bits
}

}  // namespace

namespace {

// FP8 byte of each lane's saturate(round(v)): the same rounding as QuantizeFp8Bits, then the FP8 encoding.
inline __m128i QuantizeFp8Bytes(__m512 v, const Fp8Consts& c, int mant_bits, int bias) {
  const __m512i vb = _mm512_castps_si512(v);
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(vb, 24), _mm512_set1_epi32(0x80));
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  __m512 a = _mm512_min_ps(_mm512_abs_ps(v), c.max);
  __m512i b = _mm512_castps_si512(a);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, c.drop), _mm512_set1_epi32(1));
  b = _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(b, c.round_base), lsb), c.keep_mask);
  const __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(b, 23), _mm512_set1_epi32(127 - bias));
  const __m512i mant = _mm512_and_si512(_mm512_srli_epi32(b, c.drop), _mm512_set1_epi32((1 << mant_bits) - 1));
  __m512i mag = _mm512_or_si512(_mm512_slli_epi32(e, mant_bits), mant);
  const __m512i sub = _mm512_cvtps_epi32(
      _mm512_roundscale_ps(_mm512_mul_ps(a, c.inv_quantum), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  mag = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(a, c.min_normal, _CMP_LT_OQ), mag, sub);
  mag = _mm512_mask_blend_epi32(nan, mag, _mm512_set1_epi32(0x7F));
  return _mm512_cvtepi32_epi8(_mm512_or_si512(mag, sign));
}

Fp8Consts MakeConsts(Fp8Format f) {
  const bool e4m3 = f == Fp8Format::kE4M3FN;
  Fp8Consts c;
  c.drop = e4m3 ? 20 : 21;
  c.max = _mm512_set1_ps(e4m3 ? 448.0f : 57344.0f);
  c.min_normal = _mm512_set1_ps(e4m3 ? 0x1p-6f : 0x1p-14f);
  c.quantum = _mm512_set1_ps(e4m3 ? 0x1p-9f : 0x1p-16f);
  c.inv_quantum = _mm512_set1_ps(e4m3 ? 0x1p9f : 0x1p16f);
  c.round_base = _mm512_set1_epi32((1 << (c.drop - 1)) - 1);
  c.keep_mask = _mm512_set1_epi32(~((1 << c.drop) - 1));
  return c;
}

}  // namespace

void QuantizeFp8Avx512(const float* x, size_t n, float scale, Fp8Format f, uint8_t* y) {
  const Fp8Consts c = MakeConsts(f);
  const int mant = f == Fp8Format::kE4M3FN ? 3 : 2, bias = f == Fp8Format::kE4M3FN ? 7 : 15;
  const __m512 vs = _mm512_set1_ps(scale);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     QuantizeFp8Bytes(_mm512_div_ps(_mm512_loadu_ps(x + i), vs), c, mant, bias));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm_mask_storeu_epi8(y + i, m, QuantizeFp8Bytes(_mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vs), c, mant, bias));
  }
}

void DequantizeFp8Avx512(const uint8_t* v, size_t n, float scale, Fp8Format f, float* y) {
  // As DequantizeFp8Avx2: each byte rebuilt as an FP16 bit pattern and widened with vcvtph2ps (E5M2 is the high
  // byte of an FP16; E4M3FN's magnitude bits at FP16 bits 7-13 give the value times 2^-8), NaN codes patched to
  // the reference's quiet NaN. About 3x faster than a vgatherdps table lookup on Zen 4 / 5.
  const bool e4m3 = f == Fp8Format::kE4M3FN;
  const __m512 vs = _mm512_set1_ps(scale);
  const __m512i quiet_nan = _mm512_set1_epi32(0x7FC00000);
  auto widen = [&](__m256i w, __mmask16 nan) {  // 16 codes widened to u16 -> 16 floats
    const __m256i mag = _mm256_and_si256(w, _mm256_set1_epi16(0x7F));
    const __m256i h = e4m3 ? _mm256_or_si256(_mm256_slli_epi16(mag, 7),
                                             _mm256_slli_epi16(_mm256_and_si256(w, _mm256_set1_epi16(0x80)), 8))
                           : _mm256_slli_epi16(w, 8);
    __m512 val = _mm512_cvtph_ps(h);
    if (e4m3) val = _mm512_mul_ps(val, _mm512_set1_ps(256.0f));  // exact
    const __m512i sign = _mm512_and_si512(_mm512_castps_si512(val), _mm512_set1_epi32(static_cast<int>(0x80000000u)));
    val = _mm512_mask_mov_ps(val, nan, _mm512_castsi512_ps(_mm512_or_si512(sign, quiet_nan)));
    return _mm512_mul_ps(val, vs);
  };
  auto nan_mask = [&](__m256i w) -> __mmask16 {
    const __m256i mag = _mm256_and_si256(w, _mm256_set1_epi16(0x7F));
    return e4m3 ? _mm256_cmpeq_epi16_mask(mag, _mm256_set1_epi16(0x7F))
                : _mm256_cmpgt_epi16_mask(mag, _mm256_set1_epi16(0x7C));
  };
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + i)));
    _mm512_storeu_ps(y + i, widen(w, nan_mask(w)));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m256i w = _mm256_cvtepu8_epi16(_mm_maskz_loadu_epi8(m, v + i));
    _mm512_mask_storeu_ps(y + i, m, widen(w, nan_mask(w)));
  }
}

void QuantizeFp8ToBf16Avx512(const float* x, size_t n, float scale, Fp8Format f, uint16_t* y) {
  const Fp8Consts c = MakeConsts(f);
  const __m512 vs = _mm512_set1_ps(scale);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i r = QuantizeFp8Bits(_mm512_div_ps(_mm512_loadu_ps(x + i), vs), c);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtepi32_epi16(r));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512i r = QuantizeFp8Bits(_mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vs), c);
    _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtepi32_epi16(r));
  }
}

}  // namespace onnxq::kernels
