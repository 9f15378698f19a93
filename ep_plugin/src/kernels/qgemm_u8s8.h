// Quantized GEMM family: u8 activations x s8 weights -> int32 accumulators -> fused float epilogue.
//
//   C[m, n] = float(sum_k (A[m, k] - a_zero_point) * (B[k, n] - b_zero_point[n])) * scale[n] + bias[n]
//
// Every variant computes exactly this: the integer sum is exact (int32, K <= kQGemmMaxK), and the epilogue is one
// float multiply then one float add, in that order, never fused into an FMA (built with -ffp-contract=off) —
// the same as onnxruntime's integer route, so results match bit for bit.
//
// Variants (one translation unit each, compiled with its own ISA flags, picked at run time):
//   qgemm_u8s8_ref.cc          scalar reference, row-major weights
//   qgemm_u8s8_avx2.cc         AVX2 (exact; no vpmaddubsw saturation): u8/s8 widened to s16 + vpmaddwd on 4 x 24
//                              tiles; below 16 rows the sign trick (|a - 128| x sign-adjusted weight, vpmaddubsw)
//                              where no weight is -128 (else s16 widened in registers below 4 rows)
//   qgemm_u8s8_avx512vnni.cc   AVX512-VNNI: vpdpbusd, 6 x 64 register tile, 4-K groups
// Weights are packed once (per variant layout) by PackWeightsS8; packing is scalar and lives in
// qgemm_u8s8_pack.cc. Activation buffers follow the variant's k_align / m_align (see QGemmU8S8Kernel).
//   qgemm_u8s8_amx.cc          AMX-INT8: tdpbusd on 2 x 2 tiles of 16 x 16 int32 (32 rows x 32 columns per step)
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/aligned_buffer.h"

namespace onnxq::kernels {

// |acc| <= K * 255 * 255 must fit in int32, so K is capped (larger K is left to onnxruntime).
constexpr int64_t kQGemmMaxK = 33025;

inline int64_t RoundUpK(int64_t K) { return (K + 3) / 4 * 4; }
inline int64_t RoundUp(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

enum class WeightLayoutS8 {
  kRowMajorKN,      // B[k * N + n]                                      (reference)
  kPanelsK4N24,     // [N/24 panels][K/4][24 cols][4 k]  s8              (AVX2)
  kPanelsK4N64,     // [N/64 panels][K/4][64 cols][4 k]  s8              (AVX512-VNNI)
  kPanelsK4N64Amx,  // the same, K padded to 64 (whole 16-row B tiles)    (AMX-INT8)
};

struct PackedWeightsS8 {
  int64_t K = 0;
  int64_t N = 0;
  WeightLayoutS8 layout = WeightLayoutS8::kRowMajorKN;
  int64_t panel_width = 1;  // columns per panel (N is padded up to a multiple, pad columns are zero)
  int64_t k_padded = 0;     // K rounded up for the layout's K groups (pad rows are zero)
  AlignedBuffer<int8_t> data;
  std::vector<int32_t> zero_point;  // per output column, length N
  std::vector<int32_t> col_sum;     // sum_k B[k, n], length N (zero-point compensation)
  bool has_zero_point = false;      // any zero_point[n] != 0
  bool has_minus_128 = true;        // some weight may be -128 (false only when the packer checked every weight)
};

struct QGemmEpilogue {
  const float* scale = nullptr;  // length N: a_scale * b_scale[n]
  const float* bias = nullptr;   // length N, or null
};

struct QGemmU8S8Args {
  int64_t M = 0;
  // M x K, leading dimension lda >= RoundUp(K, k_align); rows readable up to RoundUp(M, m_align) (contents of pad
  // bytes and rows do not matter: pad weights are zero and pad rows are never stored).
  const uint8_t* A = nullptr;
  int64_t lda = 0;
  int32_t a_zero_point = 0;
  const PackedWeightsS8* B = nullptr;
  QGemmEpilogue epilogue;
  float* C = nullptr;  // M x N, leading dimension ldc
  int64_t ldc = 0;
};

// Computes rows [m_begin, m_end) and columns [n_begin, n_end) of C; n_begin is a multiple of panel_width.
using QGemmU8S8Fn = void (*)(const QGemmU8S8Args& args, int64_t m_begin, int64_t m_end, int64_t n_begin,
                             int64_t n_end);

struct QGemmU8S8Kernel {
  const char* name;
  WeightLayoutS8 layout;
  int64_t panel_width;  // column granularity of work splitting
  int64_t m_step;       // row granularity of work splitting that keeps the register tile full
  QGemmU8S8Fn compute;
  int64_t k_align = 4;  // activation rows are read in chunks of k_align bytes
  int64_t m_align = 1;  // activation rows are read in blocks of m_align rows
};

// The reference and every variant compiled in and supported by this CPU, best first.
std::vector<const QGemmU8S8Kernel*> AvailableQGemmU8S8Kernels();
// The best available variant; ONNXQ_QGEMM_KERNEL=<name> forces one (for tests and benchmarks).
const QGemmU8S8Kernel& SelectQGemmU8S8Kernel();
const QGemmU8S8Kernel* FindQGemmU8S8Kernel(const char* name);

// b is K x N row-major; b_zero_point has length N (per column), 1 (per tensor) or is null.
PackedWeightsS8 PackWeightsS8(WeightLayoutS8 layout, const int8_t* b, int64_t K, int64_t N,
                              const int8_t* b_zero_point, int64_t b_zero_point_len);

// Per-call packing for activation x activation products: reuses `out`'s storage (no allocation once warm) and
// uses a vector path for the VNNI / AMX layouts. `zero_point` is per tensor.
void RepackWeightsS8(WeightLayoutS8 layout, const int8_t* b, int64_t K, int64_t N, int8_t zero_point,
                     PackedWeightsS8* out);
// The vector path (AVX-512 BW), defined in qgemm_u8s8_avx512vnni.cc; `out` is already sized and has K, N set.
void RepackK4N64Avx512(const int8_t* b, int64_t K, int64_t N, PackedWeightsS8* out);

// Per-variant entry points (defined in their own files; null when the variant is not compiled in).
const QGemmU8S8Kernel& QGemmU8S8RefKernel();
const QGemmU8S8Kernel* QGemmU8S8Avx2Kernel();
const QGemmU8S8Kernel* QGemmU8S8Avx512VnniKernel();
const QGemmU8S8Kernel* QGemmU8S8AmxKernel();  // null unless compiled in and the OS grants AMX tile state

}  // namespace onnxq::kernels
