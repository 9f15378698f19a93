// u8 x s8 GEMM with AVX2 (+FMA, F16C) for CPUs without AVX-512. Exact for every u8 activation and s8 weight,
// -128 included: onnxruntime's AVX2 kernel multiplies with vpmaddubsw, whose int16 pair sums saturate (255 * 127
// twice is too big); here no pair sum can overflow.
//
// Weights are packed once as kPanelsK4N24: [N/24 panels][K/4][24 columns][4 k] s8. Three paths per call:
//   sign trick   fewer than 16 rows and no weight is -128 (what symmetric weight quantizers write): s8 panels as
//                packed, 1 x 48 or 2 x 24 tiles. a' = a - 128 in s8, |a'| <= 128 (u8) times the weight carrying
//                a's sign (vpsignb; a weight in [-127, 127] never overflows), so a vpmaddubsw pair sum is at most
//                2 * 128 * 127 = 32512; then vpmaddwd(ones) + vpaddd as in the inexact kernel; + 128 * colsum in
//                the store. It reads 1 byte per weight and issues half the uops of widening in registers, which
//                matters at M = 1, where the loop is bound by the weight stream and decode width.
//   prefill      16 rows or more (4 or more when a weight is -128): activations widened once to s16 (K pairs),
//                each weight panel widened to s16 once (reordered to K pairs) into an L2-resident buffer and
//                reused by every 4 x 24 row tile: 12 accumulators; per K pair 3 weight loads, 4 vpbroadcastd,
//                12 vpmaddwd + vpaddd. vpmaddwd does 16 products per multiply, as many as vpmaddubsw +
//                vpmaddwd(ones), and Zen 1/2 (the AVX2-only class we target) issue vector integer multiplies on
//                one pipe only, so this loop runs at the inexact kernel's rate there (llvm-mca -mcpu=znver1 and
//                znver2: 15.9 products per cycle, the same as onnxruntime's 4 x 16 loop).
//   widen        fewer than 4 rows and a weight is -128: s8 panels widened in registers (vpmovsxbw), 1 x 24.
// Zero-point compensation, per-column scale, bias and the column tail are applied in the store (fused epilogue).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/aligned_buffer.h"
#include "kernels/qgemm_u8s8.h"

namespace onnxq::kernels {
namespace {

constexpr int kNR = 24;  // columns per panel (3 ymm of 8 int32)
constexpr int kMR = 4;   // rows per prefill tile
// Below this many rows per call the sign trick on s8 panels (2 x 24 tiles) is used when no weight is -128: at 16
// rows widening each panel once and 4 x 24 s16 tiles take over (llvm-mca -mcpu=znver1: 15.9 vs 14.7 products per
// cycle, the widening pass costing ~9% at 16 rows).
constexpr int64_t kSignTrickRows = 16;
// Below this many rows (with a -128 weight) s8 panels are widened in registers instead of once per panel.
constexpr int64_t kWidenWeightRows = 4;

struct Scratch {
  AlignedBuffer<int16_t> a16;  // the call's rows as s16, k_padded per row
  AlignedBuffer<int16_t> b16;  // one panel as s16 K pairs: [k_padded / 2][24][2]
  AlignedBuffer<uint8_t> a_sign, a_abs;  // sign trick: a - 128 (s8 bits) and |a - 128|, k_padded per row
  AlignedBuffer<int32_t> row_sum;
};

Scratch& ThreadScratch() {
  thread_local Scratch s;
  return s;
}

int32_t HorizontalSum(__m256i v) {
  __m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  x = _mm_add_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 0, 3, 2)));
  x = _mm_add_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(x);
}

// Rows [m0, m1) of A to s16 (pad columns up to kp zeroed); their sums when `row_sum` is non-null. Reads exactly K
// bytes of each row.
void WidenActivations(const QGemmU8S8Args& a, int64_t K, int64_t kp, int64_t m0, int64_t m1, int16_t* dst,
                      int32_t* row_sum) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t m = m0; m < m1; ++m) {
    const uint8_t* src = a.A + m * a.lda;
    int16_t* d = dst + (m - m0) * kp;
    __m256i sum = _mm256_setzero_si256();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + k), w);
      sum = _mm256_add_epi32(sum, _mm256_madd_epi16(w, ones));
    }
    int32_t s = 0;
    for (; k < K; ++k) {
      d[k] = src[k];
      s += src[k];
    }
    for (; k < kp; ++k) d[k] = 0;
    if (row_sum != nullptr) row_sum[m - m0] = s + HorizontalSum(sum);
  }
}

// Rows [m0, m1) of A for the sign trick: a - 128 as s8 bits (a ^ 0x80) and its absolute value, pads zeroed; their
// sums when `row_sum` is non-null.
void SignActivations(const QGemmU8S8Args& a, int64_t K, int64_t kp, int64_t m0, int64_t m1, uint8_t* sign_dst,
                     uint8_t* abs_dst, int32_t* row_sum) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t m = m0; m < m1; ++m) {
    const uint8_t* src = a.A + m * a.lda;
    uint8_t* ds = sign_dst + (m - m0) * kp;
    uint8_t* da = abs_dst + (m - m0) * kp;
    __m256i sum = _mm256_setzero_si256();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + k));
      const __m256i xs = _mm256_xor_si256(x, flip);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ds + k), xs);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(da + k), _mm256_abs_epi8(xs));
      sum = _mm256_add_epi64(sum, _mm256_sad_epu8(x, _mm256_setzero_si256()));
    }
    int32_t s = 0;
    for (; k < K; ++k) {
      const int8_t xs = static_cast<int8_t>(src[k] ^ 0x80u);
      ds[k] = static_cast<uint8_t>(xs);
      da[k] = static_cast<uint8_t>(xs < 0 ? -xs : xs);  // 128 stays 128 as u8
      s += src[k];
    }
    for (; k < kp; ++k) ds[k] = da[k] = 0;
    if (row_sum != nullptr) row_sum[m - m0] = s + HorizontalSum(sum);  // 64-bit lanes: sums < 2^32 fit the low half
  }
}

// One K4N24 s8 panel to s16 K pairs ([kp/2][24][2]): per 8 columns x 4 k, a byte shuffle puts (k0, k1) of the 8
// columns in the low half and (k2, k3) in the high half, then each half is sign-extended.
void WidenPanel(const int8_t* src, int64_t kp, int16_t* dst) {
  const __m256i pairs = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,  //
                                         0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  for (int64_t g = 0; g < kp / 4; ++g) {
    for (int v = 0; v < 3; ++v) {
      __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + g * kNR * 4 + v * 32));
      x = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(x, pairs), _MM_SHUFFLE(3, 1, 2, 0));
      int16_t* d = dst + 2 * g * kNR * 2 + v * 16;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + kNR * 2), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(x, 1)));
    }
  }
}

inline __m256i Broadcast4Bytes(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
inline __m256i Broadcast8Bytes(const void* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return _mm256_set1_epi64x(v);
}
inline __m256i Load256(const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m256i WidenS8(const int8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Stores rows [0, ROWS) of the 8 columns from `col` (cut at n_end). acc holds sum_k (a - a_shift) * b; with zero
// points, sum (a - za)(b - zb) = sum a*b - za*colsum(b) - zb*rowsum(a) + K*za*zb (wrapping int32 arithmetic is
// exact: the true result fits). Then float(x) * scale (+ bias), never fused into an FMA (-ffp-contract=off).
template <int ROWS>
inline void Store8(const QGemmU8S8Args& a, int32_t a_shift, const int32_t* row_sum, int64_t m0, int64_t col,
                   int64_t n_end, const __m256i (&acc)[ROWS]) {
  const PackedWeightsS8& B = *a.B;
  const int64_t cnt = std::min<int64_t>(n_end - col, 8);
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(cnt)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const int32_t za = a.a_zero_point;
  const uint32_t col_factor = static_cast<uint32_t>(a_shift) - static_cast<uint32_t>(za);  // wraps, as int32 lanes do
  __m256i off = _mm256_mullo_epi32(_mm256_maskload_epi32(B.col_sum.data() + col, mask),
                                   _mm256_set1_epi32(static_cast<int32_t>(col_factor)));
  __m256i zb = _mm256_setzero_si256();
  if (row_sum != nullptr) {
    zb = _mm256_maskload_epi32(B.zero_point.data() + col, mask);
    off = _mm256_add_epi32(off, _mm256_mullo_epi32(zb, _mm256_set1_epi32(static_cast<int32_t>(B.K) * za)));
  }
  const __m256 scale = _mm256_maskload_ps(a.epilogue.scale + col, mask);
  const __m256 bias = a.epilogue.bias != nullptr ? _mm256_maskload_ps(a.epilogue.bias + col, mask) : _mm256_setzero_ps();
  for (int r = 0; r < ROWS; ++r) {
    __m256i x = _mm256_add_epi32(acc[r], off);
    if (row_sum != nullptr) x = _mm256_sub_epi32(x, _mm256_mullo_epi32(zb, _mm256_set1_epi32(row_sum[r])));
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(x), scale);
    if (a.epilogue.bias != nullptr) f = _mm256_add_ps(f, bias);
    float* c = a.C + (m0 + r) * a.ldc + col;
    if (cnt == 8) {
      _mm256_storeu_ps(c, f);
    } else {
      _mm256_maskstore_ps(c, mask, f);
    }
  }
}

// Stores the three 8-column groups of a 24-column panel; acc_of(v, r) is row r's accumulator for group v.
template <int ROWS, typename AccOf>
inline void StorePanel(const QGemmU8S8Args& a, int32_t a_shift, const int32_t* row_sum, int64_t m0, int64_t col0,
                       int64_t n_end, AccOf acc_of) {
  for (int v = 0; v < 3; ++v) {
    const int64_t col = col0 + v * 8;
    if (col >= n_end) break;
    __m256i rows[ROWS];
    for (int r = 0; r < ROWS; ++r) rows[r] = acc_of(v, r);
    Store8<ROWS>(a, a_shift, row_sum, m0, col, n_end, rows);
  }
}

// Prefill: ROWS x 24 tile, s16 activation rows (stride kp) times one s16 panel. Accumulators are named registers
// (arrays of __m256i make GCC spill them); with 4 rows all 16 ymm registers are in use.
template <int ROWS>
void Tile(const QGemmU8S8Args& a, const int16_t* a16, int64_t kp, const int16_t* b16, const int32_t* row_sum,
          int64_t m0, int64_t col0, int64_t n_end) {
  const int64_t pairs = kp / 2;
  const int16_t* r0 = a16;
  const int16_t* r1 = ROWS > 1 ? a16 + kp : a16;
  const int16_t* r2 = ROWS > 2 ? a16 + 2 * kp : a16;
  const int16_t* r3 = ROWS > 3 ? a16 + 3 * kp : a16;
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256i c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  for (int64_t g = 0; g < pairs; ++g) {
    const int16_t* p = b16 + g * kNR * 2;
    const __m256i w0 = Load256(p), w1 = Load256(p + 16), w2 = Load256(p + 32);
#define ONNXQ_ROW(i)                                              \
  if (ROWS > i) {                                                 \
    const __m256i x = Broadcast4Bytes(r##i + 2 * g);              \
    c##i##0 = _mm256_add_epi32(c##i##0, _mm256_madd_epi16(x, w0)); \
    c##i##1 = _mm256_add_epi32(c##i##1, _mm256_madd_epi16(x, w1)); \
    c##i##2 = _mm256_add_epi32(c##i##2, _mm256_madd_epi16(x, w2)); \
  }
    ONNXQ_ROW(0) ONNXQ_ROW(1) ONNXQ_ROW(2) ONNXQ_ROW(3)
#undef ONNXQ_ROW
  }
  const __m256i acc[3][4] = {{c00, c10, c20, c30}, {c01, c11, c21, c31}, {c02, c12, c22, c32}};
  StorePanel<ROWS>(a, 0, row_sum, m0, col0, n_end, [&](int v, int r) { return acc[v][r]; });
}

// Few rows, no weight is -128: ROWS x (24 * PANELS) on the s8 panels as packed (the sign trick, see the top).
// 1 x 48 or 2 x 24 (6 accumulators, 3-6 weight registers: 3 x 24 makes GCC spill).
template <int ROWS, int PANELS>
void SignTile(const QGemmU8S8Args& a, const uint8_t* xs, const uint8_t* xa, int64_t kp, const int8_t* panel,
              const int32_t* row_sum, int64_t m0, int64_t col0, int64_t n_end) {
  static_assert(ROWS * PANELS <= 2, "register budget");
  constexpr int kV = 3 * PANELS;  // accumulators per row
  const int64_t groups = kp / 4, panel_bytes = kp * kNR;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[ROWS][kV];
  for (int r = 0; r < ROWS; ++r)
    for (int v = 0; v < kV; ++v) acc[r][v] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i w[kV];
    for (int v = 0; v < kV; ++v) w[v] = Load256(panel + (v / 3) * panel_bytes + g * kNR * 4 + (v % 3) * 32);
    for (int r = 0; r < ROWS; ++r) {
      const __m256i s = Broadcast4Bytes(xs + r * kp + 4 * g), m = Broadcast4Bytes(xa + r * kp + 4 * g);
      for (int v = 0; v < kV; ++v) {
        const __m256i p = _mm256_maddubs_epi16(m, _mm256_sign_epi8(w[v], s));
        acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(p, ones));
      }
    }
  }
  for (int pn = 0; pn < PANELS; ++pn)
    StorePanel<ROWS>(a, 128, row_sum, m0, col0 + pn * kNR, n_end, [&](int v, int r) { return acc[r][pn * 3 + v]; });
}

// Few rows, some weight is -128: one row x 24 with the s8 panel widened in registers. vpmovsxbw of 16 packed
// bytes gives 4 columns x (k0 k1, k2 k3) s16 pairs; times the row's 4 s16 activations (vpbroadcastq) each int32
// lane holds half a column's sum, so 6 accumulators, and adjacent lanes are added before the store.
template <int ROWS>
void WidenTile(const QGemmU8S8Args& a, const int16_t* a16, int64_t kp, const int8_t* panel, const int32_t* row_sum,
               int64_t m0, int64_t col0, int64_t n_end) {
  static_assert(ROWS == 1, "register budget (2 rows make GCC spill)");
  const int64_t groups = kp / 4;
  __m256i acc[ROWS][6];
  for (int r = 0; r < ROWS; ++r)
    for (int v = 0; v < 6; ++v) acc[r][v] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i x[ROWS];
    for (int r = 0; r < ROWS; ++r) x[r] = Broadcast8Bytes(a16 + r * kp + 4 * g);
    for (int v = 0; v < 6; ++v) {
      const __m256i w = WidenS8(panel + g * kNR * 4 + v * 16);
      for (int r = 0; r < ROWS; ++r) acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(x[r], w));
    }
  }
  // lanes (c0 c0' c1 c1' | c2 c2' c3 c3') and (c4 ... c7'): hadd -> (c0 c1 c4 c5 | c2 c3 c6 c7), then qword order
  StorePanel<ROWS>(a, 0, row_sum, m0, col0, n_end, [&](int v, int r) {
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[r][2 * v], acc[r][2 * v + 1]), _MM_SHUFFLE(3, 1, 2, 0));
  });
}

void ComputeAvx2(const QGemmU8S8Args& a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const PackedWeightsS8& B = *a.B;
  const int64_t kp = B.k_padded, rows = m_end - m_begin;
  if (rows <= 0 || n_begin >= n_end) return;
  const int64_t panel_bytes = kp * kNR;
  const int64_t first = n_begin / kNR, last = (n_end + kNR - 1) / kNR;  // panels [first, last)
  const int8_t* panels = B.data.data();
  Scratch& s = ThreadScratch();
  int32_t* row_sum = nullptr;
  if (B.has_zero_point) {
    s.row_sum.EnsureSize(static_cast<size_t>(rows));
    row_sum = s.row_sum.data();
  }
  auto rs = [&](int64_t m) { return row_sum != nullptr ? row_sum + (m - m_begin) : nullptr; };

  if (rows < kSignTrickRows && !B.has_minus_128) {
    s.a_sign.EnsureSize(static_cast<size_t>(rows * kp));
    s.a_abs.EnsureSize(static_cast<size_t>(rows * kp));
    uint8_t* xs = s.a_sign.data();
    uint8_t* xa = s.a_abs.data();
    SignActivations(a, B.K, kp, m_begin, m_end, xs, xa, row_sum);
    for (int64_t pn = first; pn < last;) {
      const int8_t* p = panels + pn * panel_bytes;
      if (rows == 1 && pn + 2 <= last) {
        SignTile<1, 2>(a, xs, xa, kp, p, row_sum, m_begin, pn * kNR, n_end);
        pn += 2;
        continue;
      }
      int64_t r = 0;  // pairs of rows, then the last row alone
      for (; r + 2 <= rows; r += 2)
        SignTile<2, 1>(a, xs + r * kp, xa + r * kp, kp, p, rs(m_begin + r), m_begin + r, pn * kNR, n_end);
      for (; r < rows; ++r)
        SignTile<1, 1>(a, xs + r * kp, xa + r * kp, kp, p, rs(m_begin + r), m_begin + r, pn * kNR, n_end);
      ++pn;
    }
    return;
  }

  s.a16.EnsureSize(static_cast<size_t>(rows * kp));
  int16_t* a16 = s.a16.data();
  WidenActivations(a, B.K, kp, m_begin, m_end, a16, row_sum);
  auto rows16 = [&](int64_t m) { return a16 + (m - m_begin) * kp; };

  if (rows < kWidenWeightRows) {
    for (int64_t pn = first; pn < last; ++pn) {
      const int8_t* p = panels + pn * panel_bytes;
      for (int64_t m = m_begin; m < m_end; ++m) WidenTile<1>(a, rows16(m), kp, p, rs(m), m, pn * kNR, n_end);
    }
    return;
  }

  s.b16.EnsureSize(static_cast<size_t>(panel_bytes));
  int16_t* b16 = s.b16.data();
  for (int64_t pn = first; pn < last; ++pn) {
    WidenPanel(panels + pn * panel_bytes, kp, b16);
    const int64_t col0 = pn * kNR;
    int64_t m = m_begin;
    for (; m + kMR <= m_end; m += kMR) Tile<kMR>(a, rows16(m), kp, b16, rs(m), m, col0, n_end);
    switch (m_end - m) {
      case 3: Tile<3>(a, rows16(m), kp, b16, rs(m), m, col0, n_end); break;
      case 2: Tile<2>(a, rows16(m), kp, b16, rs(m), m, col0, n_end); break;
      case 1: Tile<1>(a, rows16(m), kp, b16, rs(m), m, col0, n_end); break;
      default: break;
    }
  }
}

const QGemmU8S8Kernel kAvx2{"avx2", WeightLayoutS8::kPanelsK4N24, kNR, kMR, ComputeAvx2};

}  // namespace

const QGemmU8S8Kernel* QGemmU8S8Avx2Kernel() { return &kAvx2; }

}  // namespace onnxq::kernels
