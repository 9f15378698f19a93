// Scalar reference for the u8 x s8 GEMM family: the definition every fast variant is tested against.
#include "kernels/qgemm_u8s8.h"

namespace onnxq::kernels {
namespace {

void ComputeRef(const QGemmU8S8Args& a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const PackedWeightsS8& B = *a.B;
  const int64_t K = B.K, N = B.N;
  const int8_t* b = B.data.data();
  for (int64_t m = m_begin; m < m_end; ++m) {
    const uint8_t* row = a.A + m * a.lda;
    float* c = a.C + m * a.ldc;
    for (int64_t n = n_begin; n < n_end; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += (static_cast<int32_t>(row[k]) - a.a_zero_point) * (static_cast<int32_t>(b[k * N + n]) - B.zero_point[n]);
      float v = static_cast<float>(acc) * a.epilogue.scale[n];
      if (a.epilogue.bias != nullptr) v += a.epilogue.bias[n];
      c[n] = v;
    }
  }
}

const QGemmU8S8Kernel kRef{"ref", WeightLayoutS8::kRowMajorKN, 1, 1, ComputeRef};

}  // namespace

const QGemmU8S8Kernel& QGemmU8S8RefKernel() { return kRef; }

}  // namespace onnxq::kernels
