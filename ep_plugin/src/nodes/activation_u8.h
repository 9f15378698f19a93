// Brings a claimed group's activation input into u8 rows for the integer kernels: quantized from float (Q folded
// into the group), shifted from s8, or copied from u8. Shared by the dense and sparse INT8 nodes.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/quantize.h"
#include "ort_api.h"
#include "patterns/qdq_matmul_pattern.h"

namespace onnxq {

struct ActivationToU8 {
  QdqMatMulSpec::InputKind kind = QdqMatMulSpec::InputKind::kFloatQuantizeInKernel;
  bool is_signed = false;
  float quantize_scale = 1.0f;
  int32_t quantize_zero_point_u8 = 0;
  kernels::QuantizeLinearU8Fn quantize = nullptr;

  // Writes M rows of K bytes at leading dimension lda into `out` (which holds at least M * lda bytes).
  // `type` is the input's element type (looked up once by the caller).
  void operator()(const Ort::ConstValue& input, ONNXTensorElementDataType type, int64_t M, int64_t K, int64_t lda,
                  uint8_t* out) const;
};

}  // namespace onnxq
