// Activation quantization (float -> 8-bit) feeding the integer GEMMs.
//
// Variants of QuantizeLinearU8 (all bit-identical to the reference):
//   quantize_ref.cc     QuantizeLinearU8Ref: scalar reference (a true division)
//   quantize_avx2.cc    QuantizeLinearU8Avx2 (divide-free where QuantizeReciprocalIsExact, else dividing) and
//                       QuantizeLinearU8Avx2Divide (always vdivps); AVX2 + FMA
//   quantize_avx512.cc  the same pair on AVX-512 F/BW/VL
#pragma once
#include <cstddef>
#include <cstdint>

namespace onnxq::kernels {

// y = saturate(round_half_even(x / scale) + zero_point) into [0, 255]; NaN saturates to 0.
// This is ONNX QuantizeLinear with the same operation order as onnxruntime's CPU kernel (divide, clamp in
// float, round, add zero point), so results match it bit for bit.
// Signed (s8) targets use the same function with zero_point + 128: the stored byte is then the s8 value
// shifted into u8, which is what the u8 x s8 kernels consume.
void QuantizeLinearU8Ref(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y);

// AVX-512 variant (call only when the CPU has AVX512F/BW/VL): without a divide where
// QuantizeReciprocalIsExact(scale, zero_point), else with vdivps (QuantizeLinearU8Avx512Divide).
void QuantizeLinearU8Avx512(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y);
void QuantizeLinearU8Avx512Divide(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y);
// AVX2 + FMA variants (call only when the CPU has them), the same split.
void QuantizeLinearU8Avx2(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y);
void QuantizeLinearU8Avx2Divide(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y);
// Whether the divide-free form is exact for this scale and zero point (plain x86-64 code: callable on any CPU).
bool QuantizeReciprocalIsExact(float scale, int32_t zero_point);

// The fastest variant available on this CPU under the ISA ceiling (GetCpuFeatures()).
using QuantizeLinearU8Fn = void (*)(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y);
QuantizeLinearU8Fn SelectQuantizeLinearU8();
// The always-dividing variant of the best ISA available (tests and benchmarks), or null at the scalar level (the
// reference is the only dividing form there).
QuantizeLinearU8Fn SelectQuantizeLinearU8Divide();

// s8 -> u8 by adding 128 (xor 0x80); the caller adds 128 to the zero point.
void ShiftS8ToU8Ref(const int8_t* x, size_t n, uint8_t* y);

}  // namespace onnxq::kernels
