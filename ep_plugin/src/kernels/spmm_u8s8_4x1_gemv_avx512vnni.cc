// Block-sparse (4 x 1) u8 x s8 GEMM for tiny M (a decode step) with AVX512-VNNI: blocks as SIMD lanes.
//
// Tokens as lanes (spmm_u8s8_4x1_avx512vnni.cc) wastes 15 of 16 lanes at M = 1. Here a lane is an output column:
// per step, 16 columns each take their next kept block (BlockSparseS8::ell_w / ell_off, padded with zero blocks
// to the group's longest column), the 16 blocks' activation dwords are gathered from the row (offsets checked at
// MakeBlockSparseS8: every block row is < K/4, so every gather stays inside the row) and one vpdpbusd adds the 16
// four-term dot products. Integer sums are exact: equal to the reference bit for bit.
#include <immintrin.h>

#include "kernels/spmm_u8s8.h"

namespace onnxq::kernels {

void SpmmU8S8_4x1_Gemv_Avx512Vnni(const SpmmU8S8Args& a, int64_t n_begin, int64_t n_end) {
  const BlockSparseS8& B = *a.B;
  const __m512i za = _mm512_set1_epi32(a.a_zero_point);
  const int64_t g_begin = n_begin / 16, g_end = (n_end + 15) / 16;
  for (int64_t m = 0; m < a.M; ++m) {
    const uint8_t* row = a.A + m * a.lda;
    float* c = a.C + m * a.ldc;
    for (int64_t g = g_begin; g < g_end; ++g) {
      __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
      const int32_t* w = B.ell_w.data() + static_cast<int64_t>(B.ell_ptr[g]) * 16;
      const int32_t* off = B.ell_off.data() + static_cast<int64_t>(B.ell_ptr[g]) * 16;
      const int32_t steps = B.ell_ptr[g + 1] - B.ell_ptr[g];
      int32_t s = 0;
      for (; s + 2 <= steps; s += 2) {  // two chains: the gathers of one step overlap the other's vpdpbusd
        const __m512i a0 = _mm512_i32gather_epi32(_mm512_loadu_si512(off + s * 16), row, 1);
        const __m512i a1 = _mm512_i32gather_epi32(_mm512_loadu_si512(off + s * 16 + 16), row, 1);
        acc0 = _mm512_dpbusd_epi32(acc0, a0, _mm512_loadu_si512(w + s * 16));
        acc1 = _mm512_dpbusd_epi32(acc1, a1, _mm512_loadu_si512(w + s * 16 + 16));
      }
      if (s < steps) {
        const __m512i a0 = _mm512_i32gather_epi32(_mm512_loadu_si512(off + s * 16), row, 1);
        acc0 = _mm512_dpbusd_epi32(acc0, a0, _mm512_loadu_si512(w + s * 16));
      }
      // lanes of this group inside [n_begin, n_end) (a range boundary may cut a group: each side stores its lanes)
      const int64_t lo = g * 16 < n_begin ? n_begin - g * 16 : 0;
      const int64_t hi = g * 16 + 16 > n_end ? n_end - g * 16 : 16;
      const __mmask16 mask = static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
      const __m512i colsum = _mm512_maskz_loadu_epi32(mask, B.col_sum.data() + g * 16);
      const __m512 scale = _mm512_maskz_loadu_ps(mask, a.epilogue.scale + g * 16);
      __m512 f = _mm512_mul_ps(
          _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_add_epi32(acc0, acc1), _mm512_mullo_epi32(za, colsum))), scale);
      if (a.epilogue.bias != nullptr) f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(mask, a.epilogue.bias + g * 16));
      _mm512_mask_storeu_ps(c + g * 16, mask, f);
    }
  }
}

}  // namespace onnxq::kernels
