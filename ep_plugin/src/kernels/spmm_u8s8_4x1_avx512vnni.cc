// Block-sparse (4 x 1) u8 x s8 GEMM with AVX512-VNNI, tokens as SIMD lanes.
//
// Activations are repacked once per call into token tiles [K/4][128 tokens][4 K] (16, 32 or 64 tokens when M is
// that small: SpmmTokenTile; M = 1 goes to the blocks-as-lanes kernel instead). For one output column and one
// token tile, each kept 4 x 1 block is a single 32-bit broadcast (its 4 int8 weights) multiplied into 8 zmm
// accumulators (128 tokens) with vpdpbusd against the block row's 512 bytes of activations (9 loads per 8
// vpdpbusd: a 64-token tile's 5 per 4 left the load ports the bottleneck; the tiles must be 64-byte aligned, or
// every load splits a cache line). K is walked in chunks of B.chunk_groups groups (48..192, chosen per weight from
// its density: SpmmChunkGroups) so the activations a column's blocks touch stay in or near L1; int32 sums carry
// across chunks. The 128 results of a column land in a column-major scratch with the fused epilogue applied, then
// are transposed into C's rows.
#include <immintrin.h>

#include <cstring>

#include "kernels/aligned_buffer.h"
#include "kernels/spmm_u8s8.h"
#include "kernels/transpose_avx512.h"

namespace onnxq::kernels {

void PackTokensU8Avx512(const uint8_t* A, int64_t M, int64_t K, int64_t lda, uint8_t* out) {
  if (M <= kSpmmGemvMaxM) return;  // read directly by the small-M kernel
  PackTokenTiles(A, M, K / 4, lda, SpmmTokenTile(M), out);  // a unit: 4 K of one token
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
  switch (SpmmTokenTile(a.M)) {  // must match the tile PackTokensU8Avx512 used for this M
    case 16: return Spmm4x1<1>(a, a_packed, n_begin, n_end);
    case 32: return Spmm4x1<2>(a, a_packed, n_begin, n_end);
    case 64: return Spmm4x1<4>(a, a_packed, n_begin, n_end);
    default: return Spmm4x1<8>(a, a_packed, n_begin, n_end);
  }
}

}  // namespace onnxq::kernels
