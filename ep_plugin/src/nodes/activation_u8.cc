#include "nodes/activation_u8.h"

#include <cstring>
#include <stdexcept>

namespace onnxq {

void ActivationToU8::operator()(const Ort::ConstValue& input, ONNXTensorElementDataType type, int64_t M, int64_t K,
                                int64_t lda, uint8_t* out) const {
  if (kind == QdqMatMulSpec::InputKind::kFloatQuantizeInKernel) {
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw std::runtime_error("expected a float activation");
    const float* x = input.GetTensorData<float>();
    if (lda == K) {
      quantize(x, static_cast<size_t>(M * K), quantize_scale, quantize_zero_point_u8, out);
    } else {
      for (int64_t m = 0; m < M; ++m)
        quantize(x + m * K, static_cast<size_t>(K), quantize_scale, quantize_zero_point_u8, out + m * lda);
    }
  } else if (is_signed) {
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8) throw std::runtime_error("expected an int8 activation");
    const int8_t* src = input.GetTensorData<int8_t>();
    for (int64_t m = 0; m < M; ++m) kernels::ShiftS8ToU8Ref(src + m * K, static_cast<size_t>(K), out + m * lda);
  } else {
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) throw std::runtime_error("expected a uint8 activation");
    const uint8_t* src = input.GetTensorData<uint8_t>();
    for (int64_t m = 0; m < M; ++m) std::memcpy(out + m * lda, src + m * K, static_cast<size_t>(K));
  }
}

}  // namespace onnxq
