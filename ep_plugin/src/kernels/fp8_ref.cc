// Scalar FP8 / BF16 conversions: the definitions the vector versions are tested against; and the choice among
// the variants.
#include <cmath>
#include <cstring>

#include "kernels/cpu_features.h"
#include "kernels/fp8.h"

namespace onnxq::kernels {
namespace {

uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}
float FromBits(uint32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

struct FormatInfo {
  int mant_bits;
  int bias;
  float max;
  float min_normal;
};
FormatInfo Info(Fp8Format f) {
  return f == Fp8Format::kE4M3FN ? FormatInfo{3, 7, 448.0f, 0x1p-6f} : FormatInfo{2, 15, 57344.0f, 0x1p-14f};
}

Fp8ToBf16Tables MakeTables(Fp8Format f) {
  Fp8ToBf16Tables t{};
  for (int m = 0; m < 128; ++m) {
    const uint16_t b = FloatToBf16(Fp8ToFloat(static_cast<uint8_t>(m), f));
    t.lo[m] = static_cast<uint8_t>(b & 0xFF);
    t.hi[m] = static_cast<uint8_t>(b >> 8);
  }
  return t;
}

}  // namespace

float Fp8ToFloat(uint8_t v, Fp8Format f) {
  const FormatInfo fi = Info(f);
  const bool neg = (v & 0x80) != 0;
  const int exp_bits = 7 - fi.mant_bits;
  const int e = (v & 0x7F) >> fi.mant_bits;
  const int m = v & ((1 << fi.mant_bits) - 1);
  float out;
  if (f == Fp8Format::kE4M3FN && (v & 0x7F) == 0x7F) {
    out = std::nanf("");
  } else if (f == Fp8Format::kE5M2 && e == (1 << exp_bits) - 1) {
    out = m == 0 ? INFINITY : std::nanf("");
  } else if (e == 0) {
    out = std::ldexp(static_cast<float>(m), 1 - fi.bias - fi.mant_bits);
  } else {
    out = std::ldexp(1.0f + static_cast<float>(m) / static_cast<float>(1 << fi.mant_bits), e - fi.bias);
  }
  return neg ? -out : out;
}

const Fp8ToBf16Tables& GetFp8ToBf16Tables(Fp8Format f) {
  static const Fp8ToBf16Tables e4m3 = MakeTables(Fp8Format::kE4M3FN);
  static const Fp8ToBf16Tables e5m2 = MakeTables(Fp8Format::kE5M2);
  return f == Fp8Format::kE4M3FN ? e4m3 : e5m2;
}

uint8_t FloatToFp8Saturate(float v, Fp8Format f) {
  const FormatInfo fi = Info(f);
  const uint8_t sign = (Bits(v) >> 24) & 0x80;
  if (std::isnan(v)) return static_cast<uint8_t>(sign | (f == Fp8Format::kE4M3FN ? 0x7F : 0x7F));
  float a = std::fabs(v);
  if (a > fi.max) a = fi.max;  // saturate (inf included)
  uint32_t mag;
  if (a < fi.min_normal) {
    // subnormal range: multiples of min_normal / 2^mant, round half to even
    const float q = std::nearbyint(a / (fi.min_normal / static_cast<float>(1 << fi.mant_bits)));
    mag = static_cast<uint32_t>(q);  // q == 2^mant lands exactly on the smallest normal encoding
  } else {
    // round the fp32 mantissa to mant_bits, half to even, via the bit pattern
    const int drop = 23 - fi.mant_bits;
    uint32_t b = Bits(a);
    b += ((1u << (drop - 1)) - 1) + ((b >> drop) & 1u);
    b &= ~((1u << drop) - 1);
    const float r = FromBits(b) > fi.max ? fi.max : FromBits(b);
    const uint32_t rb = Bits(r);
    const int e = static_cast<int>((rb >> 23) & 0xFF) - 127 + fi.bias;
    mag = (static_cast<uint32_t>(e) << fi.mant_bits) | ((rb >> drop) & ((1u << fi.mant_bits) - 1));
  }
  return static_cast<uint8_t>(sign | mag);
}

uint16_t FloatToBf16(float v) {
  uint32_t b = Bits(v);
  if (std::isnan(v)) return static_cast<uint16_t>((b >> 16) | 0x40);  // quiet NaN, sign kept
  if ((b & 0x7F800000u) == 0) return static_cast<uint16_t>((b >> 16) & 0x8000);  // denormals flush to +-0
  b += 0x7FFF + ((b >> 16) & 1u);
  return static_cast<uint16_t>(b >> 16);
}

float Bf16ToFloat(uint16_t b) { return FromBits(static_cast<uint32_t>(b) << 16); }

void ConvertToBf16Ref(const float* x, size_t n, uint16_t* y) {
  for (size_t i = 0; i < n; ++i) y[i] = FloatToBf16(x[i]);
}

void QuantizeFp8ToBf16Ref(const float* x, size_t n, float scale, Fp8Format f, uint16_t* y) {
  for (size_t i = 0; i < n; ++i) y[i] = FloatToBf16(Fp8ToFloat(FloatToFp8Saturate(x[i] / scale, f), f));
}

void QuantizeFp8Ref(const float* x, size_t n, float scale, Fp8Format f, uint8_t* y) {
  for (size_t i = 0; i < n; ++i) y[i] = FloatToFp8Saturate(x[i] / scale, f);
}

void DequantizeFp8Ref(const uint8_t* v, size_t n, float scale, Fp8Format f, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = Fp8ToFloat(v[i], f) * scale;
}

namespace {

// AVX2 + F16C rung; the avx512 rung (F/BW/VL) for the AVX-512 file's conversions.
bool Avx2(const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c; }
bool Avx512(const CpuFeatures& f) { return f.avx512f && f.avx512bw && f.avx512vl; }

template <typename Fn>
std::vector<Fp8Conversion<Fn>> Variants(bool avx512, Fn* avx512_fn, Fn* avx2_fn, Fn* ref_fn) {
  const CpuFeatures f = GetCpuFeatures();
  std::vector<Fp8Conversion<Fn>> out;
  if (avx512) out.push_back({"avx512", avx512_fn});
  if (Avx2(f)) out.push_back({"avx2", avx2_fn});
  out.push_back({"ref", ref_fn});
  return out;
}

}  // namespace

std::vector<Fp8Conversion<ConvertToBf16Fn>> ConvertToBf16Variants() {
  const CpuFeatures f = GetCpuFeatures();  // vcvtneps2bf16
  return Variants<ConvertToBf16Fn>(Avx512(f) && f.avx512_bf16, ConvertToBf16Avx512, ConvertToBf16Avx2,
                                   ConvertToBf16Ref);
}
std::vector<Fp8Conversion<QuantizeFp8ToBf16Fn>> QuantizeFp8ToBf16Variants() {
  return Variants<QuantizeFp8ToBf16Fn>(Avx512(GetCpuFeatures()), QuantizeFp8ToBf16Avx512, QuantizeFp8ToBf16Avx2,
                                       QuantizeFp8ToBf16Ref);
}
std::vector<Fp8Conversion<QuantizeFp8Fn>> QuantizeFp8Variants() {
  return Variants<QuantizeFp8Fn>(Avx512(GetCpuFeatures()), QuantizeFp8Avx512, QuantizeFp8Avx2, QuantizeFp8Ref);
}
std::vector<Fp8Conversion<DequantizeFp8Fn>> DequantizeFp8Variants() {
  return Variants<DequantizeFp8Fn>(Avx512(GetCpuFeatures()), DequantizeFp8Avx512, DequantizeFp8Avx2,
                                   DequantizeFp8Ref);
}

}  // namespace onnxq::kernels
