// Small helpers over ONNX Runtime's read-only graph API (OrtGraph / OrtNode / OrtValueInfo), shared by the
// pattern matchers. Everything here treats the model as untrusted: missing pieces give "no match".
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ort_api.h"

namespace onnxq::graph {

inline bool IsNull(const Ort::ConstValueInfo& v) { return static_cast<const OrtValueInfo*>(v) == nullptr; }
inline bool IsNull(const Ort::ConstNode& n) { return static_cast<const OrtNode*>(n) == nullptr; }

// Node that produces `v`, or a null node for graph inputs and initializers.
Ort::ConstNode Producer(const Ort::ConstValueInfo& v);

// True when `v` is consumed by exactly `consumer` (once) and is not a graph output, so the producer of `v`
// can be folded into a fused group without anything outside needing `v`.
bool OnlyConsumedBy(const Ort::ConstValueInfo& v, const Ort::ConstNode& consumer);

bool IsOp(const Ort::ConstNode& n, const char* op_type);  // ONNX domain only

ONNXTensorElementDataType ElementType(const Ort::ConstValueInfo& v);  // UNDEFINED if not a tensor

// Shape of a value if known (-1 for symbolic dims); nullopt when the rank itself is unknown.
std::optional<std::vector<int64_t>> Shape(const Ort::ConstValueInfo& v);

// A constant initializer's value (weights, scales, zero points), or a null value.
Ort::ConstValue ConstantValue(const Ort::ConstValueInfo& v);

int64_t IntAttr(const Ort::ConstNode& n, const char* name, int64_t default_value);
float FloatAttr(const Ort::ConstNode& n, const char* name, float default_value);
bool HasAttr(const Ort::ConstNode& n, const char* name);

}  // namespace onnxq::graph
