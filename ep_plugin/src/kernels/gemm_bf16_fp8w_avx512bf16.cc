// bf16 x FP8-weight GEMM with AVX512-BF16 (vdpbf16ps) and AVX512-VBMI (vpermi2b FP8 -> BF16 widening).
// Compiled with AVX-512 flags; entered only after the CPU check in gemm_bf16_fp8w_ref.cc.
//
// Tile: 6 rows x 64 columns = 24 zmm fp32 accumulators; per pair of K: 4 weight registers (16 columns x 2 K
// each), 6 activation broadcasts (one bf16 pair each), 24 vdpbf16ps.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/aligned_buffer.h"
#include "kernels/fp8_widen_avx512.h"
#include "kernels/gemm_bf16_fp8w.h"

namespace onnxq::kernels {
namespace {

constexpr int kNR = 64;
constexpr int kMR = 6;

inline __m512bh Pair(const uint16_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return (__m512bh)_mm512_set1_epi32(v);
}

template <bool kFromBf16>
void Tile(const GemmBf16Fp8Args& a, const uint8_t* panel_fp8, const uint16_t* panel_bf16, const Tables& t, int64_t m0,
          int rows, int64_t panel, int64_t n_end) {
  const int64_t pairs = a.B->k_padded / 2;
  const uint16_t* r0 = a.A + m0 * a.lda;
  const uint16_t* r1 = rows > 1 ? r0 + a.lda : r0;
  const uint16_t* r2 = rows > 2 ? r0 + 2 * a.lda : r0;
  const uint16_t* r3 = rows > 3 ? r0 + 3 * a.lda : r0;
  const uint16_t* r4 = rows > 4 ? r0 + 4 * a.lda : r0;
  const uint16_t* r5 = rows > 5 ? r0 + 5 * a.lda : r0;
#define ONNXQ_ZERO4(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
  ONNXQ_ZERO4(0) ONNXQ_ZERO4(1) ONNXQ_ZERO4(2) ONNXQ_ZERO4(3) ONNXQ_ZERO4(4) ONNXQ_ZERO4(5)
#undef ONNXQ_ZERO4
  for (int64_t g = 0; g < pairs; ++g) {
    __m512i w0, w1, w2, w3;
    if constexpr (kFromBf16) {
      const uint16_t* q = panel_bf16 + g * 128;
      w0 = _mm512_loadu_si512(q);
      w1 = _mm512_loadu_si512(q + 32);
      w2 = _mm512_loadu_si512(q + 64);
      w3 = _mm512_loadu_si512(q + 96);
    } else {
      Widen64(panel_fp8 + g * 128, t, w0, w1);
      Widen64(panel_fp8 + g * 128 + 64, t, w2, w3);
    }
    const __m512bh b0 = (__m512bh)w0, b1 = (__m512bh)w1, b2 = (__m512bh)w2, b3 = (__m512bh)w3;
#define ONNXQ_ROW(i)                              \
  {                                               \
    const __m512bh av = Pair(r##i + g * 2);       \
    c##i##0 = _mm512_dpbf16_ps(c##i##0, av, b0);  \
    c##i##1 = _mm512_dpbf16_ps(c##i##1, av, b1);  \
    c##i##2 = _mm512_dpbf16_ps(c##i##2, av, b2);  \
    c##i##3 = _mm512_dpbf16_ps(c##i##3, av, b3);  \
  }
    ONNXQ_ROW(0) ONNXQ_ROW(1) ONNXQ_ROW(2) ONNXQ_ROW(3) ONNXQ_ROW(4) ONNXQ_ROW(5)
#undef ONNXQ_ROW
  }
  const __m512 acc[kMR][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                              {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};
  for (int v = 0; v < 4; ++v) {
    const int64_t col = panel * kNR + v * 16;
    if (col >= n_end) break;
    const int64_t cnt = n_end - col < 16 ? n_end - col : 16;
    const __mmask16 mask = static_cast<__mmask16>(cnt == 16 ? 0xFFFF : (1u << cnt) - 1u);
    const __m512 scale = _mm512_maskz_loadu_ps(mask, a.scale + col);
    const __m512 bias = a.bias != nullptr ? _mm512_maskz_loadu_ps(mask, a.bias + col) : _mm512_setzero_ps();
    for (int r = 0; r < rows; ++r) {
      __m512 f = _mm512_mul_ps(acc[r][v], scale);
      if (a.bias != nullptr) f = _mm512_add_ps(f, bias);
      _mm512_mask_storeu_ps(a.C + (m0 + r) * a.ldc + col, mask, f);
    }
  }
}

// Few rows (M < 6, decode-style): no dead rows, FP8 widened in registers (the weights are read once anyway),
// and two accumulator sets over even/odd K pairs so the vdpbf16ps latency chain does not bound the loop.
template <int ROWS>
void SmallTile(const GemmBf16Fp8Args& a, const uint8_t* pf, const Tables& t, int64_t m0, int64_t panel, int64_t n_end) {
  const int64_t pairs = a.B->k_padded / 2;
  __m512 acc[ROWS][4], acc2[ROWS][4];
  for (int r = 0; r < ROWS; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = acc2[r][v] = _mm512_setzero_ps();
  const uint16_t* rows[ROWS];
  for (int r = 0; r < ROWS; ++r) rows[r] = a.A + (m0 + r) * a.lda;
  int64_t g = 0;
  for (; g + 2 <= pairs; g += 2) {
    __m512i w[8];
    Widen64(pf + g * 128, t, w[0], w[1]);
    Widen64(pf + g * 128 + 64, t, w[2], w[3]);
    Widen64(pf + g * 128 + 128, t, w[4], w[5]);
    Widen64(pf + g * 128 + 192, t, w[6], w[7]);
    for (int r = 0; r < ROWS; ++r) {
      const __m512bh a0 = Pair(rows[r] + g * 2), a1 = Pair(rows[r] + g * 2 + 2);
      for (int v = 0; v < 4; ++v) {
        acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a0, (__m512bh)w[v]);
        acc2[r][v] = _mm512_dpbf16_ps(acc2[r][v], a1, (__m512bh)w[4 + v]);
      }
    }
  }
  if (g < pairs) {
    __m512i w[4];
    Widen64(pf + g * 128, t, w[0], w[1]);
    Widen64(pf + g * 128 + 64, t, w[2], w[3]);
    for (int r = 0; r < ROWS; ++r) {
      const __m512bh a0 = Pair(rows[r] + g * 2);
      for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a0, (__m512bh)w[v]);
    }
  }
  for (int v = 0; v < 4; ++v) {
    const int64_t col = panel * kNR + v * 16;
    if (col >= n_end) break;
    const int64_t cnt = n_end - col < 16 ? n_end - col : 16;
    const __mmask16 mask = static_cast<__mmask16>(cnt == 16 ? 0xFFFF : (1u << cnt) - 1u);
    const __m512 scale = _mm512_maskz_loadu_ps(mask, a.scale + col);
    const __m512 bias = a.bias != nullptr ? _mm512_maskz_loadu_ps(mask, a.bias + col) : _mm512_setzero_ps();
    for (int r = 0; r < ROWS; ++r) {
      __m512 f = _mm512_mul_ps(_mm512_add_ps(acc[r][v], acc2[r][v]), scale);
      if (a.bias != nullptr) f = _mm512_add_ps(f, bias);
      _mm512_mask_storeu_ps(a.C + (m0 + r) * a.ldc + col, mask, f);
    }
  }
}

void ComputeAvx512(const GemmBf16Fp8Args& a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const PackedWeightsFp8& B = *a.B;
  const Tables t = LoadTables(B.format);
  const int64_t pairs = B.k_padded / 2;
  const bool reuse = m_end - m_begin > kMR;  // several row tiles: widen each panel once
  thread_local AlignedBuffer<uint16_t> scratch;  // the widened panel: aligned, its zmm loads never split lines
  if (reuse && scratch.size() < static_cast<size_t>(pairs * 128)) scratch.EnsureSize(static_cast<size_t>(pairs * 128));
  for (int64_t panel = n_begin / kNR; panel * kNR < n_end; ++panel) {
    const uint8_t* pf = B.data.data() + panel * pairs * 128;
    if (reuse) {
      uint16_t* dst = scratch.data();
      for (int64_t g = 0; g < pairs; ++g) {
        __m512i w0, w1, w2, w3;
        Widen64(pf + g * 128, t, w0, w1);
        Widen64(pf + g * 128 + 64, t, w2, w3);
        _mm512_storeu_si512(dst + g * 128, w0);
        _mm512_storeu_si512(dst + g * 128 + 32, w1);
        _mm512_storeu_si512(dst + g * 128 + 64, w2);
        _mm512_storeu_si512(dst + g * 128 + 96, w3);
      }
    }
    for (int64_t m = m_begin; m < m_end; m += kMR) {
      const int rows = static_cast<int>(m_end - m < kMR ? m_end - m : kMR);
      if (reuse) {
        Tile<true>(a, pf, scratch.data(), t, m, rows, panel, n_end);
        continue;
      }
      switch (rows) {
        case 1: SmallTile<1>(a, pf, t, m, panel, n_end); break;
        case 2: SmallTile<2>(a, pf, t, m, panel, n_end); break;
        case 3: SmallTile<3>(a, pf, t, m, panel, n_end); break;
        default: Tile<false>(a, pf, nullptr, t, m, rows, panel, n_end); break;
      }
    }
  }
}

void ComputeBf16PanelsAvx512(const GemmBf16Fp8Args& a, const uint16_t* panels, int64_t m_begin, int64_t m_end,
                             int64_t n_begin, int64_t n_end) {
  const int64_t pairs = a.B->k_padded / 2;
  const Tables unused{};
  for (int64_t panel = n_begin / kNR; panel * kNR < n_end; ++panel)
    for (int64_t m = m_begin; m < m_end; m += kMR) {
      const int rows = static_cast<int>(m_end - m < kMR ? m_end - m : kMR);
      Tile<true>(a, nullptr, panels + panel * pairs * 128, unused, m, rows, panel, n_end);
    }
}

}  // namespace

// Interleaves pairs of K rows, 8 columns at a time (128-bit unpacks keep the order), pads written as +0.
void PackBf16PanelsAvx512(const uint16_t* b, int64_t K, int64_t N, int64_t ldb, uint16_t* out) {
  const int64_t pairs = (K + 1) / 2, panels = (N + 63) / 64;
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t g = 0; g < pairs; ++g) {
      uint16_t* dst = out + (p * pairs + g) * 128;
      const int64_t k0 = 2 * g;
      for (int64_t c = 0; c < 64; c += 8) {
        const int64_t n = p * 64 + c;
        const int64_t cnt = N - n <= 0 ? 0 : (N - n < 8 ? N - n : 8);
        const __mmask8 m = static_cast<__mmask8>(cnt == 8 ? 0xFF : (1u << cnt) - 1u);
        const __m128i r0 = cnt > 0 ? _mm_maskz_loadu_epi16(m, b + k0 * ldb + n) : _mm_setzero_si128();
        const __m128i r1 = (cnt > 0 && k0 + 1 < K) ? _mm_maskz_loadu_epi16(m, b + (k0 + 1) * ldb + n) : _mm_setzero_si128();
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c * 2), _mm_unpacklo_epi16(r0, r1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c * 2 + 8), _mm_unpackhi_epi16(r0, r1));
      }
    }
}

namespace {

const GemmBf16Fp8Kernel kAvx512{"avx512bf16", WeightLayoutFp8::kPanelsK2N64Permuted, kNR, kMR, ComputeAvx512,
                                ComputeBf16PanelsAvx512};

}  // namespace

const GemmBf16Fp8Kernel* GemmBf16Fp8Avx512Kernel() { return &kAvx512; }

}  // namespace onnxq::kernels
