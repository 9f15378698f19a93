// u8 x s8 GEMM with AVX512-VNNI (vpdpbusd). Compiled with AVX-512 flags; only called after the CPU check.
//
// Register tile: 6 rows x 64 columns = 24 zmm accumulators. Per group of 4 K: 4 weight loads (the packed
// panel holds 64 columns x 4 K contiguously), 6 activation broadcasts (vpbroadcastd of 4 bytes), 24 vpdpbusd.
// The panel (K x 64 bytes) stays in L2 while every row block of A streams past it. Zero-point compensation,
// per-column scale, bias and the tail mask are applied in the store (fused epilogue).
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/qgemm_u8s8.h"
#include "kernels/qgemm_u8s8_epilogue_avx512.h"

namespace onnxq::kernels {
namespace {

constexpr int kNR = 64;
constexpr int kNV = kNR / 16;
constexpr int kMR = 6;

inline __m512i Broadcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// 6 x 64 tile. Rows past `rows` (M tail) alias row 0, are computed and not stored: one kernel body, no
// per-tail variants. Accumulators are 24 named registers (arrays of __m512i made GCC spill every iteration).
void Tile(const QGemmU8S8Args& a, const int32_t* row_sum, int64_t m0, int rows, int64_t panel, int64_t n_end) {
  const PackedWeightsS8& B = *a.B;
  const int64_t groups = B.k_padded / 4;
  const int8_t* bp = B.data.data() + panel * groups * kNR * 4;
  const uint8_t* r0 = a.A + m0 * a.lda;
  const uint8_t* r1 = rows > 1 ? r0 + a.lda : r0;
  const uint8_t* r2 = rows > 2 ? r0 + 2 * a.lda : r0;
  const uint8_t* r3 = rows > 3 ? r0 + 3 * a.lda : r0;
  const uint8_t* r4 = rows > 4 ? r0 + 4 * a.lda : r0;
  const uint8_t* r5 = rows > 5 ? r0 + 5 * a.lda : r0;

#define ONNXQ_ZERO4(i) __m512i c##i##0 = _mm512_setzero_si512(), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
  ONNXQ_ZERO4(0) ONNXQ_ZERO4(1) ONNXQ_ZERO4(2) ONNXQ_ZERO4(3) ONNXQ_ZERO4(4) ONNXQ_ZERO4(5)
#undef ONNXQ_ZERO4

  for (int64_t g = 0; g < groups; ++g) {
    const int8_t* bg = bp + g * kNR * 4;
    const __m512i b0 = _mm512_loadu_si512(bg), b1 = _mm512_loadu_si512(bg + 64);
    const __m512i b2 = _mm512_loadu_si512(bg + 128), b3 = _mm512_loadu_si512(bg + 192);
#define ONNXQ_ROW(i)                                 \
  {                                                  \
    const __m512i av = Broadcast4(r##i + g * 4);     \
    c##i##0 = _mm512_dpbusd_epi32(c##i##0, av, b0);  \
    c##i##1 = _mm512_dpbusd_epi32(c##i##1, av, b1);  \
    c##i##2 = _mm512_dpbusd_epi32(c##i##2, av, b2);  \
    c##i##3 = _mm512_dpbusd_epi32(c##i##3, av, b3);  \
  }
    ONNXQ_ROW(0) ONNXQ_ROW(1) ONNXQ_ROW(2) ONNXQ_ROW(3) ONNXQ_ROW(4) ONNXQ_ROW(5)
#undef ONNXQ_ROW
  }

  const __m512i acc[kMR][kNV] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                                 {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};
  for (int v = 0; v < kNV; ++v) {
    const int64_t col = panel * kNR + v * 16;
    if (col >= n_end) break;
    StoreColumns16(a, row_sum, m0, rows, col, n_end, [&](int r) { return acc[r][v]; });
  }
}

// Few rows (M < 4, decode-style): no dead rows, and two accumulator sets over even/odd K groups so the
// vpdpbusd latency chain does not bound the loop. Same fused epilogue.
template <int ROWS>
void SmallTile(const QGemmU8S8Args& a, const int32_t* row_sum, int64_t m0, int64_t panel, int64_t n_end) {
  const PackedWeightsS8& B = *a.B;
  const int64_t groups = B.k_padded / 4;
  const int8_t* bp = B.data.data() + panel * groups * kNR * 4;
  __m512i acc[ROWS][kNV], acc2[ROWS][kNV];
  for (int r = 0; r < ROWS; ++r)
    for (int v = 0; v < kNV; ++v) acc[r][v] = acc2[r][v] = _mm512_setzero_si512();
  const uint8_t* rows[ROWS];
  for (int r = 0; r < ROWS; ++r) rows[r] = a.A + (m0 + r) * a.lda;
  int64_t g = 0;
  for (; g + 2 <= groups; g += 2) {
    const int8_t* bg = bp + g * kNR * 4;
    __m512i b[2 * kNV];
    for (int v = 0; v < 2 * kNV; ++v) b[v] = _mm512_loadu_si512(bg + v * 64);
    for (int r = 0; r < ROWS; ++r) {
      const __m512i a0 = Broadcast4(rows[r] + g * 4), a1 = Broadcast4(rows[r] + g * 4 + 4);
      for (int v = 0; v < kNV; ++v) {
        acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], a0, b[v]);
        acc2[r][v] = _mm512_dpbusd_epi32(acc2[r][v], a1, b[kNV + v]);
      }
    }
  }
  if (g < groups) {
    const int8_t* bg = bp + g * kNR * 4;
    for (int r = 0; r < ROWS; ++r) {
      const __m512i a0 = Broadcast4(rows[r] + g * 4);
      for (int v = 0; v < kNV; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], a0, _mm512_loadu_si512(bg + v * 64));
    }
  }
  for (int v = 0; v < kNV; ++v) {
    const int64_t col = panel * kNR + v * 16;
    if (col >= n_end) break;
    StoreColumns16(a, row_sum, m0, ROWS, col, n_end,
                   [&](int r) { return _mm512_add_epi32(acc[r][v], acc2[r][v]); });
  }
}

void ComputeAvx512Vnni(const QGemmU8S8Args& a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const PackedWeightsS8& B = *a.B;
  std::vector<int32_t> row_sums;
  if (B.has_zero_point) {
    row_sums.resize(static_cast<size_t>(m_end - m_begin));
    for (int64_t m = m_begin; m < m_end; ++m) {
      const uint8_t* row = a.A + m * a.lda;
      int32_t s = 0;
      for (int64_t k = 0; k < B.K; ++k) s += row[k];
      row_sums[m - m_begin] = s;
    }
  }
  for (int64_t panel = n_begin / kNR; panel * kNR < n_end; ++panel) {
    for (int64_t m = m_begin; m < m_end; m += kMR) {
      const int rows = static_cast<int>(m_end - m < kMR ? m_end - m : kMR);
      const int32_t* rs = B.has_zero_point ? row_sums.data() + (m - m_begin) : nullptr;
      switch (rows) {
        case 1: SmallTile<1>(a, rs, m, panel, n_end); break;
        case 2: SmallTile<2>(a, rs, m, panel, n_end); break;
        case 3: SmallTile<3>(a, rs, m, panel, n_end); break;
        default: Tile(a, rs, m, rows, panel, n_end); break;
      }
    }
  }
}

}  // namespace

// Interleaves 4 K-rows x 16 columns into the VNNI layout with 128-bit unpacks, writing pads as zeros, then sums
// each column with vpdpbusd against ones.
void RepackK4N64Avx512(const int8_t* b, int64_t K, int64_t N, PackedWeightsS8* out) {
  const int64_t groups = out->k_padded / 4, panels = (N + 63) / 64;
  int8_t* dst = out->data.data();
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t pn = 0; pn < panels; ++pn) {
    for (int64_t c0 = 0; c0 < 64; c0 += 16) {
      const int64_t col = pn * 64 + c0;
      const int64_t cnt = N - col <= 0 ? 0 : (N - col < 16 ? N - col : 16);
      const __mmask16 m = static_cast<__mmask16>(cnt == 16 ? 0xFFFF : (1u << cnt) - 1u);
      for (int64_t g = 0; g < groups; ++g) {
        __m128i r[4];
        for (int j = 0; j < 4; ++j) {
          const int64_t k = g * 4 + j;
          r[j] = (k < K && cnt > 0) ? _mm_maskz_loadu_epi8(m, b + k * N + col) : _mm_setzero_si128();
        }
        const __m128i t0 = _mm_unpacklo_epi8(r[0], r[1]), t1 = _mm_unpackhi_epi8(r[0], r[1]);
        const __m128i t2 = _mm_unpacklo_epi8(r[2], r[3]), t3 = _mm_unpackhi_epi8(r[2], r[3]);
        int8_t* d = dst + ((pn * groups + g) * 64 + c0) * 4;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm_unpacklo_epi16(t0, t2));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 16), _mm_unpackhi_epi16(t0, t2));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 32), _mm_unpacklo_epi16(t1, t3));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 48), _mm_unpackhi_epi16(t1, t3));
      }
      if (cnt == 0) continue;
      __m512i sum = _mm512_setzero_si512();
      for (int64_t g = 0; g < groups; ++g)
        sum = _mm512_dpbusd_epi32(sum, ones, _mm512_loadu_si512(dst + ((pn * groups + g) * 64 + c0) * 4));
      _mm512_mask_storeu_epi32(out->col_sum.data() + col, m, sum);
    }
  }
}

namespace {

const QGemmU8S8Kernel kAvx512Vnni{"avx512vnni", WeightLayoutS8::kPanelsK4N64, kNR, kMR, ComputeAvx512Vnni};

}  // namespace

const QGemmU8S8Kernel* QGemmU8S8Avx512VnniKernel() { return &kAvx512Vnni; }

}  // namespace onnxq::kernels
