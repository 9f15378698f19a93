#include "patterns/qdq_matmul_pattern.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "kernels/qgemm_u8s8.h"
#include "kernels/spmm_u8s8.h"
#include "patterns/graph_utils.h"
#include "patterns/qdq_common.h"

namespace onnxq {
namespace {

using graph::ConstantValue;
using graph::ElementType;
using graph::IntAttr;
using graph::IsNull;
using graph::IsOp;
using graph::OnlyConsumedBy;
using graph::Producer;

using qdq::Constant;
using qdq::Is8Bit;
using qdq::IsFp8;
using qdq::IsScalarLike;
using qdq::NoMatch;
using qdq::ReadConstant;
using qdq::ReadPositiveFiniteScale;
using qdq::RequireZeroFp8;

bool IsBlockSparseExpand(const Ort::ConstNode& n) {
  if (IsNull(n) || n.GetDomain() != "com.onnxq") return false;
  const std::string op = n.GetOperatorType();
  return op == "BlockSparseExpand" || op == "BlockSparseExpandE4M3FN" || op == "BlockSparseExpandE5M2";
}

// Reads and validates the compact weight (untrusted: every index is checked before anything is expanded).
void ReadBlockSparse(const Ort::ConstNode& node, QdqMatMulSpec* spec) {
  const auto in = node.GetInputs();
  if (in.size() != 5) throw NoMatch{"BlockSparseExpand needs 5 inputs"};
  const Constant values = ReadConstant(in[0], "block-sparse values are not a constant");
  const Constant rows = ReadConstant(in[1], "block-sparse block_rows are not a constant");
  const Constant ptr = ReadConstant(in[2], "block-sparse col_ptr is not a constant");
  const Constant shape = ReadConstant(in[3], "block-sparse shape is not a constant");
  const Constant dense = ReadConstant(in[4], "block-sparse dense shape is not a constant");
  if (values.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8 && !IsFp8(values.type))
    throw NoMatch{"block-sparse values are neither int8 nor FP8"};
  if (rows.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16 || ptr.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 ||
      shape.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 || dense.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 ||
      shape.count != 4 || dense.count != 2 || values.shape.size() != 3 || rows.shape.size() != 1 ||
      ptr.shape.size() != 1)
    throw NoMatch{"block-sparse inputs have unexpected types or ranks"};
  const auto* sh = static_cast<const int64_t*>(shape.data);
  const auto* dn = static_cast<const int64_t*>(dense.data);
  const int64_t K = dn[0], N = dn[1], bk = values.shape[1], bn = values.shape[2], nnzb = values.shape[0];
  if (K <= 0 || N <= 0 || bk <= 0 || bn <= 0 || K > (int64_t{1} << 24) || N > (int64_t{1} << 24))
    throw NoMatch{"block-sparse dimensions out of range"};
  if (sh[0] != N / bn || sh[1] != K / bk || sh[2] != bk || sh[3] != bn)
    throw NoMatch{"block-sparse shape input disagrees with the values and dense shape"};
  if (static_cast<int64_t>(rows.count) != nnzb) throw NoMatch{"block_rows length differs from the block count"};
  try {  // the kernel-side validation: tiling, col_ptr monotone and bounded, block rows in range and ascending
    kernels::ValidateBlockSparse(static_cast<int64_t>(values.count), static_cast<const int16_t*>(rows.data), nnzb,
                                 static_cast<const int32_t*>(ptr.data), static_cast<int64_t>(ptr.count), K, N, bk, bn);
  } catch (const std::invalid_argument&) {
    throw NoMatch{"block-sparse indices are inconsistent or out of range"};
  }
  spec->sparse = true;
  spec->weight_type = values.type;
  spec->K = K;
  spec->N = N;
  spec->block_k = bk;
  spec->block_n = bn;
  const auto* vd = static_cast<const int8_t*>(values.data);
  spec->weight.assign(vd, vd + values.count);
  // The model-local function stock onnxruntime runs scatters FP8 values through float16 and casts them back with
  // Cast(saturate=1), which turns E5M2 +-inf (0x7C / 0xFC) into +-57344 (0x7B / 0xFB): do the same so the EP agrees
  // with the file's own semantics (found by tools/fuzz; tests/test_hardening_ep.py).
  if (values.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E5M2)
    for (int8_t& v : spec->weight)
      if ((static_cast<uint8_t>(v) & 0x7F) == 0x7C) v = static_cast<int8_t>(static_cast<uint8_t>(v) - 1);
  const auto* rd = static_cast<const int16_t*>(rows.data);
  spec->sparse_block_rows.assign(rd, rd + rows.count);
  const auto* pd = static_cast<const int32_t*>(ptr.data);
  spec->sparse_col_ptr.assign(pd, pd + ptr.count);
}

// Per-token activation side (see the header): DQ(Q(x, s), s), both blocked along the last axis with one block of K
// per row, int8, no zero points, s the same graph tensor in both. Fills the spec and returns the Q and DQ nodes.
std::vector<const OrtNode*> MatchPerTokenInput(const Ort::ConstNode& dq_x, const Ort::ConstValueInfo& mm_input,
                                               const Ort::ConstNode& matmul, QdqMatMulSpec* spec) {
  auto is_last_axis_block_of_k = [&](const Ort::ConstNode& n) {
    const int64_t axis = IntAttr(n, "axis", 1);
    const auto shape = graph::Shape(n.GetInputs()[0]);
    const int64_t rank = shape.has_value() ? static_cast<int64_t>(shape->size()) : -1;
    return IntAttr(n, "block_size", 0) == spec->K && (axis == -1 || (rank > 0 && axis == rank - 1));
  };
  if (spec->sparse) throw NoMatch{"per-token activations with block-sparse weights are not claimed yet"};
  if (IsFp8(spec->weight_type)) throw NoMatch{"per-token FP8 activations are not claimed yet"};
  if (!OnlyConsumedBy(mm_input, matmul)) throw NoMatch{"per-token DQ output has other consumers"};
  const auto dq_in = dq_x.GetInputs();
  if (dq_in.size() < 2 || (dq_in.size() >= 3 && !IsNull(dq_in[2]))) throw NoMatch{"per-token DQ with a zero point"};
  if (!is_last_axis_block_of_k(dq_x)) throw NoMatch{"blocked activation DQ is not one block of K per row"};
  const Ort::ConstNode q = Producer(dq_in[0]);
  if (!IsOp(q, "QuantizeLinear")) throw NoMatch{"per-token DQ input is not produced by QuantizeLinear"};
  const auto q_in = q.GetInputs();
  if (q_in.size() < 2 || (q_in.size() >= 3 && !IsNull(q_in[2]))) throw NoMatch{"per-token Q with a zero point"};
  if (!is_last_axis_block_of_k(q)) throw NoMatch{"blocked activation Q is not one block of K per row"};
  if (q_in[1].GetName() != dq_in[1].GetName()) throw NoMatch{"per-token Q and DQ use different scales"};
  if (ElementType(dq_in[0]) != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8) throw NoMatch{"per-token activations are not int8"};
  if (ElementType(q_in[0]) != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ||
      ElementType(q_in[1]) != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
    throw NoMatch{"per-token activation or scale is not float"};
  spec->activation_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
  spec->activation_signed = true;
  spec->token_scale_name = q_in[1].GetName();
  if (!OnlyConsumedBy(dq_in[0], dq_x)) {
    // onnxruntime merges the identical Q nodes of the Q / K / V projections into one: that Q stays with it, and each
    // group takes the s8 tensor and the scale (the DQ folds)
    spec->input_kind = QdqMatMulSpec::InputKind::kQuantizedPerToken;
    spec->input_name = dq_in[0].GetName();
    return {dq_x};
  }
  spec->input_kind = QdqMatMulSpec::InputKind::kFloatPerToken;
  spec->input_name = q_in[0].GetName();
  return {q, dq_x};
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
  Ort::ConstNode sparse_node{nullptr};
  if (!dqw_inputs[0].IsConstantInitializer()) {
    sparse_node = graph::Producer(dqw_inputs[0]);
    if (!IsBlockSparseExpand(sparse_node)) throw NoMatch{"weight is not a constant initializer"};
    if (trans_b) throw NoMatch{"block-sparse weights with Gemm transB"};
    if (!OnlyConsumedBy(dqw_inputs[0], dq_w)) throw NoMatch{"block-sparse weight has other consumers"};
    ReadBlockSparse(sparse_node, &spec);
  }
  Constant w;
  if (!spec.sparse) {
    w = ReadConstant(dqw_inputs[0], "weight is not a constant initializer");
    if (w.shape.size() != 2 || w.shape[0] <= 0 || w.shape[1] <= 0) throw NoMatch{"weight is not a 2-D matrix"};
    spec.K = trans_b ? w.shape[1] : w.shape[0];
    spec.N = trans_b ? w.shape[0] : w.shape[1];
    if (w.count != static_cast<size_t>(spec.K * spec.N)) throw NoMatch{"weight size does not match its shape"};
  } else {
    w.type = spec.weight_type;
  }
  if (w.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8 && !IsFp8(w.type)) throw NoMatch{"weight is not int8 or FP8"};
  spec.weight_type = w.type;
  if (IsFp8(w.type) && !fp8_supported) throw NoMatch{"FP8 weights need AVX512-BF16 + VBMI on this CPU"};
  if (!IsFp8(w.type) && spec.K > kernels::kQGemmMaxK) throw NoMatch{"K too large for int32 accumulation"};
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
      for (size_t i = 0; i < wz.count && spec.sparse; ++i)
        if (z[i] != 0) throw NoMatch{"block-sparse weights need a zero weight zero point (pruned blocks must be 0)"};
      spec.weight_zero_point.assign(z, z + wz.count);
    }
  }
  const auto* wd = static_cast<const int8_t*>(w.data);
  if (spec.sparse) {
    // values were copied by ReadBlockSparse
  } else if (!trans_b) {
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
  } else if (IntAttr(dq_x, "block_size", 0) != 0) {
    const std::vector<const OrtNode*> pt = MatchPerTokenInput(dq_x, mm_inputs[0], matmul, &spec);
    nodes.insert(nodes.end(), pt.begin(), pt.end());
  } else {
    const qdq::QuantizedInput in = qdq::MatchQuantizedInput(mm_inputs[0], matmul);
    if (IsFp8(spec.weight_type) ? !IsFp8(in.type) : !Is8Bit(in.type))
      throw NoMatch{"activation type does not pair with the weight type (u8/s8 with int8, FP8 with FP8)"};
    spec.activation_type = in.type;
    spec.activation_signed = in.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    spec.activation_scale = in.dequantize_scale;
    spec.activation_zero_point = in.dequantize_zero_point;
    spec.quantize_scale = in.quantize_scale;
    spec.quantize_zero_point = in.quantize_zero_point;
    spec.input_kind = in.kind == qdq::QuantizedInput::Kind::kQuantized ? QdqMatMulSpec::InputKind::kQuantized
                                                                       : QdqMatMulSpec::InputKind::kFloatQuantizeInKernel;
    spec.input_name = in.input_name;
    nodes.insert(nodes.end(), in.nodes.begin(), in.nodes.end());
    // The kernels apply one combined scale, activation_scale * weight_scale[n], to the exact sum. Where that product
    // overflows float, a zero sum gives 0 * inf = NaN while onnxruntime (dequantize, then multiply) gives 0: such
    // groups stay with onnxruntime. (Found by tools/fuzz; tests/test_hardening_ep.py.)
    for (const float ws_n : spec.weight_scale)
      if (!std::isfinite(spec.activation_scale * ws_n)) throw NoMatch{"activation scale x weight scale overflows float"};
  }
  if (!IsNull(sparse_node)) nodes.push_back(sparse_node);
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
      // onnxruntime's MatMulAddFusion writes this int32 bias from the model's float bias; a value at the int32
      // limits means the float did not fit (or was NaN) and onnxruntime's own integer kernel then wraps around in
      // int32: neither is the model's float result, so the group stays with onnxruntime (found by tools/fuzz)
      for (size_t i = 0; i < bq.count; ++i)
        if (bqd[i] == std::numeric_limits<int32_t>::min() || bqd[i] == std::numeric_limits<int32_t>::max())
          throw NoMatch{"quantized bias at the int32 limits (a float bias that did not fit)"};
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

std::vector<int8_t> DenseWeight(const QdqMatMulSpec& spec) {
  if (!spec.sparse) return spec.weight;
  std::vector<int8_t> dense(static_cast<size_t>(spec.K * spec.N), 0);
  const int64_t bk = spec.block_k, bn = spec.block_n;
  for (int64_t j = 0; j + 1 < static_cast<int64_t>(spec.sparse_col_ptr.size()); ++j)
    for (int32_t i = spec.sparse_col_ptr[j]; i < spec.sparse_col_ptr[j + 1]; ++i)
      for (int64_t r = 0; r < bk; ++r)
        for (int64_t c = 0; c < bn; ++c)
          dense[(spec.sparse_block_rows[i] * bk + r) * spec.N + j * bn + c] = spec.weight[(i * bk + r) * bn + c];
  return dense;
}

std::optional<QdqMatMulSpec> MatchQdqMatMul(const Ort::ConstNode& matmul, bool fp8_supported, std::string* why_not) {
  try {
    return Match(matmul, fp8_supported);
  } catch (const NoMatch& e) {
    if (why_not != nullptr) *why_not = e.reason;
    return std::nullopt;
  }
}

}  // namespace onnxq
