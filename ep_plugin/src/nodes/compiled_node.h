// What a claimed group becomes after Compile: immutable state (prepacked weights) and a const Compute, so one
// instance serves concurrent Run() calls.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ort_api.h"

namespace onnxq {

class CompiledNode {
 public:
  virtual ~CompiledNode() = default;
  virtual void Compute(OrtKernelContext* context) const = 0;
  virtual const char* kernel_name() const = 0;
};

// The activation input and the output of a MatMul-like group with a K x N weight: input [..., K] -> output
// [..., N]. Checks the input (present, a tensor, last dimension K) and allocates the output.
struct MatMulIO {
  Ort::ConstValue input{nullptr};
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  size_t count = 0;     // input elements
  int64_t M = 0;        // rows: count / K
  float* out = nullptr;  // null when nothing reads the output: there is nothing to compute then
};
MatMulIO BindMatMulIO(Ort::KernelContext& context, size_t input_index, int64_t K, int64_t N);

}  // namespace onnxq
