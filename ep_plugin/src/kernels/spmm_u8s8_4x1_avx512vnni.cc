// Block-sparse (4 x 1) u8 x s8 GEMM with AVX512-VNNI, tokens as SIMD lanes.
//
// Activations are repacked once per call into token tiles [K/4][64 tokens][4 K] (16 or 32 tokens when M is that
// small: SpmmTokenTile; M = 1 goes to the blocks-as-lanes kernel instead). For one output column and one token
// tile, each kept 4 x 1 block is a single 32-bit broadcast (its 4 int8 weights) multiplied into 4 zmm accumulators
// (64 tokens) with vpdpbusd against the block row's 256 bytes of activations. The loop is bound by its loads (one
// zmm of activations per vpdpbusd; the tiles must be 64-byte aligned, or every load splits a cache line) and by
// where they come from: K is walked in chunks of B.chunk_groups groups (SpmmChunkGroups: 192, 48 KiB of a tile)
// so the activations a column's blocks touch stay near L1, int32 sums carrying across chunks. 128-token tiles
// (8 accumulators, fewer loads of weights and indices per vpdpbusd) measured 10-15% slower at 90%: their chunks
// are twice the bytes. The results of a column land in a column-major scratch with the fused epilogue applied,
// then are transposed into C's rows.
#include <immintrin.h>

#include <cstring>

#include "kernels/aligned_buffer.h"
#include "kernels/quantize_avx512.h"
#include "kernels/spmm_u8s8.h"
#include "kernels/transpose_avx512.h"

namespace onnxq::kernels {

void PackTokensU8Avx512(const uint8_t* A, int64_t M, int64_t K, int64_t lda, uint8_t* out) {
  if (M <= kSpmmGemvMaxM) return;  // read directly by the small-M kernel
  PackTokenTiles(A, M, K / 4, lda, SpmmTokenTile(M, kSpmmU8TokenTile), out);  // a unit: 4 K of one token
}

// 16 tokens x 16 K per step: quantize each token's 16 floats to int32, then two saturating packs leave, in 128-bit
// lane L of p[j], unit L (4 K) of tokens 4j .. 4j+3; a 4 x 4 transpose of lanes gives each unit's 16 tokens.
// That is 20 shuffle-class ops per 256 values where quantizing to rows and repacking them took 32, and the u8
// rows are never written and read back.
void QuantizePackTokensU8Avx512(const float* x, int64_t M, int64_t K, int64_t ldx, float scale, int32_t zero_point,
                                uint8_t* out, int64_t tile_begin, int64_t tile_end) {
  const ReciprocalQuantizer quantize(scale, zero_point);
  const int64_t T = SpmmTokenTile(M, kSpmmU8TokenTile), units = K / 4, tiles = (M + T - 1) / T;
  if (tile_end < 0 || tile_end > tiles) tile_end = tiles;
  for (int64_t t = tile_begin; t < tile_end; ++t) {
    uint8_t* tile = out + t * units * T * 4;
    for (int64_t tok0 = 0; tok0 < T; tok0 += 16) {
      const int64_t m0 = t * T + tok0;
      const int64_t valid = M - m0 < 16 ? (M - m0 > 0 ? M - m0 : 0) : 16;
      for (int64_t k0 = 0; k0 < K; k0 += 16) {
        const int64_t kn = K - k0 < 16 ? K - k0 : 16;  // a multiple of 4
        const __mmask16 kmask = static_cast<__mmask16>(kn == 16 ? 0xFFFF : (1u << kn) - 1u);
        __m512i r[16];
        for (int64_t i = 0; i < 16; ++i)  // pad tokens stay 0, as PackTokenTiles leaves them
          r[i] = i < valid ? quantize(_mm512_maskz_loadu_ps(kmask, x + (m0 + i) * ldx + k0)) : _mm512_setzero_si512();
        __m512i p[4];
        for (int j = 0; j < 4; ++j)
          p[j] = _mm512_packus_epi16(_mm512_packus_epi32(r[4 * j], r[4 * j + 1]),
                                     _mm512_packus_epi32(r[4 * j + 2], r[4 * j + 3]));
        const __m512i t0 = _mm512_shuffle_i32x4(p[0], p[1], 0x44), t1 = _mm512_shuffle_i32x4(p[0], p[1], 0xEE);
        const __m512i t2 = _mm512_shuffle_i32x4(p[2], p[3], 0x44), t3 = _mm512_shuffle_i32x4(p[2], p[3], 0xEE);
        const __m512i u[4] = {_mm512_shuffle_i32x4(t0, t2, 0x88), _mm512_shuffle_i32x4(t0, t2, 0xDD),
                              _mm512_shuffle_i32x4(t1, t3, 0x88), _mm512_shuffle_i32x4(t1, t3, 0xDD)};
        for (int64_t l = 0; l < kn / 4; ++l) _mm512_storeu_si512(tile + ((k0 / 4 + l) * T + tok0) * 4, u[l]);
      }
    }
  }
}

namespace {

template <int V>  // accumulators per column: a token tile of 16 * V tokens
void Spmm4x1(const SpmmU8S8Args& a, const uint8_t* a_packed, int64_t n_begin, int64_t n_end) {
  const BlockSparseS8& B = *a.B;
  constexpr int64_t T = 16 * V;
  const int64_t groups = B.K / 4, tiles = (a.M + T - 1) / T, ncols = n_end - n_begin;
  const __m512i za = _mm512_set1_epi32(a.a_zero_point);
  thread_local AlignedBuffer<float> scratch;  // [ncols][T] results
  thread_local AlignedBuffer<int32_t> partial;  // [ncols][T] int32 sums carried between K chunks
  if (scratch.size() < static_cast<size_t>(ncols * T)) scratch.EnsureSize(static_cast<size_t>(ncols * T));
  if (B.chunks > 1 && partial.size() < static_cast<size_t>(ncols * T)) partial.EnsureSize(static_cast<size_t>(ncols * T));
  const int64_t ncol_all = B.N + 1;  // bn == 1
  // locals, not a.* / B.* in the loops: the scratch stores may alias anything, so the compiler would reload
  // (and re-test) every field after each one
  const int8_t* values = B.values.data();  // one 4 x 1 block = 4 int8, broadcast as one int32
  const int32_t* block_rows = B.block_rows.data();
  const int32_t* col_sum = B.col_sum.data();
  const float* scale_ptr = a.epilogue.scale;
  const float* bias_ptr = a.epilogue.bias;
  float* scratch_ptr = scratch.data();
  int32_t* partial_ptr = partial.data();
  for (int64_t t = 0; t < tiles; ++t) {
    const uint8_t* tile = a_packed + t * groups * T * 4;
    for (int64_t c = 0; c < B.chunks; ++c) {
      const bool first = c == 0, last = c + 1 == B.chunks;
      const int32_t* begin_ptr = B.chunk_ptr.data() + c * ncol_all;
      const int32_t* end_ptr = B.chunk_ptr.data() + (c + 1) * ncol_all;
      for (int64_t n = n_begin; n < n_end; ++n) {
        __m512i acc[V];
        int32_t* part = partial_ptr + (n - n_begin) * T;
        for (int v = 0; v < V; ++v) acc[v] = first ? _mm512_setzero_si512() : _mm512_loadu_si512(part + v * 16);
        const int32_t end = end_ptr[n];
        for (int32_t i = begin_ptr[n]; i < end; ++i) {
          int32_t wv;
          std::memcpy(&wv, values + static_cast<size_t>(i) * 4, 4);
          const __m512i w = _mm512_set1_epi32(wv);
          const uint8_t* ap = tile + static_cast<int64_t>(block_rows[i]) * T * 4;
          for (int v = 0; v < V; ++v) acc[v] = _mm512_dpbusd_epi32(acc[v], _mm512_loadu_si512(ap + v * 64), w);
        }
        if (!last) {
          for (int v = 0; v < V; ++v) _mm512_storeu_si512(part + v * 16, acc[v]);
          continue;
        }
        // sum (a - za) w = sum a w - za * colsum(w)
        const __m512i off = _mm512_mullo_epi32(za, _mm512_set1_epi32(col_sum[n]));
        const __m512 scale = _mm512_set1_ps(scale_ptr[n]);
        float* dst = scratch_ptr + (n - n_begin) * T;
        if (bias_ptr != nullptr) {
          const __m512 bias = _mm512_set1_ps(bias_ptr[n]);
          for (int v = 0; v < V; ++v)
            _mm512_storeu_ps(dst + v * 16,  // mul then add, not an FMA: the same rounding as the dense kernels
                             _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[v], off)), scale), bias));
        } else {
          for (int v = 0; v < V; ++v)
            _mm512_storeu_ps(dst + v * 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[v], off)), scale));
        }
      }
    }
    const int64_t rows = a.M - t * T < T ? a.M - t * T : T;
    StoreColumnMajorAsRows(scratch_ptr, T, ncols, rows, a.C + t * T * a.ldc + n_begin, a.ldc);
  }
}

}  // namespace

void SpmmU8S8_4x1_Avx512Vnni(const SpmmU8S8Args& a, const uint8_t* a_packed, int64_t n_begin, int64_t n_end) {
  if (a.M <= kSpmmGemvMaxM) return SpmmU8S8_4x1_Gemv_Avx512Vnni(a, n_begin, n_end);
  switch (SpmmTokenTile(a.M, kSpmmU8TokenTile)) {  // must match the tile PackTokensU8Avx512 used for this M
    case 16: return Spmm4x1<1>(a, a_packed, n_begin, n_end);
    case 32: return Spmm4x1<2>(a, a_packed, n_begin, n_end);
    default: return Spmm4x1<4>(a, a_packed, n_begin, n_end);
  }
}

}  // namespace onnxq::kernels
