// Pieces shared by the Q/DQ pattern matchers: bounds-checked reads of constants from the (untrusted) model, and
// the match of one quantized activation input (how deep the Q/DQ chain in front of a consumer can be folded).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ort_api.h"

namespace onnxq::qdq {

// Thrown inside matchers; the reason ends up in the EP's verbose log.
struct NoMatch {
  const char* reason;
};

// A constant tensor read out of the model with its shape; every access is checked against `count`.
struct Constant {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;
  size_t count = 0;
  const void* data = nullptr;
};

Constant ReadConstant(const Ort::ConstValueInfo& v, const char* what);
bool IsScalarLike(const Constant& c);
float ReadPositiveFiniteScale(const Constant& c, size_t i);
int32_t ReadZeroPoint8(const Constant& c, size_t i);
bool Is8Bit(ONNXTensorElementDataType t);  // u8 / s8
bool IsFp8(ONNXTensorElementDataType t);   // E4M3FN / E5M2
void RequireZeroFp8(const Constant& z);    // FP8 zero points must be +-0
// Per-tensor scale and zero point of a Q or DQ node (zero point 0 for FP8).
void ReadPerTensorParams(const Ort::ConstNode& node, ONNXTensorElementDataType quantized_type, float* scale,
                         int32_t* zero_point);

// One quantized activation feeding `consumer` through DequantizeLinear:
//   kFloatQuantizeInKernel: Q and DQ fold into the group (input: float x), or DQ is shared and its float output is
//                           re-quantized with DQ's own parameters (exact);
//   kQuantized:             only DQ folds (input: the 8-bit tensor).
struct QuantizedInput {
  enum class Kind { kFloatQuantizeInKernel, kQuantized };
  Kind kind = Kind::kFloatQuantizeInKernel;
  std::string input_name;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  float quantize_scale = 1.0f;
  int32_t quantize_zero_point = 0;
  float dequantize_scale = 1.0f;
  int32_t dequantize_zero_point = 0;
  std::vector<const OrtNode*> nodes;  // Q / DQ nodes folded into the group
};

// `value` is the consumer's input; its producer must be DequantizeLinear. Throws NoMatch otherwise.
QuantizedInput MatchQuantizedInput(const Ort::ConstValueInfo& value, const Ort::ConstNode& consumer);

}  // namespace onnxq::qdq
