// Quantized GEMM family: u8 activations x s8 weights -> int32 accumulators -> fused float epilogue.
//
//   C[m, n] = float(sum_k (A[m, k] - a_zero_point) * (B[k, n] - b_zero_point[n])) * scale[n] + bias[n]
//
// The weights are packed once (at session creation) into PackedWeightsS8; each ISA variant owns its
// layout. Every variant must equal QGemmU8S8Ref exactly: the integer accumulation is exact, and the
// epilogue is one float multiply then one float add, in that order (no FMA), as onnxruntime does.
#pragma once
#include <cstdint>
#include <vector>

namespace onnxq::kernels {

// |acc| <= K * 255 * 255 must fit in int32, so K is capped (larger K is left to onnxruntime).
constexpr int64_t kQGemmMaxK = 33025;

enum class WeightLayoutS8 {
  kRowMajorKN,  // reference: B[k * N + n]
};

struct PackedWeightsS8 {
  int64_t K = 0;
  int64_t N = 0;
  WeightLayoutS8 layout = WeightLayoutS8::kRowMajorKN;
  std::vector<int8_t> data;
  std::vector<int32_t> zero_point;  // per output column, length N
  std::vector<int32_t> col_sum;     // sum_k B[k, n], length N (for zero-point compensation)
};

// b is K x N row-major; b_zero_point has length N (per column) or 1 (per tensor).
PackedWeightsS8 PackWeightsS8Ref(const int8_t* b, int64_t K, int64_t N, const int8_t* b_zero_point,
                                 int64_t b_zero_point_len);

struct QGemmEpilogue {
  const float* scale = nullptr;  // length N: a_scale * b_scale[n]
  const float* bias = nullptr;   // length N, or null
};

// A is M x K row-major with leading dimension lda; C is M x N with leading dimension ldc.
void QGemmU8S8Ref(int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero_point, const PackedWeightsS8& B,
                  const QGemmEpilogue& epilogue, float* C, int64_t ldc);

}  // namespace onnxq::kernels
