// Q/DQ work left outside the MatMul groups that onnxruntime's CPU provider does slowly:
//   * QuantizeLinear to FP8 (per tensor): e.g. one activation quantized once for the Q, K and V projections
//     (onnxruntime merges the quantizer's duplicate Q nodes, so none of the groups can fold it);
//   * DequantizeLinear from FP8 (per tensor): e.g. the DQ nodes onnxruntime's QDQ propagation moves past
//     Transpose / Reshape;
//   * Gather(DequantizeLinear(quantized table), indices): embedding lookups; the fused node dequantizes only the
//     gathered rows instead of the whole table on every run.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ort_api.h"

namespace onnxq {

struct StandaloneQdqSpec {
  enum class Kind { kQuantizeFp8, kDequantizeFp8, kGatherDequantize };
  Kind kind = Kind::kQuantizeFp8;
  std::string input_name;  // Q / DQ input, or the Gather indices
  std::string key;         // the group's output name
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN;  // FP8 type or the table's type
  float scale = 1.0f;                                                             // Q / DQ (per tensor)
  // Gather: a rows x cols table, scale per tensor (axis -1), per row (axis 0) or per column (axis 1)
  std::vector<uint8_t> table;
  int64_t rows = 0, cols = 0;
  int scale_axis = -1;
  std::vector<float> table_scale;
  std::vector<int32_t> table_zero_point;  // empty (zero) or like table_scale
  std::vector<const OrtNode*> nodes;
};

std::optional<StandaloneQdqSpec> MatchStandaloneQdq(const Ort::ConstNode& node, bool fp8_supported,
                                                    std::string* why_not = nullptr);

}  // namespace onnxq
