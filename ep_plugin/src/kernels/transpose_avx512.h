// 16 x 16 transposes of 32-bit elements in registers (AVX-512F) and the layouts built on them. Include only from
// AVX-512-compiled files.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace onnxq::kernels {
namespace {

// In-register 16 x 16 transpose of 32-bit elements: row i of the result is column i of the input.
inline void Transpose16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
      t[8 * i + 4 + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0xdd);
  }
}

// Repacks M rows of `units` 4-byte units (row r starts at a + r * row_bytes) into token tiles
// [ceil(M / T)][units][T][4 bytes] (see token_tiles.h; T a multiple of 16): 16 x 16 transposes of 32-bit units, unit
// and token tails by 32-bit copies, pad tokens zero.
inline void PackTokenTiles(const uint8_t* a, int64_t M, int64_t units, int64_t row_bytes, int64_t T, uint8_t* out) {
  const int64_t tiles = (M + T - 1) / T;
  for (int64_t t = 0; t < tiles; ++t) {
    uint8_t* tile = out + t * units * T * 4;
    for (int64_t tok0 = 0; tok0 < T; tok0 += 16) {
      const int64_t m0 = t * T + tok0;
      const int64_t valid = M - m0 < 16 ? (M - m0 > 0 ? M - m0 : 0) : 16;
      int64_t u0 = 0;
      for (; u0 + 16 <= units && valid == 16; u0 += 16) {
        __m512i r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(a + (m0 + i) * row_bytes + u0 * 4);
        Transpose16x16(r);  // r[j]: unit u0 + j for 16 tokens
        for (int j = 0; j < 16; ++j) _mm512_storeu_si512(tile + ((u0 + j) * T + tok0) * 4, r[j]);
      }
      for (int64_t u = u0; u < units; ++u)
        for (int64_t i = 0; i < 16; ++i) {
          uint32_t v = 0;
          if (i < valid) std::memcpy(&v, a + (m0 + i) * row_bytes + u * 4, 4);
          std::memcpy(tile + (u * T + tok0 + i) * 4, &v, 4);
        }
    }
  }
}

// Writes a column-major block (ncols columns of `ld` floats, `rows` valid) into rows of C: c points at the block's
// first element, ldc is C's leading dimension. The sparse kernels' results leave their token-major scratch this way.
// Rows outer, columns inner: each row of C is written front to back (2.3x faster than columns outer into a C
// that is not 64-byte aligned, 1.3x into an aligned one; 128 x 768 on Zen 4).
inline void StoreColumnMajorAsRows(const float* scratch, int64_t ld, int64_t ncols, int64_t rows, float* c,
                                   int64_t ldc) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int64_t nr = rows - r0 < 16 ? rows - r0 : 16;
    for (int64_t j0 = 0; j0 < ncols; j0 += 16) {
      const int64_t cols = ncols - j0 < 16 ? ncols - j0 : 16;
      const __mmask16 mask = static_cast<__mmask16>(cols == 16 ? 0xFFFF : (1u << cols) - 1u);
      __m512i r[16];
      if (cols == 16 && nr == 16) {  // the common full block without per-row tests
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(scratch + (j0 + i) * ld + r0);
        Transpose16x16(r);  // r[i]: row r0 + i, columns j0 .. j0 + 15
        for (int i = 0; i < 16; ++i) _mm512_storeu_si512(c + (r0 + i) * ldc + j0, r[i]);
        continue;
      }
      for (int i = 0; i < 16; ++i) r[i] = i < cols ? _mm512_loadu_si512(scratch + (j0 + i) * ld + r0) : _mm512_setzero_si512();
      Transpose16x16(r);
      for (int64_t i = 0; i < nr; ++i) _mm512_mask_storeu_ps(c + (r0 + i) * ldc + j0, mask, _mm512_castsi512_ps(r[i]));
    }
  }
}

}  // namespace
}  // namespace onnxq::kernels
