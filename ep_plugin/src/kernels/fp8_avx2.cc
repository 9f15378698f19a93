// AVX2 (+F16C) activation preparation for the bf16 x FP8 GEMMs and the standalone FP8 Q / DQ; bit-identical to
// the references in fp8_ref.cc (the same rounding steps as fp8_avx512.cc, on 8 lanes).
// 16 elements per step; 32-bit lanes are narrowed with the in-lane vpackus and a vpermq restores the order. A row's
// tail runs the same vector code on a zero-padded stack copy, so every element takes one path.
// Dequantize has no vector table lookup on AVX2 (vpgatherdd is slow on Zen 1-2): the FP8 byte is rebuilt as an
// FP16 bit pattern and widened with vcvtph2ps (E5M2 is the high byte of an FP16; E4M3FN's seven magnitude bits at
// FP16 bits 7-13 give the value times 2^-8, subnormals included), and NaN codes are patched.
#include <immintrin.h>

#include <cstring>

#include "kernels/fp8.h"

namespace onnxq::kernels {
namespace {

constexpr size_t kStep = 16;

// Runs `step(in, out)` (kStep elements) over n elements; the tail goes through zero-padded stack copies.
template <typename In, typename Out, typename Step>
inline void ForEachStep(const In* x, size_t n, Out* y, Step step) {
  size_t i = 0;
  for (; i + kStep <= n; i += kStep) step(x + i, y + i);
  if (i < n) {
    In in[kStep] = {};
    Out out[kStep];
    std::memcpy(in, x + i, (n - i) * sizeof(In));
    step(in, out);
    std::memcpy(y + i, out, (n - i) * sizeof(Out));
  }
}

// Two vectors of 8 values < 2^16 in 32-bit lanes -> 16 uint16 in order.
inline void StoreU16(uint16_t* y, __m256i lo, __m256i hi) {
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), packed);
}

// Two vectors of 8 values < 2^8 in 32-bit lanes -> 16 bytes in order.
inline void StoreU8(uint8_t* y, __m256i lo, __m256i hi) {
  const __m256i w = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);  // 16 x u16, in order
  const __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(y), b);
}

// FloatToBf16 per lane, in the low 16 bits: round half to even on the bit pattern, denormals -> +-0, NaN quieted.
inline __m256i Bf16Bits(__m256 v) {
  const __m256i b = _mm256_castps_si256(v);
  const __m256i hi = _mm256_srli_epi32(b, 16);
  const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  const __m256i denormal =
      _mm256_cmpeq_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x7F800000)), _mm256_setzero_si256());
  r = _mm256_blendv_epi8(r, _mm256_and_si256(hi, _mm256_set1_epi32(0x8000)), denormal);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
}

struct Fp8Consts {
  __m256 max, min_normal, inv_quantum, quantum;
  __m256i round_base, keep_mask;
  int drop, mant_bits, bias;
};

Fp8Consts MakeConsts(Fp8Format f) {
  const bool e4m3 = f == Fp8Format::kE4M3FN;
  Fp8Consts c;
  c.mant_bits = e4m3 ? 3 : 2;
  c.bias = e4m3 ? 7 : 15;
  c.drop = 23 - c.mant_bits;
  c.max = _mm256_set1_ps(e4m3 ? 448.0f : 57344.0f);
  c.min_normal = _mm256_set1_ps(e4m3 ? 0x1p-6f : 0x1p-14f);
  c.quantum = _mm256_set1_ps(e4m3 ? 0x1p-9f : 0x1p-16f);
  c.inv_quantum = _mm256_set1_ps(e4m3 ? 0x1p9f : 0x1p16f);
  c.round_base = _mm256_set1_epi32((1 << (c.drop - 1)) - 1);
  c.keep_mask = _mm256_set1_epi32(~((1 << c.drop) - 1));
  return c;
}

// FloatToFp8Saturate's rounding of one vector, in the pieces both outputs need.
struct Rounded {
  __m256i sign;     // bit 31
  __m256 nan;       // all-ones on NaN lanes
  __m256i normal;   // |v| clamped to max and rounded to the FP8 mantissa width, as float bits (lanes >= min_normal)
  __m256 sub_q;     // |v| / quantum rounded to an integer (lanes < min_normal)
  __m256 is_sub;    // all-ones where |v| < min_normal
};

inline Rounded RoundFp8(__m256 v, const Fp8Consts& c) {
  const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
  Rounded r;
  r.sign = _mm256_castps_si256(_mm256_and_ps(v, sign_mask));
  r.nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  const __m256 a = _mm256_min_ps(_mm256_andnot_ps(sign_mask, v), c.max);  // saturate (inf too); NaN lanes patched later
  const __m256i b = _mm256_castps_si256(a);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, c.drop), _mm256_set1_epi32(1));
  r.normal = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(b, c.round_base), lsb), c.keep_mask);
  r.sub_q = _mm256_round_ps(_mm256_mul_ps(a, c.inv_quantum), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r.is_sub = _mm256_cmp_ps(a, c.min_normal, _CMP_LT_OQ);
  return r;
}

// The FP8 value as bf16 bits in the low 16 bits of each lane (exact: FP8 values have at most 3 mantissa bits).
inline __m256i Fp8ValueBf16(__m256 v, const Fp8Consts& c) {
  const Rounded r = RoundFp8(v, c);
  const __m256 sub = _mm256_mul_ps(r.sub_q, c.quantum);
  __m256i bits = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r.normal), sub, r.is_sub));
  bits = _mm256_or_si256(bits, r.sign);
  const __m256i nan = _mm256_or_si256(r.sign, _mm256_set1_epi32(0x7FC00000));
  bits = _mm256_blendv_epi8(bits, nan, _mm256_castps_si256(r.nan));
  return _mm256_srli_epi32(bits, 16);
}

// The FP8 byte in the low 8 bits of each lane.
inline __m256i Fp8Code(__m256 v, const Fp8Consts& c) {
  const Rounded r = RoundFp8(v, c);
  const __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(r.normal, 23), _mm256_set1_epi32(127 - c.bias));
  const __m256i mant = _mm256_and_si256(_mm256_srli_epi32(r.normal, c.drop), _mm256_set1_epi32((1 << c.mant_bits) - 1));
  __m256i mag = _mm256_or_si256(_mm256_slli_epi32(e, c.mant_bits), mant);
  // a subnormal's code is its multiple of the quantum (2^mant lands on the smallest normal's code)
  mag = _mm256_blendv_epi8(mag, _mm256_cvtps_epi32(r.sub_q), _mm256_castps_si256(r.is_sub));
  mag = _mm256_blendv_epi8(mag, _mm256_set1_epi32(0x7F), _mm256_castps_si256(r.nan));
  return _mm256_or_si256(mag, _mm256_srli_epi32(r.sign, 24));
}

}  // namespace

void ConvertToBf16Avx2(const float* x, size_t n, uint16_t* y) {
  ForEachStep(x, n, y, [](const float* in, uint16_t* out) {
    StoreU16(out, Bf16Bits(_mm256_loadu_ps(in)), Bf16Bits(_mm256_loadu_ps(in + 8)));
  });
}

void QuantizeFp8ToBf16Avx2(const float* x, size_t n, float scale, Fp8Format f, uint16_t* y) {
  const Fp8Consts c = MakeConsts(f);
  const __m256 vs = _mm256_set1_ps(scale);
  ForEachStep(x, n, y, [&](const float* in, uint16_t* out) {  // x / scale: a true division, as the reference
    StoreU16(out, Fp8ValueBf16(_mm256_div_ps(_mm256_loadu_ps(in), vs), c),
             Fp8ValueBf16(_mm256_div_ps(_mm256_loadu_ps(in + 8), vs), c));
  });
}

void QuantizeFp8Avx2(const float* x, size_t n, float scale, Fp8Format f, uint8_t* y) {
  const Fp8Consts c = MakeConsts(f);
  const __m256 vs = _mm256_set1_ps(scale);
  ForEachStep(x, n, y, [&](const float* in, uint8_t* out) {
    StoreU8(out, Fp8Code(_mm256_div_ps(_mm256_loadu_ps(in), vs), c),
            Fp8Code(_mm256_div_ps(_mm256_loadu_ps(in + 8), vs), c));
  });
}

void DequantizeFp8Avx2(const uint8_t* v, size_t n, float scale, Fp8Format f, float* y) {
  const bool e4m3 = f == Fp8Format::kE4M3FN;
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256 quiet_nan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000));
  ForEachStep(v, n, y, [&](const uint8_t* in, float* out) {
    const __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in)));
    const __m256i mag = _mm256_and_si256(w, _mm256_set1_epi16(0x7F));
    __m256i h, nan16;
    if (e4m3) {  // S.EEEE.MMM -> FP16 S.0EEEE.MMM0000000 = value * 2^-8; S.1111.111 is NaN
      const __m256i sign = _mm256_and_si256(w, _mm256_set1_epi16(0x80));
      h = _mm256_or_si256(_mm256_slli_epi16(mag, 7), _mm256_slli_epi16(sign, 8));
      nan16 = _mm256_cmpeq_epi16(mag, _mm256_set1_epi16(0x7F));
    } else {  // the high byte of an FP16; exponent 11111 with a nonzero mantissa is NaN
      h = _mm256_slli_epi16(w, 8);
      nan16 = _mm256_cmpgt_epi16(mag, _mm256_set1_epi16(0x7C));
    }
    auto half = [&](__m128i h8, __m128i nan8) {
      __m256 val = _mm256_cvtph_ps(h8);
      if (e4m3) val = _mm256_mul_ps(val, _mm256_set1_ps(256.0f));  // exact
      // the reference's NaN: a quiet NaN with the code's sign
      val = _mm256_blendv_ps(val, _mm256_or_ps(_mm256_and_ps(val, sign_mask), quiet_nan),
                             _mm256_castsi256_ps(_mm256_cvtepi16_epi32(nan8)));
      return _mm256_mul_ps(val, vs);
    };
    _mm256_storeu_ps(out, half(_mm256_castsi256_si128(h), _mm256_castsi256_si128(nan16)));
    _mm256_storeu_ps(out + 8, half(_mm256_extracti128_si256(h, 1), _mm256_extracti128_si256(nan16, 1)));
  });
}

}  // namespace onnxq::kernels
