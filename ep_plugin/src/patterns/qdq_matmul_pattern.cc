#include "patterns/qdq_matmul_pattern.h"

#include <cmath>
#include <cstring>

#include "kernels/qgemm_u8s8.h"
#include "patterns/graph_utils.h"

namespace onnxq {
namespace {

using graph::ConstantValue;
using graph::ElementType;
using graph::IntAttr;
using graph::IsNull;
using graph::IsOp;
using graph::OnlyConsumedBy;
using graph::Producer;

struct NoMatch {
  const char* reason;
};

// A constant tensor read out of the model with its shape; every access below is bounds-checked against it.
struct Constant {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;
  size_t count = 0;
  const void* data = nullptr;
};

Constant ReadConstant(const Ort::ConstValueInfo& v, const char* what) {
  Ort::ConstValue value = ConstantValue(v);
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

// FP8 zero points must be +0 or -0 (ONNX allows only zero for float8 zero points).
void RequireZeroFp8(const Constant& z) {
  for (size_t i = 0; i < z.count; ++i)
    if ((static_cast<const uint8_t*>(z.data)[i] & 0x7F) != 0) throw NoMatch{"FP8 zero point is not zero"};
}

// Per-tensor scale / zero point of a Q or DQ node on an activation.
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

// Gemm attributes we can honour: alpha = beta = 1, transA = 0 (transB is handled by transposing the weight).
bool ReadGemmAttrs(const Ort::ConstNode& gemm, bool* trans_b) {
  Ort::ConstOpAttr attr{nullptr};
  for (const char* name : {"alpha", "beta"}) {
    if (gemm.GetAttributeByName(name, attr).IsOK() && static_cast<const OrtOpAttr*>(attr) != nullptr) {
      float v = 1.0f;
      if (!attr.GetValue(v).IsOK() || v != 1.0f) return false;
    }
  }
  if (IntAttr(gemm, "transA", 0) != 0) return false;
  *trans_b = IntAttr(gemm, "transB", 0) != 0;
  return true;
}

QdqMatMulSpec Match(const Ort::ConstNode& head, bool fp8_supported) {
  QdqMatMulSpec spec;
  const bool is_gemm = IsOp(head, "Gemm");
  if (!is_gemm && !IsOp(head, "MatMul")) throw NoMatch{"not a MatMul or Gemm"};
  const Ort::ConstNode& matmul = head;
  const auto mm_inputs = matmul.GetInputs();
  const auto mm_outputs = matmul.GetOutputs();
  bool trans_b = false;
  if (is_gemm) {
    if (mm_inputs.size() < 2 || mm_inputs.size() > 3 || mm_outputs.size() != 1) throw NoMatch{"unexpected Gemm arity"};
    if (!ReadGemmAttrs(matmul, &trans_b)) throw NoMatch{"Gemm with alpha/beta != 1 or transA"};
  } else if (mm_inputs.size() != 2 || mm_outputs.size() != 1) {
    throw NoMatch{"unexpected MatMul arity"};
  }
  if (ElementType(mm_outputs[0]) != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw NoMatch{"output is not float"};

  // ---- weight side: DequantizeLinear(int8 initializer [K, N] (Gemm transB: [N, K]), scale [1|N], zp) ----
  const Ort::ConstNode dq_w = Producer(mm_inputs[1]);
  if (!IsOp(dq_w, "DequantizeLinear")) throw NoMatch{"weight is not produced by DequantizeLinear"};
  if (!OnlyConsumedBy(mm_inputs[1], matmul)) throw NoMatch{"dequantized weight has other consumers"};
  if (IntAttr(dq_w, "block_size", 0) != 0) throw NoMatch{"blocked weight quantization"};
  const auto dqw_inputs = dq_w.GetInputs();
  if (dqw_inputs.size() < 2) throw NoMatch{"weight DQ without a scale"};
  const Constant w = ReadConstant(dqw_inputs[0], "weight is not a constant initializer");
  if (w.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8 && !IsFp8(w.type)) throw NoMatch{"weight is not int8 or FP8"};
  spec.weight_type = w.type;
  if (IsFp8(w.type) && !fp8_supported) throw NoMatch{"FP8 weights need AVX512-BF16 + VBMI on this CPU"};
  if (w.shape.size() != 2 || w.shape[0] <= 0 || w.shape[1] <= 0) throw NoMatch{"weight is not a 2-D matrix"};
  spec.K = trans_b ? w.shape[1] : w.shape[0];
  spec.N = trans_b ? w.shape[0] : w.shape[1];
  if (!IsFp8(w.type) && spec.K > kernels::kQGemmMaxK) throw NoMatch{"K too large for int32 accumulation"};
  if (w.count != static_cast<size_t>(spec.K * spec.N)) throw NoMatch{"weight size does not match its shape"};
  const Constant ws = ReadConstant(dqw_inputs[1], "weight scale is not a constant");
  if (ws.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw NoMatch{"weight scale is not float"};
  const bool per_tensor = IsScalarLike(ws);
  if (!per_tensor) {
    int64_t axis = IntAttr(dq_w, "axis", 1);
    if (axis < 0) axis += 2;
    if (axis != (trans_b ? 0 : 1) || ws.shape.size() != 1 || ws.count != static_cast<size_t>(spec.N))
      throw NoMatch{"weight scale is neither per-tensor nor per-output-column"};
  }
  spec.weight_scale.resize(ws.count);
  for (size_t i = 0; i < ws.count; ++i) spec.weight_scale[i] = ReadPositiveFiniteScale(ws, i);
  if (dqw_inputs.size() >= 3 && !IsNull(dqw_inputs[2])) {
    const Constant wz = ReadConstant(dqw_inputs[2], "weight zero point is not a constant");
    if (wz.type != w.type) throw NoMatch{"weight zero point type differs from the weight's"};
    if (wz.count != ws.count || wz.shape.size() != ws.shape.size())
      throw NoMatch{"weight zero point and scale shapes differ"};
    if (IsFp8(w.type)) {
      RequireZeroFp8(wz);  // FP8 zero points are zero: nothing to keep
    } else {
      const auto* z = static_cast<const int8_t*>(wz.data);
      spec.weight_zero_point.assign(z, z + wz.count);
    }
  }
  const auto* wd = static_cast<const int8_t*>(w.data);
  if (!trans_b) {
    spec.weight.assign(wd, wd + w.count);
  } else {  // [N, K] -> [K, N]
    spec.weight.resize(w.count);
    for (int64_t n = 0; n < spec.N; ++n)
      for (int64_t k = 0; k < spec.K; ++k) spec.weight[k * spec.N + n] = wd[n * spec.K + k];
  }

  // ---- activation side ----
  std::vector<const OrtNode*> nodes;
  const Ort::ConstNode dq_x = Producer(mm_inputs[0]);
  if (!IsOp(dq_x, "DequantizeLinear")) {
    // Weight-only FP8: the MatMul takes the float activation directly.
    if (!IsFp8(spec.weight_type)) throw NoMatch{"activation is not produced by DequantizeLinear"};
    if (ElementType(mm_inputs[0]) != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw NoMatch{"activation is not float"};
    spec.input_kind = QdqMatMulSpec::InputKind::kFloatWeightOnly;
    spec.input_name = mm_inputs[0].GetName();
  } else {
    const auto dqx_inputs = dq_x.GetInputs();
    if (dqx_inputs.empty()) throw NoMatch{"activation DQ without input"};
    const ONNXTensorElementDataType act_type = ElementType(dqx_inputs[0]);
    if (IsFp8(spec.weight_type) ? !IsFp8(act_type) : !Is8Bit(act_type))
      throw NoMatch{"activation type does not pair with the weight type (u8/s8 with int8, FP8 with FP8)"};
    spec.activation_type = act_type;
    spec.activation_signed = act_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    ReadPerTensorParams(dq_x, act_type, &spec.activation_scale, &spec.activation_zero_point);

    if (OnlyConsumedBy(mm_inputs[0], matmul)) {
      nodes.push_back(dq_x);
      const Ort::ConstNode q_x = Producer(dqx_inputs[0]);
      if (IsOp(q_x, "QuantizeLinear") && OnlyConsumedBy(dqx_inputs[0], dq_x) && !q_x.GetInputs().empty() &&
          ElementType(q_x.GetInputs()[0]) == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT &&
          !graph::HasAttr(q_x, "precision") && IntAttr(q_x, "saturate", 1) == 1) {
        ReadPerTensorParams(q_x, act_type, &spec.quantize_scale, &spec.quantize_zero_point);
        nodes.push_back(q_x);
        spec.input_kind = QdqMatMulSpec::InputKind::kFloatQuantizeInKernel;
        spec.input_name = q_x.GetInputs()[0].GetName();
      } else {
        spec.input_kind = QdqMatMulSpec::InputKind::kQuantized;
        spec.input_name = dqx_inputs[0].GetName();
      }
    } else {
      // Shared DQ: take its float output and re-quantize with its own parameters (exact, see header).
      spec.input_kind = QdqMatMulSpec::InputKind::kFloatQuantizeInKernel;
      spec.quantize_scale = spec.activation_scale;
      spec.quantize_zero_point = spec.activation_zero_point;
      spec.input_name = mm_inputs[0].GetName();
    }
  }
  nodes.push_back(dq_w);
  nodes.push_back(matmul);
  Ort::ConstNode bias_dq{nullptr};
  spec.key = mm_outputs[0].GetName();
  spec.output_name = spec.key;

  // ---- Gemm's own bias C: a constant float vector of N, or DequantizeLinear(int32 constant) as onnxruntime's
  // MatMulAddFusion writes it for Q/DQ graphs; either way the fused epilogue adds the float values ----
  if (is_gemm && mm_inputs.size() == 3 && !IsNull(mm_inputs[2])) {
    const Ort::ConstNode dq_b = Producer(mm_inputs[2]);
    if (IsOp(dq_b, "DequantizeLinear")) {
      if (!OnlyConsumedBy(mm_inputs[2], matmul)) throw NoMatch{"dequantized bias has other consumers"};
      if (IntAttr(dq_b, "block_size", 0) != 0) throw NoMatch{"blocked bias quantization"};
      const auto dqb_inputs = dq_b.GetInputs();
      if (dqb_inputs.size() < 2) throw NoMatch{"bias DQ without a scale"};
      const Constant bq = ReadConstant(dqb_inputs[0], "quantized bias is not a constant");
      const Constant bs = ReadConstant(dqb_inputs[1], "bias scale is not a constant");
      if (bq.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 || bq.shape.size() != 1 ||
          bq.count != static_cast<size_t>(spec.N))
        throw NoMatch{"quantized bias is not an int32 vector of length N"};
      if (bs.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || (bs.count != 1 && bs.count != bq.count))
        throw NoMatch{"bias scale is not float of length 1 or N"};
      if (dqb_inputs.size() >= 3 && !IsNull(dqb_inputs[2])) {
        const Constant bz = ReadConstant(dqb_inputs[2], "bias zero point is not a constant");
        if (bz.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 || (bz.count != 1 && bz.count != bq.count))
          throw NoMatch{"bias zero point is not int32 of length 1 or N"};
        for (size_t i = 0; i < bz.count; ++i)
          if (static_cast<const int32_t*>(bz.data)[i] != 0) throw NoMatch{"bias zero point is not 0"};
      }
      const auto* bqd = static_cast<const int32_t*>(bq.data);
      const auto* bsd = static_cast<const float*>(bs.data);
      spec.bias.resize(bq.count);
      for (size_t i = 0; i < bq.count; ++i) {
        const float sc = bsd[bs.count == 1 ? 0 : i];
        if (!std::isfinite(sc)) throw NoMatch{"bias scale is not finite"};
        spec.bias[i] = static_cast<float>(bqd[i]) * sc;  // what DequantizeLinear computes
      }
      bias_dq = dq_b;
    } else {
      const Constant c = ReadConstant(mm_inputs[2], "Gemm bias is neither a constant nor dequantized");
      const bool shape_ok = c.shape.size() == 1 || (c.shape.size() == 2 && c.shape[0] == 1);
      if (c.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || !shape_ok || c.count != static_cast<size_t>(spec.N))
        throw NoMatch{"Gemm bias is not a float vector of length N"};
      const auto* cd = static_cast<const float*>(c.data);
      spec.bias.assign(cd, cd + c.count);
    }
  }

  // ---- optional bias: Add(MatMul, b) or Add(b, MatMul) with b a constant float [N] or [1, N] ----
  if (spec.bias.empty() && !mm_outputs[0].IsGraphOutput()) {
    const auto consumers = mm_outputs[0].GetConsumers();
    if (consumers.size() == 1 && IsOp(consumers[0].node, "Add")) {
      const Ort::ConstNode add = consumers[0].node;
      const auto add_inputs = add.GetInputs();
      const auto add_outputs = add.GetOutputs();
      if (add_inputs.size() == 2 && add_outputs.size() == 1 &&
          ElementType(add_outputs[0]) == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        const int other = add_inputs[0].GetName() == spec.key ? 1 : 0;
        try {
          const Constant b = ReadConstant(add_inputs[other], "bias is not a constant");
          const bool shape_ok = (b.shape.size() == 1) || (b.shape.size() == 2 && b.shape[0] == 1 &&
                                                          graph::Shape(mm_inputs[0]).has_value() &&
                                                          graph::Shape(mm_inputs[0])->size() >= 2);
          if (b.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && shape_ok &&
              b.count == static_cast<size_t>(spec.N) && b.shape.back() == spec.N) {
            const auto* bd = static_cast<const float*>(b.data);
            spec.bias.assign(bd, bd + b.count);
            nodes.push_back(add);
            spec.output_name = add_outputs[0].GetName();
          }
        } catch (const NoMatch&) {
          // not a fusable bias: the Add stays with onnxruntime
        }
      }
    }
  }
  if (!IsNull(bias_dq)) nodes.push_back(bias_dq);
  spec.nodes = std::move(nodes);
  return spec;
}

}  // namespace

std::optional<QdqMatMulSpec> MatchQdqMatMul(const Ort::ConstNode& matmul, bool fp8_supported, std::string* why_not) {
  try {
    return Match(matmul, fp8_supported);
  } catch (const NoMatch& e) {
    if (why_not != nullptr) *why_not = e.reason;
    return std::nullopt;
  }
}

}  // namespace onnxq
