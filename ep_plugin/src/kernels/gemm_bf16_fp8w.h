// FP8-weight GEMM family: bf16 activations x FP8 (E4M3FN / E5M2) weights -> fp32 accumulation -> fused epilogue.
//
//   C[m, n] = (sum_k A[m, k] * W[k, n]) * scale[n] + bias[n]      (A, W exact in bf16; sum in fp32)
//
// Weights stay FP8 in memory (1 byte each: a quarter of FP32's traffic) and are widened to bf16 in registers with
// two vpermi2b table lookups per 64 weights; vdpbf16ps does the multiply-adds. For more than one row tile, each
// 64-column weight panel is widened once into an L2-resident bf16 buffer and reused by every row (the conversion
// is then paid once per panel, not once per row tile). Accumulation order differs between variants, so variants
// agree with the reference within fp32 summation error, not bit for bit.
//
//   gemm_bf16_fp8w_ref.cc        scalar reference, row-major weights
//   gemm_bf16_fp8w_avx2.cc       AVX2 + FMA + F16C: FP8 widened through FP16 bits to fp32, FMA; 6 x 16 tile
//   gemm_bf16_fp8w_avx512bf16.cc AVX512-BF16 + VBMI: 6 x 64 tile
//   gemm_bf16_fp8w_amx.cc        AMX-BF16: tdpbf16ps on 2 x 2 tiles (32 x 32 per step) over each widened panel
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/aligned_buffer.h"
#include "kernels/fp8.h"

namespace onnxq::kernels {

enum class WeightLayoutFp8 {
  kRowMajorKN,          // W[k * N + n]                                              (reference)
  kPanelsK2N64Permuted, // [N/64][K/2][2 chunks x 64 bytes], bytes ordered for the unpack after vpermi2b
  kPanelsK2N64PermutedAmx,  // the same, K padded to 32 (whole 16-pair B tiles)
  kPanelsK1N16,         // [N/16][k_padded][16 columns] bytes                                (AVX2)
};

struct PackedWeightsFp8 {
  int64_t K = 0;
  int64_t N = 0;
  int64_t k_padded = 0;  // K rounded up to even (pad rows are +0.0)
  Fp8Format format = Fp8Format::kE4M3FN;
  WeightLayoutFp8 layout = WeightLayoutFp8::kRowMajorKN;
  int64_t panel_width = 1;
  AlignedBuffer<uint8_t> data;
  // kPanelsK1N16 only, length N: what the AVX2 kernel multiplies each column's sum by before the scale — 2^8 for
  // E4M3FN (its FP16-bit widening is the value times 2^-8), 1 for E5M2; NaN where the column holds a NaN weight.
  std::vector<float> column_factor;
};

struct GemmBf16Fp8Args {
  int64_t M = 0;
  const uint16_t* A = nullptr;  // bf16, M x K, leading dimension lda (even), rows readable up to k_padded
  int64_t lda = 0;
  const PackedWeightsFp8* B = nullptr;
  const float* scale = nullptr;  // length N
  const float* bias = nullptr;   // length N or null
  float* C = nullptr;
  int64_t ldc = 0;
};

using GemmBf16Fp8Fn = void (*)(const GemmBf16Fp8Args& args, int64_t m_begin, int64_t m_end, int64_t n_begin,
                               int64_t n_end);

// Same product with B already widened to bf16 and packed per call (activation x activation MatMuls): `panels` is
// [ceil(N/64)][k_padded/2][64 columns][2 K] bf16, as PackBf16Panels writes it; args.B carries only K, N, k_padded.
using GemmBf16PanelsFn = void (*)(const GemmBf16Fp8Args& args, const uint16_t* panels, int64_t m_begin,
                                  int64_t m_end, int64_t n_begin, int64_t n_end);

struct GemmBf16Fp8Kernel {
  const char* name;
  WeightLayoutFp8 layout;
  int64_t panel_width;
  int64_t m_step;
  GemmBf16Fp8Fn compute;
  GemmBf16PanelsFn compute_bf16_panels;
  int64_t m_align = 1;  // activation rows are read in blocks of m_align rows (A buffers are sized for it)
};

// b is K x N bf16 with leading dimension ldb; out has Bf16PanelsSize(K, N) elements (pad rows/columns are +0).
size_t Bf16PanelsSize(int64_t K, int64_t N);
void PackBf16Panels(const uint16_t* b, int64_t K, int64_t N, int64_t ldb, uint16_t* out);
void PackBf16PanelsAvx512(const uint16_t* b, int64_t K, int64_t N, int64_t ldb, uint16_t* out);  // same output

std::vector<const GemmBf16Fp8Kernel*> AvailableGemmBf16Fp8Kernels();  // best first; "ref" always last
const GemmBf16Fp8Kernel& SelectGemmBf16Fp8Kernel();                    // ONNXQ_FP8_KERNEL=<name> forces one
const GemmBf16Fp8Kernel* FindGemmBf16Fp8Kernel(const char* name);
bool HasFastGemmBf16Fp8Kernel();  // a vector variant exists on this CPU (the EP claims FP8 only then)

// w is K x N row-major FP8 bytes.
PackedWeightsFp8 PackWeightsFp8(WeightLayoutFp8 layout, const uint8_t* w, int64_t K, int64_t N, Fp8Format format);

const GemmBf16Fp8Kernel& GemmBf16Fp8RefKernel();
const GemmBf16Fp8Kernel* GemmBf16Fp8Avx2Kernel();
const GemmBf16Fp8Kernel* GemmBf16Fp8Avx512Kernel();
const GemmBf16Fp8Kernel* GemmBf16Fp8AmxKernel();  // null unless compiled in and the OS grants AMX tile state

}  // namespace onnxq::kernels
