#include <cmath>

#include "kernels/layer_norm.h"

namespace onnxq::kernels {

void LayerNormRef(const LayerNormArgs& a, int64_t row_begin, int64_t row_end) {
  const int64_t D = a.D;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* x = a.x + r * D;
    float* y = a.y + r * D;
    double sum = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      float s = x[d];
      if (a.bias != nullptr) s += a.bias[d];
      if (a.skip != nullptr) s += a.skip[r * D + d];
      y[d] = s;
      sum += s;
    }
    const double mean = sum / static_cast<double>(D);
    double var = 0.0;
    for (int64_t d = 0; d < D; ++d) var += (y[d] - mean) * (y[d] - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(D) + a.epsilon);
    for (int64_t d = 0; d < D; ++d) {
      const double v = (y[d] - mean) * rstd * a.gamma[d] + (a.beta != nullptr ? a.beta[d] : 0.0f);
      y[d] = static_cast<float>(v);
    }
  }
}

}  // namespace onnxq::kernels
