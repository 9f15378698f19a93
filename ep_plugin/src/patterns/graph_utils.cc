#include "patterns/graph_utils.h"

#include <cstring>

namespace onnxq::graph {

Ort::ConstNode Producer(const Ort::ConstValueInfo& v) {
  if (IsNull(v)) return Ort::ConstNode{nullptr};
  return v.GetProducerNode().node;
}

bool OnlyConsumedBy(const Ort::ConstValueInfo& v, const Ort::ConstNode& consumer) {
  if (IsNull(v) || v.IsGraphOutput()) return false;
  const auto consumers = v.GetConsumers();
  if (consumers.size() != 1) return false;
  return static_cast<const OrtNode*>(consumers[0].node) == static_cast<const OrtNode*>(consumer);
}

bool IsOp(const Ort::ConstNode& n, const char* op_type) {
  if (IsNull(n)) return false;
  const std::string domain = n.GetDomain();
  return (domain.empty() || domain == "ai.onnx") && n.GetOperatorType() == op_type;
}

ONNXTensorElementDataType ElementType(const Ort::ConstValueInfo& v) {
  if (IsNull(v)) return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  auto type_info = v.TypeInfo();
  if (type_info.GetONNXType() != ONNX_TYPE_TENSOR) return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  return type_info.GetTensorTypeAndShapeInfo().GetElementType();
}

std::optional<std::vector<int64_t>> Shape(const Ort::ConstValueInfo& v) {
  if (IsNull(v)) return std::nullopt;
  auto type_info = v.TypeInfo();
  if (type_info.GetONNXType() != ONNX_TYPE_TENSOR) return std::nullopt;
  auto tensor_info = type_info.GetTensorTypeAndShapeInfo();
  if (!tensor_info.HasShape()) return std::nullopt;
  return tensor_info.GetShape();
}

Ort::ConstValue ConstantValue(const Ort::ConstValueInfo& v) {
  if (IsNull(v) || !v.IsConstantInitializer()) return Ort::ConstValue{nullptr};
  Ort::ConstValue value{nullptr};
  Ort::Status status = v.GetInitializer(value);
  if (!status.IsOK()) return Ort::ConstValue{nullptr};
  return value;
}

namespace {

// A scalar attribute of the given type, or the default when it is absent, of another type or unreadable.
template <typename T>
T ScalarAttr(const Ort::ConstNode& n, const char* name, OrtOpAttrType type, T default_value) {
  Ort::ConstOpAttr attr{nullptr};
  Ort::Status status = n.GetAttributeByName(name, attr);
  if (!status.IsOK() || static_cast<const OrtOpAttr*>(attr) == nullptr || attr.GetType() != type)
    return default_value;
  T value = default_value;
  if (!attr.GetValue(value).IsOK()) return default_value;
  return value;
}

}  // namespace

int64_t IntAttr(const Ort::ConstNode& n, const char* name, int64_t default_value) {
  return ScalarAttr<int64_t>(n, name, ORT_OP_ATTR_INT, default_value);
}

float FloatAttr(const Ort::ConstNode& n, const char* name, float default_value) {
  return ScalarAttr<float>(n, name, ORT_OP_ATTR_FLOAT, default_value);
}

bool HasAttr(const Ort::ConstNode& n, const char* name) {
  Ort::ConstOpAttr attr{nullptr};
  Ort::Status status = n.GetAttributeByName(name, attr);
  return status.IsOK() && static_cast<const OrtOpAttr*>(attr) != nullptr;
}

}  // namespace onnxq::graph
