// 8 x 8 transposes of 32-bit elements in registers (AVX2) and the column-major-to-rows store of the AVX2 sparse
// kernels. Include only from AVX2-compiled files.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace onnxq::kernels {
namespace {

// In-register 8 x 8 transpose of 32-bit elements: row i of the result is column i of the input.
inline void Transpose8x8(__m256i r[8]) {
  __m256i t[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {  // r[4i + j]: elements j and j + 4 of rows 4i .. 4i + 3
    r[4 * i + 0] = _mm256_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    t[j] = _mm256_permute2x128_si256(r[j], r[4 + j], 0x20);
    t[4 + j] = _mm256_permute2x128_si256(r[j], r[4 + j], 0x31);
  }
  for (int j = 0; j < 8; ++j) r[j] = t[j];
}

// Writes a column-major block (ncols columns of `ld` floats, `rows` valid) into rows of C: c points at the block's
// first element, ldc is C's leading dimension. Rows outer, columns inner, as StoreColumnMajorAsRows.
inline void StoreColumnMajorAsRowsAvx2(const float* scratch, int64_t ld, int64_t ncols, int64_t rows, float* c,
                                       int64_t ldc) {
  for (int64_t r0 = 0; r0 < rows; r0 += 8) {
    const int64_t nr = rows - r0 < 8 ? rows - r0 : 8;
    for (int64_t j0 = 0; j0 < ncols; j0 += 8) {
      const int64_t cols = ncols - j0 < 8 ? ncols - j0 : 8;
      __m256i r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = i < cols ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(scratch + (j0 + i) * ld + r0))
                        : _mm256_setzero_si256();
      Transpose8x8(r);  // r[i]: row r0 + i, columns j0 .. j0 + 7
      if (cols == 8) {
        for (int64_t i = 0; i < nr; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + (r0 + i) * ldc + j0), r[i]);
      } else {
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(cols)),
                                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int64_t i = 0; i < nr; ++i)
          _mm256_maskstore_epi32(reinterpret_cast<int*>(c + (r0 + i) * ldc + j0), mask, r[i]);
      }
    }
  }
}

}  // namespace
}  // namespace onnxq::kernels
