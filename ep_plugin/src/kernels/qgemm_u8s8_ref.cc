// Scalar reference for the u8 x s8 GEMM family: the definition every fast variant is tested against.
#include <stdexcept>

#include "kernels/qgemm_u8s8.h"

namespace onnxq::kernels {

PackedWeightsS8 PackWeightsS8Ref(const int8_t* b, int64_t K, int64_t N, const int8_t* b_zero_point,
                                 int64_t b_zero_point_len) {
  if (K <= 0 || N <= 0) throw std::invalid_argument("PackWeightsS8Ref: K and N must be positive");
  if (b_zero_point != nullptr && b_zero_point_len != 1 && b_zero_point_len != N)
    throw std::invalid_argument("PackWeightsS8Ref: zero point must have length 1 or N");
  PackedWeightsS8 p;
  p.K = K;
  p.N = N;
  p.layout = WeightLayoutS8::kRowMajorKN;
  p.data.assign(b, b + K * N);
  p.zero_point.assign(static_cast<size_t>(N), 0);
  if (b_zero_point != nullptr)
    for (int64_t n = 0; n < N; ++n) p.zero_point[n] = b_zero_point[b_zero_point_len == 1 ? 0 : n];
  p.col_sum.assign(static_cast<size_t>(N), 0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) p.col_sum[n] += b[k * N + n];
  return p;
}

void QGemmU8S8Ref(int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero_point, const PackedWeightsS8& B,
                  const QGemmEpilogue& epilogue, float* C, int64_t ldc) {
  if (B.layout != WeightLayoutS8::kRowMajorKN) throw std::invalid_argument("QGemmU8S8Ref: unexpected layout");
  const int64_t K = B.K, N = B.N;
  std::vector<int32_t> acc(static_cast<size_t>(N));
  for (int64_t m = 0; m < M; ++m) {
    const uint8_t* a = A + m * lda;
    for (int64_t n = 0; n < N; ++n) acc[n] = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int32_t av = static_cast<int32_t>(a[k]) - a_zero_point;
      const int8_t* brow = B.data.data() + k * N;
      for (int64_t n = 0; n < N; ++n) acc[n] += av * (static_cast<int32_t>(brow[n]) - B.zero_point[n]);
    }
    float* c = C + m * ldc;
    for (int64_t n = 0; n < N; ++n) {
      float v = static_cast<float>(acc[n]) * epilogue.scale[n];
      if (epilogue.bias != nullptr) v += epilogue.bias[n];
      c[n] = v;
    }
  }
}

}  // namespace onnxq::kernels
