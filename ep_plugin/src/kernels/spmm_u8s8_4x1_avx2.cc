// Block-sparse (4 x 1) u8 x s8 GEMM with AVX2, tokens as SIMD lanes (C^T = W^T A^T), exact.
//
// AVX2 has no vpdpbusd, and vpmaddubsw saturates a pair of u8 x s8 products into int16 (2 * 255 * 128 does not
// fit), so activations are widened to s16 once, when they are packed: token tiles [K/2 pairs][T tokens][2 x s16].
// A kept 4 x 1 block is two broadcast s16 weight pairs (BlockSparseS8::w16); per 8 tokens, two vpmaddwd (each
// token's a[k] w[k] + a[k+1] w[k+1], exact in int32) and two vpaddd into the column's accumulator. T = 64 tokens:
// 8 ymm accumulators + 2 broadcast weights (llvm-mca: 17 cycles a block on Zen 2, bound by its one vpmaddwd pipe,
// 15 products a cycle). K is walked in L1-sized chunks (kSpmmAvx2ChunkGroups), columns in panels whose int32 sums
// carried across chunks stay in cache (kSpmmAvx2PanelBytes); the epilogue (zero point via the column sum, scale,
// bias) is fused, then the column-major results are transposed into C's rows.
//
// M <= kSpmmS16GemvMaxM (decode): per output column, 4 blocks per vpmaddwd: each block's 4 activations (one 64-bit
// load from the widened row) against its 4 weights (the blocks' s8 values lie next to each other: one 128-bit
// load widened to s16 for 4 blocks; 8 bytes a block with its row index, where the s16 pairs would take 12).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/aligned_buffer.h"
#include "kernels/spmm_u8s8.h"
#include "kernels/transpose_avx2.h"

namespace onnxq::kernels {

// 8 tokens x 16 K per step: the rows' 16 bytes widened to 8 s16 pairs (vpmovzxbw), then an 8 x 8 transpose of
// the 32-bit pairs leaves each pair's 8 tokens in one register.
void PackTokensS16Avx2(const uint8_t* A, int64_t M, int64_t K, int64_t lda, int16_t* out) {
  if (M <= kSpmmS16GemvMaxM) {  // rows for the small-M kernel, each followed by 4 zeros
    for (int64_t m = 0; m < M; ++m) {
      int16_t* dst = out + m * (K + 4);
      int64_t k = 0;
      for (; k + 16 <= K; k += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k),
                            _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(A + m * lda + k))));
      for (; k < K; ++k) dst[k] = A[m * lda + k];
      for (int j = 0; j < 4; ++j) dst[K + j] = 0;
    }
    return;
  }
  const int64_t T = SpmmTokenTileAvx2(M, kSpmmAvx2TokenTile), tiles = (M + T - 1) / T, pairs = K / 2;
  for (int64_t t = 0; t < tiles; ++t) {
    int16_t* tile = out + t * pairs * T * 2;
    for (int64_t tok0 = 0; tok0 < T; tok0 += 8) {
      const int64_t m0 = t * T + tok0;
      const int64_t valid = M - m0 < 8 ? (M - m0 > 0 ? M - m0 : 0) : 8;
      int64_t p0 = 0;
      for (; p0 + 8 <= pairs; p0 += 8) {
        __m256i r[8];
        for (int i = 0; i < 8; ++i)
          r[i] = i < valid ? _mm256_cvtepu8_epi16(
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(A + (m0 + i) * lda + p0 * 2)))
                           : _mm256_setzero_si256();
        Transpose8x8(r);  // r[j]: pair p0 + j of the 8 tokens
        for (int j = 0; j < 8; ++j)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + ((p0 + j) * T + tok0) * 2), r[j]);
      }
      for (int64_t p = p0; p < pairs; ++p)
        for (int64_t i = 0; i < 8; ++i) {
          int16_t* dst = tile + (p * T + tok0 + i) * 2;
          dst[0] = i < valid ? A[(m0 + i) * lda + 2 * p] : 0;
          dst[1] = i < valid ? A[(m0 + i) * lda + 2 * p + 1] : 0;
        }
    }
  }
}

namespace {

template <int V>  // accumulators per column: a token tile of 8 * V tokens
void Spmm4x1(const SpmmU8S8Args& a, const int16_t* a_packed, int64_t n_begin, int64_t n_end) {
  const BlockSparseS8& B = *a.B;
  constexpr int64_t T = 8 * V;
  const int64_t pairs = B.K / 2, tiles = (a.M + T - 1) / T, ncols = n_end - n_begin;
  const __m256i za = _mm256_set1_epi32(a.a_zero_point);
  // columns in panels whose sums (and results) stay near L1 while the panel walks all K chunks
  const int64_t panel = std::min<int64_t>(ncols, std::max<int64_t>(8, kSpmmAvx2PanelBytes / (T * 4)));
  thread_local AlignedBuffer<float> scratch;    // [panel][T] results
  thread_local AlignedBuffer<int32_t> partial;  // [panel][T] int32 sums carried between K chunks
  if (scratch.size() < static_cast<size_t>(panel * T)) scratch.EnsureSize(static_cast<size_t>(panel * T));
  if (partial.size() < static_cast<size_t>(panel * T)) partial.EnsureSize(static_cast<size_t>(panel * T));
  const int64_t ncol_all = B.N + 1;  // bn == 1
  // locals, not a.* / B.* in the loops: the scratch stores may alias anything
  const int32_t* w16 = B.w16.data();
  const int32_t* block_rows = B.block_rows.data();
  const int32_t* col_sum = B.col_sum.data();
  const int32_t* chunk_ptr = B.chunk_ptr.data();
  const int64_t chunks = B.chunks;
  const float* scale_ptr = a.epilogue.scale;
  const float* bias_ptr = a.epilogue.bias;
  float* scratch_ptr = scratch.data();
  int32_t* partial_ptr = partial.data();
  // the weight's chunks taken `step` at a time: as many as fit kSpmmAvx2ChunkBytes of this tile
  const int64_t chunk_bytes = B.chunk_groups * T * 8;
  const int64_t step = chunk_bytes >= kSpmmAvx2ChunkBytes ? 1 : kSpmmAvx2ChunkBytes / chunk_bytes;
  for (int64_t t = 0; t < tiles; ++t) {
    const int16_t* tile = a_packed + t * pairs * T * 2;
    const int64_t rows = a.M - t * T < T ? a.M - t * T : T;
    for (int64_t p0 = n_begin; p0 < n_end; p0 += panel) {
      const int64_t p1 = p0 + panel < n_end ? p0 + panel : n_end;
      for (int64_t c0 = 0; c0 < chunks; c0 += step) {
        const int64_t c1 = c0 + step < chunks ? c0 + step : chunks;
        const bool first = c0 == 0, last = c1 == chunks;
        const int32_t* begin_ptr = chunk_ptr + c0 * ncol_all;
        const int32_t* end_ptr = chunk_ptr + c1 * ncol_all;
        for (int64_t n = p0; n < p1; ++n) {
          __m256i acc[V];
          int32_t* part = partial_ptr + (n - p0) * T;
          for (int v = 0; v < V; ++v)
            acc[v] = first ? _mm256_setzero_si256()
                           : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(part + v * 8));
          const int32_t end = end_ptr[n];
          for (int32_t i = begin_ptr[n]; i < end; ++i) {
            const __m256i w01 = _mm256_set1_epi32(w16[2 * i]);
            const __m256i w23 = _mm256_set1_epi32(w16[2 * i + 1]);
            const __m256i* ap = reinterpret_cast<const __m256i*>(tile + static_cast<int64_t>(block_rows[i]) * 4 * T);
            for (int v = 0; v < V; ++v) {
              acc[v] = _mm256_add_epi32(acc[v], _mm256_madd_epi16(_mm256_loadu_si256(ap + v), w01));
              acc[v] = _mm256_add_epi32(acc[v], _mm256_madd_epi16(_mm256_loadu_si256(ap + V + v), w23));
            }
          }
          if (!last) {
            for (int v = 0; v < V; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(part + v * 8), acc[v]);
            continue;
          }
          // sum (a - za) w = sum a w - za * colsum(w)
          const __m256i off = _mm256_mullo_epi32(za, _mm256_set1_epi32(col_sum[n]));
          const __m256 scale = _mm256_set1_ps(scale_ptr[n]);
          const __m256 bias = _mm256_set1_ps(bias_ptr != nullptr ? bias_ptr[n] : 0.0f);
          float* dst = scratch_ptr + (n - p0) * T;
          for (int v = 0; v < V; ++v) {
            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[v], off)), scale);
            if (bias_ptr != nullptr) f = _mm256_add_ps(f, bias);  // mul then add, not an FMA: the reference's rounding
            _mm256_storeu_ps(dst + v * 8, f);
          }
        }
      }
      StoreColumnMajorAsRowsAvx2(scratch_ptr, T, p1 - p0, rows, a.C + t * T * a.ldc + p0, a.ldc);
    }
  }
}

// The 4 s16 activations (8 bytes) at row + o0 and at row + o1, in one register.
inline __m128i LoadTwoQuads(const int16_t* row, int64_t o0, int64_t o1) {
  int64_t q1;
  std::memcpy(&q1, row + o1, 8);
  return _mm_insert_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + o0)), q1, 1);
}

inline __m256i Load4Quads(const int16_t* row, int64_t o0, int64_t o1, int64_t o2, int64_t o3) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(LoadTwoQuads(row, o0, o1)), LoadTwoQuads(row, o2, o3), 1);
}

// Small M: per column and row, 4 blocks per step. Slots past the column's last block read the row's 4 zero
// activations (offset K), so the next blocks' weights they meet add nothing.
void SpmmColumns(const SpmmU8S8Args& a, const int16_t* rows, int64_t n_begin, int64_t n_end) {
  const BlockSparseS8& B = *a.B;
  const int64_t K = B.K, ld = K + 4;
  const int8_t* values = B.values.data();
  const int32_t* block_rows = B.block_rows.data();
  const int32_t* col_ptr = B.col_ptr.data();
  auto four_blocks = [values](int32_t i) {  // 16 s8 weights -> s16
    const int8_t* p = values + 4 * static_cast<int64_t>(i);
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  };
  for (int64_t n = n_begin; n < n_end; ++n) {  // columns outer: a column's weights stay in L1 for all rows
    for (int64_t m = 0; m < a.M; ++m) {
      const int16_t* row = rows + m * ld;
      const int32_t i0 = col_ptr[n], i1 = col_ptr[n + 1];
      __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
      int32_t i = i0;
      for (; i + 8 <= i1; i += 8) {  // two independent steps per iteration
        const __m256i a0 = Load4Quads(row, block_rows[i] * 4, block_rows[i + 1] * 4, block_rows[i + 2] * 4,
                                      block_rows[i + 3] * 4);
        const __m256i a1 = Load4Quads(row, block_rows[i + 4] * 4, block_rows[i + 5] * 4, block_rows[i + 6] * 4,
                                      block_rows[i + 7] * 4);
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, four_blocks(i)));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, four_blocks(i + 4)));
      }
      for (; i < i1; i += 4) {
        auto off = [&](int j) { return i + j < i1 ? static_cast<int64_t>(block_rows[i + j]) * 4 : K; };
        const __m256i a0 = Load4Quads(row, off(0), off(1), off(2), off(3));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, four_blocks(i)));
      }
      const __m256i s8 = _mm256_add_epi32(acc0, acc1);
      __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
      const int32_t sum = _mm_cvtsi128_si32(s) - a.a_zero_point * B.col_sum[n];
      float v = static_cast<float>(sum) * a.epilogue.scale[n];
      if (a.epilogue.bias != nullptr) v += a.epilogue.bias[n];
      a.C[m * a.ldc + n] = v;
    }
  }
}

}  // namespace

void SpmmU8S8_4x1_Avx2(const SpmmU8S8Args& a, const int16_t* a_packed, int64_t n_begin, int64_t n_end) {
  if (a.M <= kSpmmS16GemvMaxM) return SpmmColumns(a, a_packed, n_begin, n_end);
  switch (SpmmTokenTileAvx2(a.M, kSpmmAvx2TokenTile)) {  // must match the tile PackTokensS16Avx2 used for this M
    case 8: return Spmm4x1<1>(a, a_packed, n_begin, n_end);
    case 16: return Spmm4x1<2>(a, a_packed, n_begin, n_end);
    case 32: return Spmm4x1<4>(a, a_packed, n_begin, n_end);
    default: return Spmm4x1<8>(a, a_packed, n_begin, n_end);
  }
}

}  // namespace onnxq::kernels
