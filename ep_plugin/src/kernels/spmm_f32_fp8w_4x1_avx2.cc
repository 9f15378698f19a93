// Block-sparse (4 x 1) bf16 x FP8-weight GEMM with AVX2 + FMA, tokens as SIMD lanes (see spmm_bf16_fp8w.h).
//
// AVX2 has no BF16 dot product. bf16 values (the FP8 weights were widened to bf16 pairs exactly, when the weight
// was made) are exact in fp32 and become fp32 by a 16-bit shift: the activations once, when they are packed into
// token tiles [K][T tokens] fp32; a kept block's two broadcast bf16 pairs in registers (shift, and). Per 8 tokens a
// block is then 4 vfmadd231ps into the column's accumulator; results agree with the reference within fp32
// summation error (another order, fused rounding). T = 64 tokens: 8 ymm accumulators + 4 weights (llvm-mca: 20
// cycles a block on Zen 2, the 4-FMA chain of each accumulator); smaller tiles (M <= 32) split each accumulator by
// K so that 4 to 8 FMA chains overlap. K is walked in L1-sized chunks (kSpmmF32ChunkGroups), columns in panels
// (kSpmmAvx2PanelBytes), the fp32 sums carried across chunks in the result scratch.
//
// M <= kSpmmF32GemvMaxM (decode): per output column, 2 blocks per FMA: each block's 4 activations (one 128-bit
// load from the widened row) against its 4 weights (the blocks' pairs lie next to each other: one 128-bit load and
// a widening for 2 blocks).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/aligned_buffer.h"
#include "kernels/spmm_bf16_fp8w.h"
#include "kernels/transpose_avx2.h"

namespace onnxq::kernels {

namespace {

inline __m256i WidenBf16(const uint16_t* p) {  // 8 bf16 -> 8 fp32 bit patterns
  return _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16);
}

inline float Bf16Bits(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

// 8 tokens x 8 K per step: each row's 8 bf16 widened in register, then an 8 x 8 transpose gives each K's 8 tokens.
void PackTokensF32Avx2(const uint16_t* A, int64_t M, int64_t K, float* out) {
  if (M <= kSpmmF32GemvMaxM) {  // rows for the small-M kernel, each followed by 4 zeros
    for (int64_t m = 0; m < M; ++m) {
      float* dst = out + m * (K + 4);
      int64_t k = 0;
      for (; k + 8 <= K; k += 8)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k), WidenBf16(A + m * K + k));
      for (; k < K; ++k) dst[k] = Bf16Bits(A[m * K + k]);
      for (int j = 0; j < 4; ++j) dst[K + j] = 0.0f;
    }
    return;
  }
  const int64_t T = SpmmTokenTileAvx2(M, kSpmmAvx2TokenTile), tiles = (M + T - 1) / T;
  for (int64_t t = 0; t < tiles; ++t) {
    float* tile = out + t * K * T;
    for (int64_t tok0 = 0; tok0 < T; tok0 += 8) {
      const int64_t m0 = t * T + tok0;
      const int64_t valid = M - m0 < 8 ? (M - m0 > 0 ? M - m0 : 0) : 8;
      int64_t k0 = 0;
      for (; k0 + 8 <= K; k0 += 8) {
        __m256i r[8];
        for (int i = 0; i < 8; ++i) r[i] = i < valid ? WidenBf16(A + (m0 + i) * K + k0) : _mm256_setzero_si256();
        Transpose8x8(r);  // r[j]: K k0 + j of the 8 tokens
        for (int j = 0; j < 8; ++j) _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + (k0 + j) * T + tok0), r[j]);
      }
      for (int64_t k = k0; k < K; ++k)
        for (int64_t i = 0; i < 8; ++i) tile[k * T + tok0 + i] = i < valid ? Bf16Bits(A[(m0 + i) * K + k]) : 0.0f;
    }
  }
}

namespace {

// V accumulators per column (a token tile of 8 * V tokens) in S sets: K k of a block goes to set k % S, so that
// 4 to 8 FMA chains overlap (a single chain would wait out the FMA latency at every K).
template <int V, int S>
void Spmm4x1(const SpmmBf16Args& a, const float* a_packed, int64_t n_begin, int64_t n_end) {
  const BlockSparseBf16& B = *a.B;
  constexpr int64_t T = 8 * V;
  const int64_t K = B.K, tiles = (a.M + T - 1) / T, ncols = n_end - n_begin;
  // columns in panels whose sums stay near L1 while the panel walks all K chunks
  const int64_t panel = std::min<int64_t>(ncols, std::max<int64_t>(8, kSpmmAvx2PanelBytes / (T * 4)));
  thread_local AlignedBuffer<float> scratch;  // [panel][T], also the partial sums between K chunks
  if (scratch.size() < static_cast<size_t>(panel * T)) scratch.EnsureSize(static_cast<size_t>(panel * T));
  const int32_t* pairs = reinterpret_cast<const int32_t*>(B.pairs.data());
  const int32_t* block_rows = B.block_rows.data();
  const int32_t* chunk_ptr = B.chunk_ptr.data();
  const __m256i high = _mm256_set1_epi32(static_cast<int32_t>(0xFFFF0000u));
  const int64_t chunks = B.chunks, ncol_all = B.N + 1;
  const float* scale_ptr = a.scale;
  const float* bias_ptr = a.bias;
  float* scratch_ptr = scratch.data();
  // the weight's chunks taken `step` at a time: as many as fit kSpmmAvx2ChunkBytes of this tile
  const int64_t chunk_bytes = B.chunk_groups * T * 16;
  const int64_t step = chunk_bytes >= kSpmmAvx2ChunkBytes ? 1 : kSpmmAvx2ChunkBytes / chunk_bytes;
  for (int64_t t = 0; t < tiles; ++t) {
    const float* tile = a_packed + t * K * T;
    const int64_t rows = a.M - t * T < T ? a.M - t * T : T;
    for (int64_t p0 = n_begin; p0 < n_end; p0 += panel) {
      const int64_t p1 = p0 + panel < n_end ? p0 + panel : n_end;
      for (int64_t c0 = 0; c0 < chunks; c0 += step) {
        const int64_t c1 = c0 + step < chunks ? c0 + step : chunks;
        const bool first = c0 == 0, last = c1 == chunks;
        const int32_t* begin_ptr = chunk_ptr + c0 * ncol_all;
        const int32_t* end_ptr = chunk_ptr + c1 * ncol_all;
        for (int64_t n = p0; n < p1; ++n) {
          float* dst = scratch_ptr + (n - p0) * T;
          __m256 acc[S][V];
          for (int v = 0; v < V; ++v) acc[0][v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(dst + v * 8);
          for (int s = 1; s < S; ++s)
            for (int v = 0; v < V; ++v) acc[s][v] = _mm256_setzero_ps();
          const int32_t end = end_ptr[n];
          for (int32_t i = begin_ptr[n]; i < end; ++i) {
            const __m256i p01 = _mm256_set1_epi32(pairs[2 * i]), p23 = _mm256_set1_epi32(pairs[2 * i + 1]);
            const __m256 w[4] = {_mm256_castsi256_ps(_mm256_slli_epi32(p01, 16)),
                                 _mm256_castsi256_ps(_mm256_and_si256(p01, high)),
                                 _mm256_castsi256_ps(_mm256_slli_epi32(p23, 16)),
                                 _mm256_castsi256_ps(_mm256_and_si256(p23, high))};
            const float* ap = tile + static_cast<int64_t>(block_rows[i]) * 4 * T;
            for (int k = 0; k < 4; ++k)
              for (int v = 0; v < V; ++v)
                acc[k % S][v] = _mm256_fmadd_ps(_mm256_loadu_ps(ap + k * T + v * 8), w[k], acc[k % S][v]);
          }
          for (int s = 1; s < S; ++s)
            for (int v = 0; v < V; ++v) acc[0][v] = _mm256_add_ps(acc[0][v], acc[s][v]);
          if (!last) {
            for (int v = 0; v < V; ++v) _mm256_storeu_ps(dst + v * 8, acc[0][v]);
            continue;
          }
          const __m256 scale = _mm256_set1_ps(scale_ptr[n]);
          const __m256 bias = _mm256_set1_ps(bias_ptr != nullptr ? bias_ptr[n] : 0.0f);
          for (int v = 0; v < V; ++v) {
            __m256 f = _mm256_mul_ps(acc[0][v], scale);
            if (bias_ptr != nullptr) f = _mm256_add_ps(f, bias);
            _mm256_storeu_ps(dst + v * 8, f);
          }
        }
      }
      StoreColumnMajorAsRowsAvx2(scratch_ptr, T, p1 - p0, rows, a.C + t * T * a.ldc + p0, a.ldc);
    }
  }
}

inline __m256 LoadTwoQuads(const float* row, int64_t o0, int64_t o1) {  // row[o0 .. o0+3] | row[o1 .. o1+3]
  return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(row + o0)), _mm_loadu_ps(row + o1), 1);
}

inline __m256 TwoBlocks(const uint32_t* pairs) {  // the 8 weights of 2 blocks (4 bf16 pairs) as fp32
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pairs))), 16));
}

// Small M: per column and row, 2 blocks per FMA. A column's odd last block is paired with the row's 4 zero
// activations (offset K) and zeroed weights (the next block's could be inf or NaN).
void SpmmColumns(const SpmmBf16Args& a, const float* rows, int64_t n_begin, int64_t n_end) {
  const BlockSparseBf16& B = *a.B;
  const int64_t K = B.K, ld = K + 4;
  const uint32_t* pairs = B.pairs.data();  // padded (PrepareBlockSparseBf16Avx2): 2 blocks are read at a time
  const int32_t* block_rows = B.block_rows.data();
  const int32_t* col_ptr = B.col_ptr.data();
  for (int64_t n = n_begin; n < n_end; ++n) {  // columns outer: a column's weights stay in L1 for all rows
    for (int64_t m = 0; m < a.M; ++m) {
      const float* row = rows + m * ld;
      const int32_t i0 = col_ptr[n], i1 = col_ptr[n + 1];
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      int32_t i = i0;
      for (; i + 4 <= i1; i += 4) {  // two independent FMA chains
        const __m256 a0 = LoadTwoQuads(row, block_rows[i] * 4, block_rows[i + 1] * 4);
        const __m256 a1 = LoadTwoQuads(row, block_rows[i + 2] * 4, block_rows[i + 3] * 4);
        acc0 = _mm256_fmadd_ps(a0, TwoBlocks(pairs + 2 * static_cast<int64_t>(i)), acc0);
        acc1 = _mm256_fmadd_ps(a1, TwoBlocks(pairs + 2 * static_cast<int64_t>(i) + 4), acc1);
      }
      for (; i + 2 <= i1; i += 2)
        acc0 = _mm256_fmadd_ps(LoadTwoQuads(row, block_rows[i] * 4, block_rows[i + 1] * 4),
                               TwoBlocks(pairs + 2 * static_cast<int64_t>(i)), acc0);
      if (i < i1) {
        const __m256 w = _mm256_blend_ps(TwoBlocks(pairs + 2 * static_cast<int64_t>(i)), _mm256_setzero_ps(), 0xF0);
        acc1 = _mm256_fmadd_ps(LoadTwoQuads(row, block_rows[i] * 4, K), w, acc1);
      }
      const __m256 s8 = _mm256_add_ps(acc0, acc1);
      __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
      s = _mm_add_ps(s, _mm_movehl_ps(s, s));
      s = _mm_add_ss(s, _mm_movehdup_ps(s));
      float v = _mm_cvtss_f32(s) * a.scale[n];
      if (a.bias != nullptr) v += a.bias[n];
      a.C[m * a.ldc + n] = v;
    }
  }
}

}  // namespace

void SpmmF32_4x1_Avx2(const SpmmBf16Args& a, const float* a_packed, int64_t n_begin, int64_t n_end) {
  if (a.M <= kSpmmF32GemvMaxM) return SpmmColumns(a, a_packed, n_begin, n_end);
  switch (SpmmTokenTileAvx2(a.M, kSpmmAvx2TokenTile)) {  // must match the tile PackTokensF32Avx2 used for this M
    case 8: return Spmm4x1<1, 4>(a, a_packed, n_begin, n_end);
    case 16: return Spmm4x1<2, 4>(a, a_packed, n_begin, n_end);
    case 32: return Spmm4x1<4, 2>(a, a_packed, n_begin, n_end);
    default: return Spmm4x1<8, 1>(a, a_packed, n_begin, n_end);
  }
}

}  // namespace onnxq::kernels
