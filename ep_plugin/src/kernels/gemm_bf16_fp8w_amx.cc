// bf16 x FP8-weight GEMM with AMX-BF16 (tdpbf16ps). Compiled with AMX + AVX-512 flags; used only when
// AmxAvailable(). Each 64-column FP8 panel is widened once (vpermi2b) into a bf16 scratch laid out as
// [K pairs][64 columns][2], whose 16-column slices are 64-byte-wide, 256-byte-stride B tiles; four 16 x 16 fp32
// accumulator tiles cover 32 rows x 32 columns per step. Row blocks under 16 rows go to the AVX-512 kernel (the
// packing is shared: K padded to 32 is also even).
#include <immintrin.h>

#include <vector>

#include "kernels/aligned_buffer.h"
#include "kernels/amx.h"
#include "kernels/fp8_widen_avx512.h"
#include "kernels/gemm_bf16_fp8w.h"

namespace onnxq::kernels {
namespace {

void Store(const GemmBf16Fp8Args& a, const float* acc, int64_t m0, int rows, int64_t col0, int64_t n_end) {
  for (int v = 0; v < 2; ++v) {
    const int64_t col = col0 + v * 16;
    if (col >= n_end) break;
    const int64_t cnt = n_end - col < 16 ? n_end - col : 16;
    const __mmask16 mask = static_cast<__mmask16>(cnt == 16 ? 0xFFFF : (1u << cnt) - 1u);
    const __m512 scale = _mm512_maskz_loadu_ps(mask, a.scale + col);
    const __m512 bias = a.bias != nullptr ? _mm512_maskz_loadu_ps(mask, a.bias + col) : _mm512_setzero_ps();
    for (int r = 0; r < rows; ++r) {
      __m512 f = _mm512_mul_ps(_mm512_loadu_ps(acc + r * 32 + v * 16), scale);
      if (a.bias != nullptr) f = _mm512_add_ps(f, bias);
      _mm512_mask_storeu_ps(a.C + (m0 + r) * a.ldc + col, mask, f);
    }
  }
}

void ComputeAmx(const GemmBf16Fp8Args& a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const PackedWeightsFp8& B = *a.B;
  const int64_t full_rows = (m_end - m_begin) / 16 * 16;
  if (full_rows < 16) {  // decode-sized row blocks: the AVX-512 kernel has no 16-row granularity
    GemmBf16Fp8Avx512Kernel()->compute(a, m_begin, m_end, n_begin, n_end);
    return;
  }
  static const AmxTileConfig config = AmxTileConfig::AllFull();
  _tile_loadconfig(&config);
  const Tables t = LoadTables(B.format);
  const int64_t pairs = B.k_padded / 2, kblocks = pairs / 16;
  thread_local AlignedBuffer<uint16_t> scratch;  // the widened panel: aligned 64-byte tile rows
  if (scratch.size() < static_cast<size_t>(pairs * 128)) scratch.EnsureSize(static_cast<size_t>(pairs * 128));
  alignas(64) float acc[32 * 32];
  for (int64_t panel = n_begin / 64; panel * 64 < n_end; ++panel) {
    const uint8_t* pf = B.data.data() + panel * pairs * 128;
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
    for (int pair = 0; pair < 2; ++pair) {
      const int64_t col0 = panel * 64 + pair * 32;
      if (col0 >= n_end) break;
      for (int64_t m = m_begin; m < m_end; m += 32) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        const uint16_t* a0 = a.A + m * a.lda;
        const uint16_t* a1 = a0 + 16 * a.lda;
        for (int64_t kb = 0; kb < kblocks; ++kb) {
          const uint16_t* b = dst + kb * 16 * 128 + pair * 64;
          _tile_loadd(4, a0 + kb * 32, a.lda * 2);
          _tile_loadd(5, a1 + kb * 32, a.lda * 2);
          _tile_loadd(6, b, 256);
          _tile_loadd(7, b + 32, 256);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 4, 7);
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
        }
        _tile_stored(0, acc, 128);
        _tile_stored(1, acc + 16, 128);
        _tile_stored(2, acc + 16 * 32, 128);
        _tile_stored(3, acc + 16 * 32 + 16, 128);
        Store(a, acc, m, static_cast<int>(m_end - m < 32 ? m_end - m : 32), col0, n_end);
      }
    }
  }
  _tile_release();
}

void ComputeBf16PanelsAmx(const GemmBf16Fp8Args& a, const uint16_t* panels, int64_t m_begin, int64_t m_end,
                          int64_t n_begin, int64_t n_end) {
  // Per-call packed panels have an arbitrary number of K pairs: the AVX-512 path handles them.
  GemmBf16Fp8Avx512Kernel()->compute_bf16_panels(a, panels, m_begin, m_end, n_begin, n_end);
}

const GemmBf16Fp8Kernel kAmx{"amx", WeightLayoutFp8::kPanelsK2N64PermutedAmx, 64, 32, ComputeAmx,
                             ComputeBf16PanelsAmx, 32};

}  // namespace

const GemmBf16Fp8Kernel* GemmBf16Fp8AmxKernel() { return AmxAvailable() ? &kAmx : nullptr; }

}  // namespace onnxq::kernels
