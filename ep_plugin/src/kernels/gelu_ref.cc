#include <cmath>

#include "kernels/gelu.h"

namespace onnxq::kernels {

void GeluRef(const float* x, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) {
    const double v = x[i];
    y[i] = static_cast<float>(0.5 * v * std::erfc(-v * 0.70710678118654752440));  // = 1 + erf, no cancellation
  }
}

}  // namespace onnxq::kernels
