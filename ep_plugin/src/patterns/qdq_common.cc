#include "patterns/qdq_common.h"

#include <cmath>
#include <limits>

#include "patterns/graph_utils.h"

namespace onnxq::qdq {

using graph::ElementType;
using graph::IntAttr;
using graph::IsNull;
using graph::IsOp;
using graph::OnlyConsumedBy;
using graph::Producer;

Constant ReadConstant(const Ort::ConstValueInfo& v, const char* what) {
  Ort::ConstValue value = graph::ConstantValue(v);
  if (static_cast<const OrtValue*>(value) == nullptr || !value.IsTensor()) throw NoMatch{what};
  auto info = value.GetTensorTypeAndShapeInfo();
  Constant c;
  c.type = info.GetElementType();
  c.shape = info.GetShape();
  c.count = info.GetElementCount();
  c.data = value.GetTensorRawData();
  if (c.data == nullptr && c.count != 0) throw NoMatch{what};
  return c;
}

bool IsScalarLike(const Constant& c) { return c.count == 1 && c.shape.size() <= 1; }

float ReadPositiveFiniteScale(const Constant& c, size_t i) {
  const float s = static_cast<const float*>(c.data)[i];
  if (!std::isfinite(s) || !(s > 0.0f)) throw NoMatch{"scale is not a positive finite number"};
  // DequantizeLinear's float output must stay finite for every 8-bit value (|q - zp| <= 255 for INT8, <= 57344 for
  // FP8 E5M2): where onnxruntime's dequantized weights or activations overflow to inf (and then give inf / NaN), the
  // EP's exact integer sum times one combined scale would give finite numbers instead. (Found by tools/fuzz.)
  if (s > std::numeric_limits<float>::max() / 57344.0f) throw NoMatch{"scale so large dequantized values overflow"};
  return s;
}

int32_t ReadZeroPoint8(const Constant& c, size_t i) {
  if (c.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) return static_cast<const uint8_t*>(c.data)[i];
  if (c.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8) return static_cast<const int8_t*>(c.data)[i];
  throw NoMatch{"zero point is not 8-bit"};
}

bool Is8Bit(ONNXTensorElementDataType t) {
  return t == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 || t == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
}

bool IsFp8(ONNXTensorElementDataType t) {
  return t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN || t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E5M2;
}

void RequireZeroFp8(const Constant& z) {
  for (size_t i = 0; i < z.count; ++i)
    if ((static_cast<const uint8_t*>(z.data)[i] & 0x7F) != 0) throw NoMatch{"FP8 zero point is not zero"};
}

void ReadPerTensorParams(const Ort::ConstNode& node, ONNXTensorElementDataType quantized_type, float* scale,
                         int32_t* zero_point) {
  const auto inputs = node.GetInputs();
  if (inputs.size() < 2) throw NoMatch{"Q/DQ without a scale"};
  if (IntAttr(node, "block_size", 0) != 0) throw NoMatch{"blocked Q/DQ"};
  const Constant s = ReadConstant(inputs[1], "activation scale is not a constant");
  if (s.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || !IsScalarLike(s))
    throw NoMatch{"activation scale is not a float scalar"};
  *scale = ReadPositiveFiniteScale(s, 0);
  *zero_point = 0;
  if (inputs.size() >= 3 && !IsNull(inputs[2])) {
    const Constant z = ReadConstant(inputs[2], "activation zero point is not a constant");
    if (!IsScalarLike(z) || z.type != quantized_type) throw NoMatch{"activation zero point is not an 8-bit scalar"};
    if (IsFp8(quantized_type)) {
      RequireZeroFp8(z);
    } else {
      *zero_point = ReadZeroPoint8(z, 0);
    }
  }
}

QuantizedInput MatchQuantizedInput(const Ort::ConstValueInfo& value, const Ort::ConstNode& consumer) {
  QuantizedInput in;
  const Ort::ConstNode dq = Producer(value);
  if (!IsOp(dq, "DequantizeLinear")) throw NoMatch{"input is not produced by DequantizeLinear"};
  const auto dq_inputs = dq.GetInputs();
  if (dq_inputs.empty()) throw NoMatch{"DQ without input"};
  in.type = ElementType(dq_inputs[0]);
  if (!Is8Bit(in.type) && !IsFp8(in.type)) throw NoMatch{"quantized input is not 8-bit"};
  ReadPerTensorParams(dq, in.type, &in.dequantize_scale, &in.dequantize_zero_point);
  if (OnlyConsumedBy(value, consumer)) {
    in.nodes.push_back(dq);
    const Ort::ConstNode q = Producer(dq_inputs[0]);
    if (IsOp(q, "QuantizeLinear") && OnlyConsumedBy(dq_inputs[0], dq) && !q.GetInputs().empty() &&
        ElementType(q.GetInputs()[0]) == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && !graph::HasAttr(q, "precision") &&
        IntAttr(q, "saturate", 1) == 1) {
      ReadPerTensorParams(q, in.type, &in.quantize_scale, &in.quantize_zero_point);
      in.nodes.push_back(q);
      in.kind = QuantizedInput::Kind::kFloatQuantizeInKernel;
      in.input_name = q.GetInputs()[0].GetName();
    } else {
      in.kind = QuantizedInput::Kind::kQuantized;
      in.input_name = dq_inputs[0].GetName();
    }
  } else {
    in.kind = QuantizedInput::Kind::kFloatQuantizeInKernel;
    in.quantize_scale = in.dequantize_scale;
    in.quantize_zero_point = in.dequantize_zero_point;
    in.input_name = value.GetName();
  }
  return in;
}

}  // namespace onnxq::qdq
