// Brings a claimed FP8 group's activation input into bf16 rows for the bf16 x FP8 kernels: converted from float
// (weight-only), quantized to FP8 from float and widened (Q folded into the group), or widened from the FP8 tensor.
// Shared by the dense and sparse FP8 nodes.
#pragma once
#include <cstdint>

#include "kernels/fp8.h"
#include "ort_api.h"
#include "patterns/qdq_matmul_pattern.h"

namespace onnxq {

inline kernels::Fp8Format Fp8FormatOf(ONNXTensorElementDataType t) {
  return t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E5M2 ? kernels::Fp8Format::kE5M2 : kernels::Fp8Format::kE4M3FN;
}

class ActivationToBf16 {
 public:
  // Picks the converters (AVX-512 / AVX2 / reference, all bit-identical) from GetCpuFeatures(): build it while
  // the session's ISA ceiling is in force.
  explicit ActivationToBf16(const QdqMatMulSpec& spec);

  // Writes M rows of K bf16 values at leading dimension lda into `out` (at least M * lda values); columns K..lda
  // get +0 (pad weights are 0, and 0 * garbage could be NaN). `type` is the input's element type.
  void operator()(const Ort::ConstValue& input, ONNXTensorElementDataType type, int64_t M, int64_t K, int64_t lda,
                  uint16_t* out) const;

 private:
  QdqMatMulSpec::InputKind kind_;
  kernels::Fp8Format format_ = kernels::Fp8Format::kE4M3FN;
  float quantize_scale_;
  kernels::ConvertToBf16Fn* convert_;
  kernels::QuantizeFp8ToBf16Fn* quantize_;
  uint16_t fp8_to_bf16_[256];  // activation FP8 byte -> bf16 bits (for FP8 input tensors)
};

}  // namespace onnxq
