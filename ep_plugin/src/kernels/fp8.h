// FP8 (E4M3FN, E5M2) <-> float / bfloat16 conversions used by the FP8 GEMM family.
//
// E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa; no infinities; S.1111.111 is NaN; max 448.
// E5M2:   1 sign, 5 exponent (bias 15), 2 mantissa; IEEE-like (inf, NaN); max 57344. It is the top byte of an FP16.
// Every FP8 value is exactly representable in bfloat16 (8-bit exponent, 7-bit mantissa), so FP8 -> BF16 is exact.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace onnxq::kernels {

enum class Fp8Format { kE4M3FN, kE5M2 };

// Exact decode of one FP8 byte.
float Fp8ToFloat(uint8_t v, Fp8Format f);

// The 128-entry tables of BF16 bit patterns for the 7 magnitude bits (the sign is bit 7 of the byte and becomes
// bit 15 of the BF16): split into low and high bytes, the form vpermi2b lookups use.
struct Fp8ToBf16Tables {
  alignas(64) uint8_t lo[128];
  alignas(64) uint8_t hi[128];
};
const Fp8ToBf16Tables& GetFp8ToBf16Tables(Fp8Format f);

// ONNX QuantizeLinear to FP8 with saturate=1: round half to even, |v| beyond the max -> +-max (inf included),
// NaN -> NaN. Returns the FP8 byte.
uint8_t FloatToFp8Saturate(float v, Fp8Format f);

// float -> bfloat16 bits, round half to even, NaN quieted, denormals flushed to +-0: what vcvtneps2bf16 computes.
uint16_t FloatToBf16(float v);
float Bf16ToFloat(uint16_t b);

// Activation preparation for the bf16 GEMMs and the standalone FP8 Q / DQ. Variants: Ref (scalar, the definition),
// Avx2 (AVX2 + F16C), Avx512 (F/BW/VL; ConvertToBf16Avx512 needs AVX512-BF16) -- all bit-identical to Ref.
// x -> bf16 (FloatToBf16 per element).
void ConvertToBf16Ref(const float* x, size_t n, uint16_t* y);
void ConvertToBf16Avx2(const float* x, size_t n, uint16_t* y);
void ConvertToBf16Avx512(const float* x, size_t n, uint16_t* y);
// saturate(round_fp8(x / scale)) -> the FP8 value as bf16 (exact), i.e. QuantizeLinear then a lossless widen.
void QuantizeFp8ToBf16Ref(const float* x, size_t n, float scale, Fp8Format f, uint16_t* y);
void QuantizeFp8ToBf16Avx2(const float* x, size_t n, float scale, Fp8Format f, uint16_t* y);
void QuantizeFp8ToBf16Avx512(const float* x, size_t n, float scale, Fp8Format f, uint16_t* y);

// QuantizeLinear(saturate=1) of x / scale to FP8 bytes (the reference is FloatToFp8Saturate per element).
void QuantizeFp8Ref(const float* x, size_t n, float scale, Fp8Format f, uint8_t* y);
void QuantizeFp8Avx2(const float* x, size_t n, float scale, Fp8Format f, uint8_t* y);
void QuantizeFp8Avx512(const float* x, size_t n, float scale, Fp8Format f, uint8_t* y);
// DequantizeLinear of FP8 bytes: float(v) * scale.
void DequantizeFp8Ref(const uint8_t* v, size_t n, float scale, Fp8Format f, float* y);
void DequantizeFp8Avx2(const uint8_t* v, size_t n, float scale, Fp8Format f, float* y);
void DequantizeFp8Avx512(const uint8_t* v, size_t n, float scale, Fp8Format f, float* y);

// A conversion variant: its name ("avx512", "avx2", "ref") and entry point.
template <typename Fn>
struct Fp8Conversion {
  const char* name;
  Fn* fn;
};
using ConvertToBf16Fn = void(const float*, size_t, uint16_t*);
using QuantizeFp8ToBf16Fn = void(const float*, size_t, float, Fp8Format, uint16_t*);
using QuantizeFp8Fn = void(const float*, size_t, float, Fp8Format, uint8_t*);
using DequantizeFp8Fn = void(const uint8_t*, size_t, float, Fp8Format, float*);

// The variants usable under the ISA ceiling (GetCpuFeatures()), best first; "ref" is always last. Nodes take
// front() when they are built.
std::vector<Fp8Conversion<ConvertToBf16Fn>> ConvertToBf16Variants();
std::vector<Fp8Conversion<QuantizeFp8ToBf16Fn>> QuantizeFp8ToBf16Variants();
std::vector<Fp8Conversion<QuantizeFp8Fn>> QuantizeFp8Variants();
std::vector<Fp8Conversion<DequantizeFp8Fn>> DequantizeFp8Variants();

}  // namespace onnxq::kernels
