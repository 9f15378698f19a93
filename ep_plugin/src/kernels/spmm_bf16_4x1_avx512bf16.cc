// Block-sparse (4 x 1) bf16 x FP8-weight GEMM with AVX512-BF16, tokens as SIMD lanes (see spmm_bf16_fp8w.h).
#include <immintrin.h>

#include <cstring>

#include "kernels/aligned_buffer.h"
#include "kernels/spmm_bf16_fp8w.h"
#include "kernels/transpose_avx512.h"

namespace onnxq::kernels {

// [tiles][K/2 pairs][T tokens][2 bf16] (T = SpmmTokenTile(M, kSpmmBf16TokenTile)).
void PackTokensBf16Avx512(const uint16_t* A, int64_t M, int64_t K, uint16_t* out) {
  PackTokenTiles(reinterpret_cast<const uint8_t*>(A), M, K / 2, K * 2, SpmmTokenTile(M, kSpmmBf16TokenTile),
                 reinterpret_cast<uint8_t*>(out));  // a unit: one bf16 K pair of one token
}

namespace {

template <int V>  // accumulators per column: a token tile of 16 * V tokens
void Spmm4x1(const SpmmBf16Args& a, const uint16_t* a_packed, int64_t n_begin, int64_t n_end) {
  const BlockSparseBf16& B = *a.B;
  constexpr int64_t T = 16 * V;
  const int64_t pairs = B.K / 2, tiles = (a.M + T - 1) / T, ncols = n_end - n_begin;
  thread_local AlignedBuffer<float> scratch;  // [ncols][T], also the partial sums between K chunks
  if (scratch.size() < static_cast<size_t>(ncols * T)) scratch.EnsureSize(static_cast<size_t>(ncols * T));
  for (int64_t t = 0; t < tiles; ++t) {
    const uint16_t* tile = a_packed + t * pairs * T * 2;
    for (int64_t c = 0; c < B.chunks; ++c) {
      const bool first = c == 0, last = c + 1 == B.chunks;
      const int32_t* begin_ptr = B.chunk_ptr.data() + c * (B.N + 1);
      const int32_t* end_ptr = B.chunk_ptr.data() + (c + 1) * (B.N + 1);
      for (int64_t n = n_begin; n < n_end; ++n) {
        float* dst = scratch.data() + (n - n_begin) * T;
        __m512 acc[V];
        for (int v = 0; v < V; ++v) acc[v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(dst + v * 16);
        for (int32_t i = begin_ptr[n]; i < end_ptr[n]; ++i) {
          const __m512bh w0 = (__m512bh)_mm512_set1_epi32(static_cast<int32_t>(B.pairs[2 * i]));
          const __m512bh w1 = (__m512bh)_mm512_set1_epi32(static_cast<int32_t>(B.pairs[2 * i + 1]));
          const uint16_t* ap = tile + static_cast<int64_t>(B.block_rows[i]) * 2 * T * 2;  // first of 2 pair rows
          for (int v = 0; v < V; ++v) {
            acc[v] = _mm512_dpbf16_ps(acc[v], (__m512bh)_mm512_loadu_si512(ap + v * 32), w0);
            acc[v] = _mm512_dpbf16_ps(acc[v], (__m512bh)_mm512_loadu_si512(ap + T * 2 + v * 32), w1);
          }
        }
        if (!last) {
          for (int v = 0; v < V; ++v) _mm512_storeu_ps(dst + v * 16, acc[v]);
          continue;
        }
        const __m512 scale = _mm512_set1_ps(a.scale[n]);
        const __m512 bias = _mm512_set1_ps(a.bias != nullptr ? a.bias[n] : 0.0f);
        for (int v = 0; v < V; ++v) {
          __m512 f = _mm512_mul_ps(acc[v], scale);
          if (a.bias != nullptr) f = _mm512_add_ps(f, bias);
          _mm512_storeu_ps(dst + v * 16, f);
        }
      }
    }
    const int64_t rows = a.M - t * T < T ? a.M - t * T : T;
    StoreColumnMajorAsRows(scratch.data(), T, ncols, rows, a.C + t * T * a.ldc + n_begin, a.ldc);
  }
}

}  // namespace

void SpmmBf16_4x1_Avx512(const SpmmBf16Args& a, const uint16_t* a_packed, int64_t n_begin, int64_t n_end) {
  switch (SpmmTokenTile(a.M, kSpmmBf16TokenTile)) {  // must match the tile PackTokensBf16Avx512 used for this M
    case 16: return Spmm4x1<1>(a, a_packed, n_begin, n_end);
    case 32: return Spmm4x1<2>(a, a_packed, n_begin, n_end);
    case 64: return Spmm4x1<4>(a, a_packed, n_begin, n_end);
    default: return Spmm4x1<8>(a, a_packed, n_begin, n_end);
  }
}

}  // namespace onnxq::kernels
