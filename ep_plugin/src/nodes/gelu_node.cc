#include "nodes/gelu_node.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/gelu.h"

namespace onnxq {

GeluNode::GeluNode(size_t input_index, ThreadPool* pool) : input_index_(input_index), pool_(pool) {
  fast_ = kernels::GetCpuFeatures().avx512f;
}

void GeluNode::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  if (input_index_ >= context.GetInputCount()) throw std::runtime_error("input missing");
  Ort::ConstValue x = context.GetInput(input_index_);
  if (static_cast<const OrtValue*>(x) == nullptr || !x.IsTensor() ||
      x.GetTensorTypeAndShapeInfo().GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
    throw std::runtime_error("GELU input is missing or not a float tensor");
  auto info = x.GetTensorTypeAndShapeInfo();
  const std::vector<int64_t> shape = info.GetShape();
  const size_t n = info.GetElementCount();
  Ort::UnownedValue out = context.GetOutput(0, shape);
  if (static_cast<OrtValue*>(out) == nullptr || n == 0) return;
  const float* src = x.GetTensorData<float>();
  float* dst = out.GetTensorMutableData<float>();
  auto kernel = fast_ ? kernels::GeluAvx512 : kernels::GeluRef;
  const int threads = pool_ == nullptr ? 1 : pool_->num_threads();
  const size_t chunks = n >= (1u << 16) ? static_cast<size_t>(threads) : 1;
  if (chunks <= 1) return kernel(src, n, dst);
  const size_t per = (n / chunks + 15) / 16 * 16;  // whole zmm per chunk but the last
  pool_->ParallelFor(chunks, [&](size_t c) {
    const size_t b = std::min(n, c * per), e = std::min(n, b + per);
    if (b < e) kernel(src + b, e - b, dst + b);
  });
}

}  // namespace onnxq
