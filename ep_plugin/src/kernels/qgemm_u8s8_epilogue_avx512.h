// The fused store of the u8 x s8 GEMM family on AVX-512 (VNNI and AMX variants share it): zero-point
// compensation, per-column scale, bias, tail mask. Include only from AVX-512-compiled files.
#pragma once
#include <immintrin.h>

#include "kernels/qgemm_u8s8.h"

namespace onnxq::kernels {
namespace {

// Stores rows [m0, m0 + rows) of the 16 columns from `col` (masked at n_end); acc_of(r) is row r's int32 sums
// sum_k a * b. With zero points: sum (a - za)(b - zb) = sum a*b - za*colsum(b) - zb*rowsum(a) + K*za*zb
// (wrapping int32 arithmetic is exact here: the true result fits).
template <typename AccOf>
inline void StoreColumns16(const QGemmU8S8Args& a, const int32_t* row_sum, int64_t m0, int rows, int64_t col,
                           int64_t n_end, AccOf acc_of) {
  const PackedWeightsS8& B = *a.B;
  const int32_t za = a.a_zero_point;
  const int64_t cnt = n_end - col < 16 ? n_end - col : 16;
  const __mmask16 mask = static_cast<__mmask16>(cnt == 16 ? 0xFFFF : (1u << cnt) - 1u);
  __m512i off = _mm512_mullo_epi32(_mm512_maskz_loadu_epi32(mask, B.col_sum.data() + col), _mm512_set1_epi32(-za));
  __m512i zb = _mm512_setzero_si512();
  if (row_sum != nullptr) {
    zb = _mm512_maskz_loadu_epi32(mask, B.zero_point.data() + col);
    off = _mm512_add_epi32(off, _mm512_mullo_epi32(zb, _mm512_set1_epi32(static_cast<int32_t>(B.K) * za)));
  }
  const __m512 scale = _mm512_maskz_loadu_ps(mask, a.epilogue.scale + col);
  const __m512 bias =
      a.epilogue.bias != nullptr ? _mm512_maskz_loadu_ps(mask, a.epilogue.bias + col) : _mm512_setzero_ps();
  for (int r = 0; r < rows; ++r) {
    __m512i x = _mm512_add_epi32(acc_of(r), off);
    if (row_sum != nullptr) x = _mm512_sub_epi32(x, _mm512_mullo_epi32(zb, _mm512_set1_epi32(row_sum[r])));
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(x), scale);
    if (a.epilogue.bias != nullptr) f = _mm512_add_ps(f, bias);
    _mm512_mask_storeu_ps(a.C + (m0 + r) * a.ldc + col, mask, f);
  }
}

}  // namespace
}  // namespace onnxq::kernels
