#include "nodes/token_scale_node.h"

#include <emmintrin.h>  // SSE2: baseline x86-64, so no dispatch; max and |x| are exact in any order

#include <cmath>
#include <stdexcept>
#include <vector>

namespace onnxq {

float TokenScale(const float* x, int64_t k, float floor, float divisor) {
  // |x| and a running max: exact operations whatever the order, so the 16-wide loop and the scalar tail give the
  // value a plain loop gives. A NaN in the row makes the scale NaN (its results are then NaN, as with onnxruntime's
  // float route).
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
  __m128 m0 = _mm_setzero_ps(), m1 = m0, m2 = m0, m3 = m0, unordered = m0;
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m128 a0 = _mm_and_ps(_mm_loadu_ps(x + i), abs_mask), a1 = _mm_and_ps(_mm_loadu_ps(x + i + 4), abs_mask);
    const __m128 a2 = _mm_and_ps(_mm_loadu_ps(x + i + 8), abs_mask);
    const __m128 a3 = _mm_and_ps(_mm_loadu_ps(x + i + 12), abs_mask);
    unordered = _mm_or_ps(unordered, _mm_or_ps(_mm_cmpunord_ps(a0, a1), _mm_cmpunord_ps(a2, a3)));
    m0 = _mm_max_ps(m0, a0);
    m1 = _mm_max_ps(m1, a1);
    m2 = _mm_max_ps(m2, a2);
    m3 = _mm_max_ps(m3, a3);
  }
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3)));
  bool nan = _mm_movemask_ps(unordered) != 0;
  float m = lanes[0];
  for (int j = 1; j < 4; ++j) m = m < lanes[j] ? lanes[j] : m;
  for (; i < k; ++i) {
    const float a = std::fabs(x[i]);
    nan |= a != a;
    m = m < a ? a : m;
  }
  if (nan) return std::nanf("");
  return (m < floor ? floor : m) / divisor;
}

void TokenScaleNode::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  if (input_index_ >= context.GetInputCount()) throw std::runtime_error("input missing");
  const Ort::ConstValue input = context.GetInput(input_index_);
  if (static_cast<const OrtValue*>(input) == nullptr || !input.IsTensor())
    throw std::runtime_error("input is missing or not a tensor");
  const auto info = input.GetTensorTypeAndShapeInfo();
  if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw std::runtime_error("expected float");
  std::vector<int64_t> shape = info.GetShape();
  if (shape.empty()) throw std::runtime_error("per-token scale of a scalar");
  const int64_t k = shape.back();
  const size_t count = info.GetElementCount();
  shape.back() = 1;
  Ort::UnownedValue out = context.GetOutput(0, shape);
  if (static_cast<OrtValue*>(out) == nullptr) return;
  float* s = out.GetTensorMutableData<float>();
  if (k == 0) {  // ReduceMax of an empty axis: onnxruntime's identity, -inf, floored
    const size_t rows = static_cast<size_t>(out.GetTensorTypeAndShapeInfo().GetElementCount());
    for (size_t r = 0; r < rows; ++r) s[r] = spec_.floor / spec_.divisor;
    return;
  }
  const float* x = input.GetTensorData<float>();
  const size_t rows = count / static_cast<size_t>(k);
  for (size_t r = 0; r < rows; ++r) s[r] = TokenScale(x + r * k, k, spec_.floor, spec_.divisor);
}

}  // namespace onnxq
