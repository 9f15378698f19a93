#include "nodes/activation_bf16.h"

#include <algorithm>
#include <stdexcept>

namespace onnxq {

ActivationToBf16::ActivationToBf16(const QdqMatMulSpec& spec)
    : kind_(spec.input_kind),
      quantize_scale_(spec.quantize_scale),
      convert_(kernels::ConvertToBf16Variants().front().fn),
      quantize_(kernels::QuantizeFp8ToBf16Variants().front().fn) {
  if (kind_ != QdqMatMulSpec::InputKind::kFloatWeightOnly) format_ = Fp8FormatOf(spec.activation_type);
  for (int i = 0; i < 256; ++i)
    fp8_to_bf16_[i] = kernels::FloatToBf16(kernels::Fp8ToFloat(static_cast<uint8_t>(i), format_));
}

void ActivationToBf16::operator()(const Ort::ConstValue& input, ONNXTensorElementDataType type, int64_t M, int64_t K,
                                  int64_t lda, uint16_t* out) const {
  if (kind_ == QdqMatMulSpec::InputKind::kQuantized) {
    const uint8_t* src = static_cast<const uint8_t*>(input.GetTensorRawData());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) out[m * lda + k] = fp8_to_bf16_[src[m * K + k]];
  } else {
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw std::runtime_error("expected a float activation");
    const float* x = input.GetTensorData<float>();
    for (int64_t m = 0; m < M; ++m) {
      if (kind_ == QdqMatMulSpec::InputKind::kFloatWeightOnly) {
        convert_(x + m * K, static_cast<size_t>(K), out + m * lda);
      } else {
        quantize_(x + m * K, static_cast<size_t>(K), quantize_scale_, format_, out + m * lda);
      }
    }
  }
  if (lda > K)
    for (int64_t m = 0; m < M; ++m) std::fill(out + m * lda + K, out + (m + 1) * lda, uint16_t{0});
}

}  // namespace onnxq
