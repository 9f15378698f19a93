// bf16 x FP8-weight GEMM with AVX2 + FMA + F16C, for CPUs without AVX-512 (no BF16 instructions there): FP8 weights
// are widened to fp32 through FP16 bit patterns and vcvtph2ps, bf16 activations to fp32 by a 16-bit shift, and FMA
// accumulates in fp32 — the same products as the reference (both operands are exact in fp32), summed in another order.
//
// Widening: E5M2 is the top byte of an FP16, exact as is. E4M3FN's seven magnitude bits placed at FP16 bits 7..13
// (sign at 15) give the value times 2^-8, subnormals included; the 2^8 lives in PackedWeightsFp8::column_factor,
// applied in the epilogue, which also carries NaN for a column holding an E4M3FN NaN code (S.1111.111 widens to a
// normal FP16). Epilogue: (acc * column_factor[n]) * scale[n] + bias[n]; acc * 2^8 is exact.
//
// Layout kPanelsK1N16: [N/16 panels][k_padded][16 columns] FP8 bytes (one 16-byte row of a panel per K).
//   Many rows: each panel is widened once to fp32 (k_padded x 16, L2-resident) and a 6 x 16 tile (12 ymm
//   accumulators: 2 weight loads, 6 activation broadcasts, 12 FMAs per K) runs every row over it.
//   Few rows (decode): weights widened in registers (they are read once anyway) across 64 / 32 / 16 columns per pass,
//   so 8+ independent accumulators hide the FMA latency.
// Activations are converted once per call to fp32 rows, so every broadcast is one vbroadcastss from memory.
#include <immintrin.h>

#include <cstring>

#include "kernels/aligned_buffer.h"
#include "kernels/gemm_bf16_fp8w.h"

namespace onnxq::kernels {
namespace {

constexpr int kNR = 16;
constexpr int kMR = 6;
constexpr int64_t kSmallM = kMR;  // below this many rows, widen in registers

template <bool kE4M3>
inline void Widen16(const uint8_t* p, __m256& lo, __m256& hi) {
  __m256i h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 8);
  // E4M3: byte in the high half, shifted right by one with the sign copied, bit 14 (the sign's copy) cleared.
  if (kE4M3) h = _mm256_and_si256(_mm256_srai_epi16(h, 1), _mm256_set1_epi16(static_cast<short>(0xBFFF)));
  lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
  hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}

struct Ctx {
  const GemmBf16Fp8Args* a;
  const float* af;  // fp32 activations, rows from m_begin, stride K
  int64_t m_begin;
  int64_t K;
};

// 8 outputs of one row at column `col`: the vector store for full groups, the same operations one by one at the edge.
inline void Store8(const GemmBf16Fp8Args& a, const float* factor, __m256 acc, int64_t row, int64_t col, int64_t n_end) {
  const int64_t cnt = n_end - col < 8 ? n_end - col : 8;
  if (cnt <= 0) return;
  float* c = a.C + row * a.ldc + col;
  if (cnt == 8) {
    __m256 f = _mm256_mul_ps(_mm256_mul_ps(acc, _mm256_loadu_ps(factor + col)), _mm256_loadu_ps(a.scale + col));
    if (a.bias != nullptr) f = _mm256_add_ps(f, _mm256_loadu_ps(a.bias + col));
    _mm256_storeu_ps(c, f);
    return;
  }
  alignas(32) float lane[8];
  _mm256_store_ps(lane, acc);
  for (int64_t j = 0; j < cnt; ++j) {
    float f = (lane[j] * factor[col + j]) * a.scale[col + j];
    if (a.bias != nullptr) f += a.bias[col + j];
    c[j] = f;
  }
}

// R rows x 16 columns over a widened fp32 panel w (K x 16). Named accumulators (not an array): GCC otherwise keeps
// an array's copy in memory up to date on every iteration.
template <int R>
inline void Tile(const Ctx& c, const float* w, const float* factor, int64_t m0, int64_t col, int64_t n_end) {
  const int64_t K = c.K;
  const float* a0 = c.af + (m0 - c.m_begin) * K;
  const float* a1 = a0 + (R > 1 ? K : 0);
  const float* a2 = a0 + (R > 2 ? 2 * K : 0);
  const float* a3 = a0 + (R > 3 ? 3 * K : 0);
  const float* a4 = a0 + (R > 4 ? 4 * K : 0);
  const float* a5 = a0 + (R > 5 ? 5 * K : 0);
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_load_ps(w + k * kNR), b1 = _mm256_load_ps(w + k * kNR + 8);
#define ONNXQ_ROW(i)                                   \
  if constexpr (R > i) {                               \
    const __m256 av = _mm256_broadcast_ss(a##i + k);   \
    c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);        \
    c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);        \
  }
    ONNXQ_ROW(0) ONNXQ_ROW(1) ONNXQ_ROW(2) ONNXQ_ROW(3) ONNXQ_ROW(4) ONNXQ_ROW(5)
#undef ONNXQ_ROW
  }
  const __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < R; ++r) {
    Store8(*c.a, factor, acc[r][0], m0 + r, col, n_end);
    Store8(*c.a, factor, acc[r][1], m0 + r, col + 8, n_end);
  }
}

template <int R>
void RowTiles(const Ctx& c, const float* w, const float* factor, int64_t m_end, int64_t col, int64_t n_end) {
  int64_t m = c.m_begin;
  for (; m + R <= m_end; m += R) Tile<R>(c, w, factor, m, col, n_end);
  switch (m_end - m) {
    case 5: Tile<5>(c, w, factor, m, col, n_end); break;
    case 4: Tile<4>(c, w, factor, m, col, n_end); break;
    case 3: Tile<3>(c, w, factor, m, col, n_end); break;
    case 2: Tile<2>(c, w, factor, m, col, n_end); break;
    case 1: Tile<1>(c, w, factor, m, col, n_end); break;
    default: break;
  }
}

// R rows (R < 6) x NP panels, weights widened in registers. The loops over the accumulator array are unrolled
// completely so GCC keeps it in registers (with a rolled loop it keeps the array in memory).
template <bool kE4M3, int R, int NP>
void SmallTile(const Ctx& c, const PackedWeightsFp8& B, int64_t p0, int64_t n_end) {
  const int64_t K = c.K, stride = B.k_padded * kNR;
  const uint8_t* w = B.data.data() + p0 * stride;
  __m256 acc[R][2 * NP];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < 2 * NP; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m256 wv[2 * NP];
#pragma GCC unroll 16
    for (int j = 0; j < NP; ++j) Widen16<kE4M3>(w + j * stride + k * kNR, wv[2 * j], wv[2 * j + 1]);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(c.af + r * K + k);
#pragma GCC unroll 16
      for (int v = 0; v < 2 * NP; ++v) acc[r][v] = _mm256_fmadd_ps(av, wv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < 2 * NP; ++v)
      Store8(*c.a, B.column_factor.data(), acc[r][v], c.m_begin + r, p0 * kNR + v * 8, n_end);
}

template <bool kE4M3, int R>
void SmallRows(const Ctx& c, const PackedWeightsFp8& B, int64_t p_begin, int64_t p_end, int64_t n_end) {
  constexpr int kNP = R == 1 ? 3 : R == 2 ? 2 : 1;  // 6+ accumulators, no spills (16 ymm registers)
  int64_t p = p_begin;
  for (; p + kNP <= p_end; p += kNP) SmallTile<kE4M3, R, kNP>(c, B, p, n_end);
  for (; p < p_end; ++p) SmallTile<kE4M3, R, 1>(c, B, p, n_end);
}

template <bool kE4M3>
void WidenPanel(const uint8_t* pf, int64_t K, float* dst) {
  for (int64_t k = 0; k < K; ++k) {
    __m256 lo, hi;
    Widen16<kE4M3>(pf + k * kNR, lo, hi);
    _mm256_store_ps(dst + k * kNR, lo);
    _mm256_store_ps(dst + k * kNR + 8, hi);
  }
}

// bf16 rows [m_begin, m_end) -> fp32 (K values each, the pad column dropped).
const float* ActivationsToF32(const GemmBf16Fp8Args& a, int64_t m_begin, int64_t m_end, int64_t K) {
  thread_local AlignedBuffer<float> af;
  af.EnsureSize(static_cast<size_t>((m_end - m_begin) * K));
  for (int64_t m = m_begin; m < m_end; ++m) {
    const uint16_t* src = a.A + m * a.lda;
    float* dst = af.data() + (m - m_begin) * K;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k)));
      _mm256_storeu_ps(dst + k, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    for (; k < K; ++k) {
      const uint32_t bits = static_cast<uint32_t>(src[k]) << 16;
      std::memcpy(dst + k, &bits, 4);
    }
  }
  return af.data();
}

template <bool kE4M3>
void ComputeFormat(const GemmBf16Fp8Args& a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const PackedWeightsFp8& B = *a.B;
  const int64_t K = B.K;
  const Ctx c{&a, ActivationsToF32(a, m_begin, m_end, K), m_begin, K};
  const int64_t p_begin = n_begin / kNR, p_end = (n_end + kNR - 1) / kNR;
  const int64_t rows = m_end - m_begin;
  if (rows < kSmallM) {
    switch (rows) {
      case 1: SmallRows<kE4M3, 1>(c, B, p_begin, p_end, n_end); break;
      case 2: SmallRows<kE4M3, 2>(c, B, p_begin, p_end, n_end); break;
      case 3: SmallRows<kE4M3, 3>(c, B, p_begin, p_end, n_end); break;
      case 4: SmallRows<kE4M3, 4>(c, B, p_begin, p_end, n_end); break;
      default: SmallRows<kE4M3, 5>(c, B, p_begin, p_end, n_end); break;
    }
    return;
  }
  thread_local AlignedBuffer<float> panel;  // one widened panel, reused by every row tile
  panel.EnsureSize(static_cast<size_t>(K * kNR));
  for (int64_t p = p_begin; p < p_end; ++p) {
    WidenPanel<kE4M3>(B.data.data() + p * B.k_padded * kNR, K, panel.data());
    RowTiles<kMR>(c, panel.data(), B.column_factor.data(), m_end, p * kNR, n_end);
  }
}

void ComputeAvx2(const GemmBf16Fp8Args& a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  if (a.B->format == Fp8Format::kE4M3FN)
    ComputeFormat<true>(a, m_begin, m_end, n_begin, n_end);
  else
    ComputeFormat<false>(a, m_begin, m_end, n_begin, n_end);
}

// B already bf16, in PackBf16Panels' layout ([N/64][K/2][64 columns][2 K]): each 16-column slice is widened to fp32
// (k = 2g from the low half of a 32-bit pair, k = 2g + 1 from the high half) and run like a widened FP8 panel.
void ComputeBf16PanelsAvx2(const GemmBf16Fp8Args& a, const uint16_t* panels, int64_t m_begin, int64_t m_end,
                           int64_t n_begin, int64_t n_end) {
  const int64_t K = a.B->K, pairs = (K + 1) / 2;
  const Ctx c{&a, ActivationsToF32(a, m_begin, m_end, K), m_begin, K};
  thread_local AlignedBuffer<float> panel, ones;
  panel.EnsureSize(static_cast<size_t>(pairs * 2 * kNR));
  const int64_t n_pad = (n_end + kNR - 1) / kNR * kNR;
  if (ones.size() < static_cast<size_t>(n_pad)) {
    ones.EnsureSize(static_cast<size_t>(n_pad));
    for (size_t i = 0; i < ones.size(); ++i) ones[i] = 1.0f;
  }
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int64_t col = n_begin / kNR * kNR; col < n_end; col += kNR) {
    const uint16_t* src = panels + ((col / 64) * pairs * 64 + col % 64) * 2;
    float* dst = panel.data();
    for (int64_t g = 0; g < pairs; ++g) {
      const uint16_t* q = src + g * 128;
      for (int h = 0; h < 2; ++h) {  // columns 8h .. 8h + 7 of the slice: 8 (k, k+1) pairs
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + h * 16));
        _mm256_store_ps(dst + (2 * g) * kNR + h * 8, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        _mm256_store_ps(dst + (2 * g + 1) * kNR + h * 8, _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask)));
      }
    }
    RowTiles<kMR>(c, panel.data(), ones.data(), m_end, col, n_end);
  }
}

const GemmBf16Fp8Kernel kAvx2{"avx2", WeightLayoutFp8::kPanelsK1N16, kNR, kMR, ComputeAvx2, ComputeBf16PanelsAvx2};

}  // namespace

const GemmBf16Fp8Kernel* GemmBf16Fp8Avx2Kernel() { return &kAvx2; }

}  // namespace onnxq::kernels
