// u8 x s8 GEMM with AMX-INT8 (tdpbusd). Compiled with AMX + AVX-512 flags; used only when AmxAvailable().
//
// Each step computes 32 rows x 32 columns in four 16 x 16 int32 tiles (tmm0-3) from two A tiles (tmm4-5: 16 rows
// x 64 K bytes) and two B tiles (tmm6-7: 16 K-groups x 16 columns x 4 bytes). The B tiles come straight out of
// the VNNI panel layout (64 columns x 4 bytes per K group = 256-byte rows): a 16-column slice is a 64-byte-wide,
// 256-byte-stride tile, so AMX and VNNI share one packing (K padded to 64). Accumulators go through a small
// int32 scratch into the same fused AVX-512 epilogue as the VNNI kernel.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/amx.h"
#include "kernels/qgemm_u8s8.h"
#include "kernels/qgemm_u8s8_epilogue_avx512.h"

namespace onnxq::kernels {
namespace {

void Epilogue(const QGemmU8S8Args& a, const int32_t* acc /* 32 x 32, ld 32 */, const int32_t* row_sum, int64_t m0,
              int rows, int64_t col0, int64_t n_end) {
  for (int v = 0; v < 2; ++v) {
    const int64_t col = col0 + v * 16;
    if (col >= n_end) break;
    StoreColumns16(a, row_sum, m0, rows, col, n_end, [&](int r) { return _mm512_loadu_si512(acc + r * 32 + v * 16); });
  }
}

void ComputeAmx(const QGemmU8S8Args& a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const PackedWeightsS8& B = *a.B;
  if (m_end - m_begin < 16) {  // decode-sized row blocks: VNNI reads the same packing (K padded to 64 is also 4k)
    QGemmU8S8Avx512VnniKernel()->compute(a, m_begin, m_end, n_begin, n_end);
    return;
  }
  static const AmxTileConfig config = AmxTileConfig::AllFull();
  _tile_loadconfig(&config);  // per thread: tile configuration is thread state
  std::vector<int32_t> row_sums;
  if (B.has_zero_point) {
    row_sums.resize(static_cast<size_t>(m_end - m_begin));
    for (int64_t m = m_begin; m < m_end; ++m) {
      int32_t s = 0;
      for (int64_t k = 0; k < B.K; ++k) s += a.A[m * a.lda + k];
      row_sums[m - m_begin] = s;
    }
  }
  alignas(64) int32_t acc[32 * 32];
  const int64_t groups = B.k_padded / 4, kblocks = B.k_padded / 64;
  for (int64_t panel = n_begin / 64; panel * 64 < n_end; ++panel) {
    const int8_t* bp = B.data.data() + panel * groups * 256;
    for (int pair = 0; pair < 2; ++pair) {
      const int64_t col0 = panel * 64 + pair * 32;
      if (col0 >= n_end) break;
      for (int64_t m = m_begin; m < m_end; m += 32) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        const uint8_t* a0 = a.A + m * a.lda;
        const uint8_t* a1 = a0 + 16 * a.lda;
        for (int64_t kb = 0; kb < kblocks; ++kb) {
          const int8_t* b = bp + kb * 16 * 256 + pair * 128;
          _tile_loadd(4, a0 + kb * 64, a.lda);
          _tile_loadd(5, a1 + kb * 64, a.lda);
          _tile_loadd(6, b, 256);
          _tile_loadd(7, b + 64, 256);
          _tile_dpbusd(0, 4, 6);
          _tile_dpbusd(1, 4, 7);
          _tile_dpbusd(2, 5, 6);
          _tile_dpbusd(3, 5, 7);
        }
        _tile_stored(0, acc, 128);
        _tile_stored(1, acc + 16, 128);
        _tile_stored(2, acc + 16 * 32, 128);
        _tile_stored(3, acc + 16 * 32 + 16, 128);
        const int rows = static_cast<int>(m_end - m < 32 ? m_end - m : 32);
        Epilogue(a, acc, B.has_zero_point ? row_sums.data() + (m - m_begin) : nullptr, m, rows, col0, n_end);
      }
    }
  }
  _tile_release();
}

const QGemmU8S8Kernel kAmx{"amx", WeightLayoutS8::kPanelsK4N64Amx, 64, 32, ComputeAmx, 64, 32};

}  // namespace

const QGemmU8S8Kernel* QGemmU8S8AmxKernel() { return AmxAvailable() ? &kAmx : nullptr; }

}  // namespace onnxq::kernels
