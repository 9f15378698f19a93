// Weight packing for the u8 x s8 GEMM family (scalar: runs once per weight at session creation).
#include <stdexcept>

#include "kernels/cpu_features.h"
#include "kernels/qgemm_u8s8.h"

namespace onnxq::kernels {

PackedWeightsS8 PackWeightsS8(WeightLayoutS8 layout, const int8_t* b, int64_t K, int64_t N,
                              const int8_t* b_zero_point, int64_t b_zero_point_len) {
  if (K <= 0 || N <= 0) throw std::invalid_argument("PackWeightsS8: K and N must be positive");
  if (K > kQGemmMaxK) throw std::invalid_argument("PackWeightsS8: K exceeds the int32-exact limit");
  if (b_zero_point != nullptr && b_zero_point_len != 1 && b_zero_point_len != N)
    throw std::invalid_argument("PackWeightsS8: zero point must have length 1 or N");
  PackedWeightsS8 p;
  p.K = K;
  p.N = N;
  p.layout = layout;
  p.zero_point.assign(static_cast<size_t>(N), 0);
  if (b_zero_point != nullptr)
    for (int64_t n = 0; n < N; ++n) p.zero_point[n] = b_zero_point[b_zero_point_len == 1 ? 0 : n];
  for (int64_t n = 0; n < N; ++n) p.has_zero_point |= p.zero_point[n] != 0;
  p.col_sum.assign(static_cast<size_t>(N), 0);
  p.has_minus_128 = false;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) {
      p.col_sum[n] += b[k * N + n];
      p.has_minus_128 |= b[k * N + n] == -128;
    }

  switch (layout) {
    case WeightLayoutS8::kRowMajorKN:
      p.panel_width = 1;
      p.k_padded = K;
      p.data.Reset(static_cast<size_t>(K * N));
      for (int64_t i = 0; i < K * N; ++i) p.data[i] = b[i];
      break;
    case WeightLayoutS8::kPanelsK4N24:
    case WeightLayoutS8::kPanelsK4N64:
    case WeightLayoutS8::kPanelsK4N64Amx: {
      const int64_t kg = 4;                                                 // K values per group
      const int64_t nr = layout == WeightLayoutS8::kPanelsK4N24 ? 24 : 64;  // columns per panel
      p.panel_width = nr;
      // K groups of 4; AMX wants whole 16-group B tiles
      p.k_padded = layout == WeightLayoutS8::kPanelsK4N64Amx ? RoundUp(K, 64) : RoundUpK(K);
      const int64_t panels = (N + nr - 1) / nr;
      const int64_t groups = p.k_padded / kg;
      p.data.Reset(static_cast<size_t>(panels * groups * nr * kg));  // zero-filled: pad rows/cols stay 0
      for (int64_t pn = 0; pn < panels; ++pn)
        for (int64_t g = 0; g < groups; ++g)
          for (int64_t c = 0; c < nr; ++c) {
            const int64_t n = pn * nr + c;
            if (n >= N) continue;
            for (int64_t j = 0; j < kg; ++j) {
              const int64_t k = g * kg + j;
              if (k >= K) continue;
              p.data[((pn * groups + g) * nr + c) * kg + j] = b[k * N + n];
            }
          }
      break;
    }
  }
  return p;
}

}  // namespace onnxq::kernels

namespace onnxq::kernels {

void RepackWeightsS8(WeightLayoutS8 layout, const int8_t* b, int64_t K, int64_t N, int8_t zero_point,
                     PackedWeightsS8* out) {
  const bool vnni_layout = layout == WeightLayoutS8::kPanelsK4N64 || layout == WeightLayoutS8::kPanelsK4N64Amx;
  // The VNNI / AMX layouts are chosen only by kernels that run at or above AVX-512 (the ceiling allowed it).
  if (!vnni_layout || !DetectedCpuFeatures().avx512bw) {
    *out = PackWeightsS8(layout, b, K, N, &zero_point, 1);
    return;
  }
  out->K = K;
  out->N = N;
  out->layout = layout;
  out->panel_width = 64;
  out->k_padded = layout == WeightLayoutS8::kPanelsK4N64Amx ? RoundUp(K, 64) : RoundUpK(K);
  out->data.EnsureSize(static_cast<size_t>((N + 63) / 64 * out->k_padded * 64));
  out->zero_point.assign(static_cast<size_t>(N), zero_point);
  out->has_zero_point = zero_point != 0;
  out->has_minus_128 = true;  // not checked here (only the AVX2 kernel asks)
  out->col_sum.resize(static_cast<size_t>(N));
  RepackK4N64Avx512(b, K, N, out);  // writes every byte of the panels (pads included) and the column sums
}

}  // namespace onnxq::kernels
