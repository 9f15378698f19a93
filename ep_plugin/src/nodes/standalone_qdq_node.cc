#include "nodes/standalone_qdq_node.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/fp8.h"
#include "patterns/qdq_common.h"

namespace onnxq {
namespace {

kernels::Fp8Format FormatOf(ONNXTensorElementDataType t) {
  return t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E5M2 ? kernels::Fp8Format::kE5M2 : kernels::Fp8Format::kE4M3FN;
}

}  // namespace

StandaloneQdqNode::StandaloneQdqNode(const StandaloneQdqSpec& spec, size_t input_index)
    : spec_(spec), input_index_(input_index) {
  if (spec_.kind == StandaloneQdqSpec::Kind::kQuantizeFp8) {
    const auto best = kernels::QuantizeFp8Variants().front();
    quantize_ = best.fn;
    kernel_name_ = std::string("quantize-fp8-") + best.name;
  } else if (spec_.kind == StandaloneQdqSpec::Kind::kDequantizeFp8) {
    const auto best = kernels::DequantizeFp8Variants().front();
    dequantize_ = best.fn;
    kernel_name_ = std::string("dequantize-fp8-") + best.name;
  } else {
    kernel_name_ = "gather-dequantize";
  }
}

const char* StandaloneQdqNode::kernel_name() const { return kernel_name_.c_str(); }

void StandaloneQdqNode::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  if (input_index_ >= context.GetInputCount()) throw std::runtime_error("input missing");
  Ort::ConstValue input = context.GetInput(input_index_);
  if (static_cast<const OrtValue*>(input) == nullptr || !input.IsTensor())
    throw std::runtime_error("input is missing or not a tensor");
  auto info = input.GetTensorTypeAndShapeInfo();
  const std::vector<int64_t> shape = info.GetShape();
  const size_t count = info.GetElementCount();
  const auto in_type = info.GetElementType();
  if (spec_.kind == StandaloneQdqSpec::Kind::kQuantizeFp8) {
    if (in_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw std::runtime_error("expected a float input");
    Ort::UnownedValue out = context.GetOutput(0, shape);
    if (static_cast<OrtValue*>(out) == nullptr) return;  // nothing reads the output
    auto* y = static_cast<uint8_t*>(out.GetTensorMutableRawData());
    quantize_(input.GetTensorData<float>(), count, spec_.scale, FormatOf(spec_.type), y);
    return;
  }
  if (spec_.kind == StandaloneQdqSpec::Kind::kDequantizeFp8) {
    if (in_type != spec_.type) throw std::runtime_error("expected an FP8 input");
    Ort::UnownedValue out = context.GetOutput(0, shape);
    if (static_cast<OrtValue*>(out) == nullptr) return;
    dequantize_(static_cast<const uint8_t*>(input.GetTensorRawData()), count, spec_.scale, FormatOf(spec_.type),
                out.GetTensorMutableData<float>());
    return;
  }
  // Gather(DQ(table), indices): bounds-checked indices (negative ones count from the end, as in ONNX Gather).
  std::vector<int64_t> out_shape = shape;
  out_shape.push_back(spec_.cols);
  Ort::UnownedValue out = context.GetOutput(0, out_shape);
  if (static_cast<OrtValue*>(out) == nullptr) return;
  float* y = out.GetTensorMutableData<float>();
  const bool idx64 = in_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  if (!idx64 && in_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32) throw std::runtime_error("indices must be int32/64");
  const bool fp8 = qdq::IsFp8(spec_.type), is_signed = spec_.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
  float lut[256];
  if (fp8)
    for (int i = 0; i < 256; ++i) lut[i] = kernels::Fp8ToFloat(static_cast<uint8_t>(i), FormatOf(spec_.type));
  const int64_t cols = spec_.cols;
  for (size_t i = 0; i < count; ++i) {
    int64_t r = idx64 ? input.GetTensorData<int64_t>()[i] : input.GetTensorData<int32_t>()[i];
    if (r < 0) r += spec_.rows;
    if (r < 0 || r >= spec_.rows)
      throw std::runtime_error("Gather index " + std::to_string(r) + " is out of range [0, " +
                               std::to_string(spec_.rows) + ")");
    const uint8_t* row = spec_.table.data() + r * cols;
    float* dst = y + static_cast<int64_t>(i) * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const size_t s = spec_.scale_axis < 0 ? 0 : static_cast<size_t>(spec_.scale_axis == 0 ? r : c);
      if (fp8) {
        dst[c] = lut[row[c]] * spec_.table_scale[s];
      } else {
        const int32_t q = is_signed ? static_cast<int8_t>(row[c]) : row[c];
        const int32_t z = spec_.table_zero_point.empty() ? 0 : spec_.table_zero_point[s];
        dst[c] = static_cast<float>(q - z) * spec_.table_scale[s];
      }
    }
  }
}

}  // namespace onnxq
