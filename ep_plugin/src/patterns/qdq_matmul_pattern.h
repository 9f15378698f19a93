// The Q/DQ MatMul pattern the onnxq EP claims (INT8, and FP8 E4M3FN / E5M2 with bf16 compute):
//
//   x ──[QuantizeLinear]──> x_q ──DequantizeLinear──┐
//                                                  MatMul ──[Add(bias)]──> y
//   w_s8 (initializer) ──DequantizeLinear(per-tensor │ per-column)──┘
//
// Gemm(A, B[, C]) with alpha = beta = 1 and transA = 0 is the same pattern (onnxruntime rewrites 2-D
// MatMul + Add into Gemm before the EP sees the graph); transB = 1 weights are transposed at claim time.
//
// The activation side may be matched at three depths, depending on what else uses the tensors:
//   * Q and DQ both fold into the group: the fused node takes float x and quantizes it itself;
//   * only DQ folds (x_q also feeds other nodes): the fused node takes the 8-bit x_q directly;
//   * DQ is shared by several consumers (typical for Q/K/V projections): the fused node takes DQ's float
//     output and re-quantizes it with DQ's own scale and zero point, which recovers x_q exactly.
// FP8 weights may also meet a plain float activation (weight-only FP8): the fused node takes x as it is.
// Per-token INT8 (ZeroQuant, what `onnxq quantize --recipe int8-per-token` writes): the activation pair is blocked,
// one block per row, with a scale computed in the graph:
//   x ──QuantizeLinear(x, s, axis=-1, block_size=K, int8)──DequantizeLinear(·, s, axis=-1, block_size=K)──MatMul
//   s = Div(Max(ReduceMax(Abs(x)), eps), 127)   (left to onnxruntime; the fused node takes x and s)
// INT8 weights need u8/s8 activations; FP8 weights need FP8 activations (either format) or none.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ort_api.h"

namespace onnxq {

struct QdqMatMulSpec {
  enum class InputKind {
    kFloatQuantizeInKernel,  // float x; the kernel quantizes it (Q folded in, or a shared DQ re-quantized)
    kQuantized,              // the 8-bit (u8 / s8 / FP8) tensor itself
    kFloatWeightOnly,        // float x straight into the MatMul (FP8 weight-only quantization)
    kFloatPerToken,          // float x and its per-row scale s ([rows, 1]): quantized per row in the kernel
    kQuantizedPerToken,      // the s8 per-token tensor (its Q is shared with other groups) and its scale s
  };
  bool per_token() const {
    return input_kind == InputKind::kFloatPerToken || input_kind == InputKind::kQuantizedPerToken;
  }
  // Element type of the weights and of the quantized activations (u8/s8/FP8 E4M3FN/E5M2 per ONNX).
  ONNXTensorElementDataType weight_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
  ONNXTensorElementDataType activation_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;  // unused for weight-only

  bool is_fp8() const { return weight_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8; }

  // The fused output scale per column: activation_scale * weight_scale[n], multiplied in float once (as
  // onnxruntime does); weight-only (float activations, nothing to dequantize on that side): weight_scale[n].
  std::vector<float> ColumnScales() const {
    // weight-only: nothing to dequantize on the activation side; per-token: the row scale is applied per row after
    const bool no_activation_scale = input_kind == InputKind::kFloatWeightOnly || per_token();
    const float a_scale = no_activation_scale ? 1.0f : activation_scale;
    std::vector<float> s(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) s[n] = a_scale * weight_scale[weight_scale.size() == 1 ? 0 : n];
    return s;
  }

  // What the fused node receives at run time.
  std::string input_name;
  std::string token_scale_name;  // kFloatPerToken: the per-row scale tensor
  InputKind input_kind = InputKind::kFloatQuantizeInKernel;
  bool activation_signed = false;  // s8 activations (shifted to u8 inside the kernel)
  float quantize_scale = 1.0f;     // used for kFloatQuantizeInKernel
  int32_t quantize_zero_point = 0;
  float activation_scale = 1.0f;  // the activation DequantizeLinear
  int32_t activation_zero_point = 0;

  // Weights and epilogue, copied out of the model (prepacked later, at Compile).
  int64_t K = 0;
  int64_t N = 0;
  std::vector<int8_t> weight;              // K x N row-major (int8 values or FP8 bytes)
  std::vector<float> weight_scale;         // 1 or N
  std::vector<int8_t> weight_zero_point;   // empty, 1 or N
  std::vector<float> bias;                 // empty or N

  // Block-sparse weight (a com.onnxq BlockSparseExpand* node feeds the weight DQ): `weight` then holds the kept
  // blocks' values (nnzb x block_k x block_n), validated against K, N and each other at claim time.
  bool sparse = false;
  int64_t block_k = 0;
  int64_t block_n = 0;
  std::vector<int16_t> sparse_block_rows;
  std::vector<int32_t> sparse_col_ptr;

  std::string output_name;  // the group's single output (MatMul's, or the bias Add's)
  std::string key;          // MatMul's output name: unique, identifies the group in Compile

  // The nodes to fuse; valid only during GetCapability.
  std::vector<const OrtNode*> nodes;
};

// Returns the spec if `matmul` (a MatMul node) heads a claimable group; otherwise nullopt, with the reason in
// `why_not` when given (used in verbose logs).
// The dense K x N weight of a sparse spec (pruned blocks are zero bytes: 0 in int8 and +0.0 in FP8).
std::vector<int8_t> DenseWeight(const QdqMatMulSpec& spec);

// `fp8_supported`: claim FP8 groups (only when a fast FP8 kernel exists on this CPU).
std::optional<QdqMatMulSpec> MatchQdqMatMul(const Ort::ConstNode& matmul, bool fp8_supported,
                                            std::string* why_not = nullptr);

}  // namespace onnxq
