// u8 x s8 GEMM with AVX2 for CPUs without VNNI. Exact: activations and weights are widened to s16 and
// multiplied with vpmaddwd (vpmaddubsw would saturate pairs of 255 * 127). Tile: 4 rows x 24 columns
// (12 ymm accumulators); per group of 2 K, 3 weight loads (16 bytes -> 16 s16 each) and 4 broadcasts.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/qgemm_u8s8.h"

namespace onnxq::kernels {
namespace {

constexpr int kNR = 24;
constexpr int kNV = kNR / 8;
constexpr int kMR = 4;

template <int MR>
inline void Tile(const QGemmU8S8Args& a, const int32_t* row_sum, int64_t m0, int64_t panel, int64_t n_end) {
  const PackedWeightsS8& B = *a.B;
  const int64_t groups = B.k_padded / 2;
  const int8_t* bp = B.data.data() + panel * groups * kNR * 2;
  const uint8_t* arow[MR];
  for (int r = 0; r < MR; ++r) arow[r] = a.A + (m0 + r) * a.lda;
  __m256i acc[MR][kNV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < kNV; ++v) acc[r][v] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    const int8_t* bg = bp + g * kNR * 2;
    __m256i b[kNV];
    for (int v = 0; v < kNV; ++v)
      b[v] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bg + v * 16)));
    for (int r = 0; r < MR; ++r) {
      const uint8_t* p = arow[r] + g * 2;
      const __m256i av = _mm256_set1_epi32(static_cast<int32_t>(p[0]) | (static_cast<int32_t>(p[1]) << 16));
      for (int v = 0; v < kNV; ++v) acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(av, b[v]));
    }
  }
  const int32_t za = a.a_zero_point;
  const int64_t K = B.K;
  for (int v = 0; v < kNV; ++v) {
    const int64_t col = panel * kNR + v * 8;
    if (col >= n_end) break;
    const int64_t cnt = n_end - col < 8 ? n_end - col : 8;
    for (int r = 0; r < MR; ++r) {
      alignas(32) int32_t lane[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lane), acc[r][v]);
      float* c = a.C + (m0 + r) * a.ldc + col;
      for (int64_t j = 0; j < cnt; ++j) {
        const int64_t n = col + j;
        // wrapping int32 arithmetic (as unsigned) is exact: the true result fits in int32
        uint32_t x = static_cast<uint32_t>(lane[j]) - static_cast<uint32_t>(za) * static_cast<uint32_t>(B.col_sum[n]);
        if (row_sum != nullptr) {
          const uint32_t zb = static_cast<uint32_t>(B.zero_point[n]);
          x = x - zb * static_cast<uint32_t>(row_sum[r]) + static_cast<uint32_t>(K) * static_cast<uint32_t>(za) * zb;
        }
        float f = static_cast<float>(static_cast<int32_t>(x)) * a.epilogue.scale[n];
        if (a.epilogue.bias != nullptr) f += a.epilogue.bias[n];
        c[j] = f;
      }
    }
  }
}

void ComputeAvx2(const QGemmU8S8Args& a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const PackedWeightsS8& B = *a.B;
  std::vector<int32_t> row_sums;
  if (B.has_zero_point) {
    row_sums.resize(static_cast<size_t>(m_end - m_begin));
    for (int64_t m = m_begin; m < m_end; ++m) {
      int32_t s = 0;
      for (int64_t k = 0; k < B.K; ++k) s += a.A[m * a.lda + k];
      row_sums[m - m_begin] = s;
    }
  }
  auto rs = [&](int64_t row) { return B.has_zero_point ? row_sums.data() + (row - m_begin) : nullptr; };
  for (int64_t panel = n_begin / kNR; panel * kNR < n_end; ++panel) {
    int64_t m = m_begin;
    for (; m + kMR <= m_end; m += kMR) Tile<kMR>(a, rs(m), m, panel, n_end);
    switch (m_end - m) {
      case 3: Tile<3>(a, rs(m), m, panel, n_end); break;
      case 2: Tile<2>(a, rs(m), m, panel, n_end); break;
      case 1: Tile<1>(a, rs(m), m, panel, n_end); break;
      default: break;
    }
  }
}

const QGemmU8S8Kernel kAvx2{"avx2", WeightLayoutS8::kPanelsK2N24, kNR, kMR, ComputeAvx2};

}  // namespace

const QGemmU8S8Kernel* QGemmU8S8Avx2Kernel() { return &kAvx2; }

}  // namespace onnxq::kernels
