#include <cmath>

#include "kernels/cpu_features.h"
#include "kernels/quantize.h"

namespace onnxq::kernels {

void QuantizeLinearU8Ref(const float* x, size_t n, float scale, int32_t zero_point, uint8_t* y) {
  const float lo = static_cast<float>(0 - zero_point);
  const float hi = static_cast<float>(255 - zero_point);
  for (size_t i = 0; i < n; ++i) {
    float v = x[i] / scale;
    v = (v >= lo) ? v : lo;  // written so NaN takes the low bound, as maxps(NaN, lo) does
    v = (v <= hi) ? v : hi;
    y[i] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(v)) + zero_point);
  }
}

bool QuantizeReciprocalIsExact(float scale, int32_t zero_point) {
  // normal scale and reciprocal with room on both sides (no residual underflows for a quotient that can round to
  // a nonzero integer), and the +-256 pre-clamp wider than the u8 range around the zero point
  return std::isfinite(scale) && scale >= 0x1p-96f && scale <= 0x1p96f && zero_point >= 0 && zero_point <= 255;
}

QuantizeLinearU8Fn SelectQuantizeLinearU8() {
  const CpuFeatures f = GetCpuFeatures();
  if (f.avx512f && f.avx512bw && f.avx512vl) return QuantizeLinearU8Avx512;
  if (f.avx2 && f.fma && f.f16c) return QuantizeLinearU8Avx2;
  return QuantizeLinearU8Ref;
}

QuantizeLinearU8Fn SelectQuantizeLinearU8Divide() {
  const CpuFeatures f = GetCpuFeatures();
  if (f.avx512f && f.avx512bw && f.avx512vl) return QuantizeLinearU8Avx512Divide;
  if (f.avx2 && f.fma && f.f16c) return QuantizeLinearU8Avx2Divide;
  return nullptr;
}

void ShiftS8ToU8Ref(const int8_t* x, size_t n, uint8_t* y) {
  for (size_t i = 0; i < n; ++i) y[i] = static_cast<uint8_t>(x[i]) ^ 0x80u;
}

}  // namespace onnxq::kernels
