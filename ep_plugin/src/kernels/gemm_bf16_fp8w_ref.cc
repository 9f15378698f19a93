// Scalar reference for the FP8-weight GEMM family, plus packing and variant selection (no ISA code here).
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cpu_features.h"
#include "kernels/gemm_bf16_fp8w.h"

namespace onnxq::kernels {
namespace {

void ComputeRef(const GemmBf16Fp8Args& a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const PackedWeightsFp8& B = *a.B;
  float lut[256];
  for (int i = 0; i < 256; ++i) lut[i] = Fp8ToFloat(static_cast<uint8_t>(i), B.format);
  for (int64_t m = m_begin; m < m_end; ++m) {
    const uint16_t* row = a.A + m * a.lda;
    for (int64_t n = n_begin; n < n_end; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < B.K; ++k) acc += Bf16ToFloat(row[k]) * lut[B.data[k * B.N + n]];
      float v = acc * a.scale[n];
      if (a.bias != nullptr) v += a.bias[n];
      a.C[m * a.ldc + n] = v;
    }
  }
}

void ComputeBf16PanelsRef(const GemmBf16Fp8Args& a, const uint16_t* panels, int64_t m_begin, int64_t m_end,
                          int64_t n_begin, int64_t n_end) {
  const int64_t K = a.B->K, pairs = (K + 1) / 2;
  for (int64_t m = m_begin; m < m_end; ++m)
    for (int64_t n = n_begin; n < n_end; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const uint16_t w = panels[(((n / 64) * pairs + k / 2) * 64 + n % 64) * 2 + k % 2];
        acc += Bf16ToFloat(a.A[m * a.lda + k]) * Bf16ToFloat(w);
      }
      float v = acc * a.scale[n];
      if (a.bias != nullptr) v += a.bias[n];
      a.C[m * a.ldc + n] = v;
    }
}

const GemmBf16Fp8Kernel kRef{"ref", WeightLayoutFp8::kRowMajorKN, 1, 1, ComputeRef, ComputeBf16PanelsRef};

}  // namespace

const GemmBf16Fp8Kernel& GemmBf16Fp8RefKernel() { return kRef; }

std::vector<const GemmBf16Fp8Kernel*> AvailableGemmBf16Fp8Kernels() {
  const CpuFeatures& f = GetCpuFeatures();
  std::vector<const GemmBf16Fp8Kernel*> out;
  if (f.amx_bf16 && f.avx512_bf16 && f.avx512_vbmi && GemmBf16Fp8AmxKernel() != nullptr)
    out.push_back(GemmBf16Fp8AmxKernel());
  if (f.avx512_bf16 && f.avx512_vbmi && f.avx512bw && f.avx512vl && GemmBf16Fp8Avx512Kernel() != nullptr)
    out.push_back(GemmBf16Fp8Avx512Kernel());
  if (f.avx2 && f.fma && f.f16c && GemmBf16Fp8Avx2Kernel() != nullptr) out.push_back(GemmBf16Fp8Avx2Kernel());
  out.push_back(&kRef);
  return out;
}

bool HasFastGemmBf16Fp8Kernel() { return AvailableGemmBf16Fp8Kernels().size() > 1; }

const GemmBf16Fp8Kernel* FindGemmBf16Fp8Kernel(const char* name) {
  for (const GemmBf16Fp8Kernel* k : AvailableGemmBf16Fp8Kernels())
    if (std::strcmp(k->name, name) == 0) return k;
  return nullptr;
}

const GemmBf16Fp8Kernel& SelectGemmBf16Fp8Kernel() {
  const char* forced = std::getenv("ONNXQ_FP8_KERNEL");
  if (forced != nullptr && *forced != '\0') {
    const GemmBf16Fp8Kernel* k = FindGemmBf16Fp8Kernel(forced);
    if (k == nullptr)
      throw std::invalid_argument(std::string("ONNXQ_FP8_KERNEL=") + forced + " is not available on this CPU");
    return *k;
  }
  return *AvailableGemmBf16Fp8Kernels().front();
}

size_t Bf16PanelsSize(int64_t K, int64_t N) {
  return static_cast<size_t>((N + 63) / 64 * ((K + 1) / 2) * 128);
}

void PackBf16Panels(const uint16_t* b, int64_t K, int64_t N, int64_t ldb, uint16_t* out) {
  const int64_t pairs = (K + 1) / 2, panels = (N + 63) / 64;
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t g = 0; g < pairs; ++g) {
      uint16_t* dst = out + (p * pairs + g) * 128;
      for (int64_t c = 0; c < 64; ++c) {
        const int64_t n = p * 64 + c;
        for (int64_t j = 0; j < 2; ++j) {
          const int64_t k = 2 * g + j;
          dst[c * 2 + j] = (n < N && k < K) ? b[k * ldb + n] : 0;
        }
      }
    }
}

PackedWeightsFp8 PackWeightsFp8(WeightLayoutFp8 layout, const uint8_t* w, int64_t K, int64_t N, Fp8Format format) {
  if (K <= 0 || N <= 0) throw std::invalid_argument("PackWeightsFp8: K and N must be positive");
  PackedWeightsFp8 p;
  p.K = K;
  p.N = N;
  p.format = format;
  p.layout = layout;
  if (layout == WeightLayoutFp8::kRowMajorKN) {
    p.panel_width = 1;
    p.k_padded = K;
    p.data.Reset(static_cast<size_t>(K * N));
    std::memcpy(p.data.data(), w, static_cast<size_t>(K * N));
    return p;
  }
  if (layout == WeightLayoutFp8::kPanelsK1N16) {
    p.panel_width = 16;
    p.k_padded = (K + 1) / 2 * 2;
    const int64_t panels = (N + 15) / 16;
    p.data.Reset(static_cast<size_t>(panels * p.k_padded * 16));  // pad rows and columns: +0.0
    p.column_factor.assign(static_cast<size_t>(N), format == Fp8Format::kE4M3FN ? 256.0f : 1.0f);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) {
        const uint8_t v = w[k * N + n];
        p.data[static_cast<size_t>(((n / 16) * p.k_padded + k) * 16 + n % 16)] = v;
        if (format == Fp8Format::kE4M3FN && (v & 0x7f) == 0x7f) p.column_factor[n] = std::numeric_limits<float>::quiet_NaN();
      }
    return p;
  }
  // kPanelsK2N64Permuted: per panel of 64 columns and pair of K, two 64-byte chunks (32 columns x 2 K each).
  // After vpermi2b + unpacklo/unpackhi, chunk byte (w/8)*16 + (w%8) lands in word w of the "lo" register and
  // byte (w/8)*16 + 8 + (w%8) in word w of the "hi" register; word w holds column w/2, K offset w%2.
  p.panel_width = 64;
  p.k_padded = layout == WeightLayoutFp8::kPanelsK2N64PermutedAmx ? (K + 31) / 32 * 32 : (K + 1) / 2 * 2;
  const int64_t panels = (N + 63) / 64, pairs = p.k_padded / 2;
  p.data.Reset(static_cast<size_t>(panels * pairs * 128));  // zero bytes are +0.0 in both formats
  for (int64_t pn = 0; pn < panels; ++pn)
    for (int64_t g = 0; g < pairs; ++g) {
      uint8_t* dst = p.data.data() + (pn * pairs + g) * 128;
      for (int chunk = 0; chunk < 2; ++chunk)
        for (int half = 0; half < 2; ++half)
          for (int word = 0; word < 32; ++word) {
            const int64_t n = pn * 64 + chunk * 32 + half * 16 + word / 2;
            const int64_t k = g * 2 + word % 2;
            const int byte = (word / 8) * 16 + half * 8 + (word % 8);
            if (n < N && k < K) dst[chunk * 64 + byte] = w[k * N + n];
          }
    }
  return p;
}

}  // namespace onnxq::kernels
