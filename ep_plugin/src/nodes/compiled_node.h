// What a claimed group becomes after Compile: immutable state (prepacked weights) and a const Compute, so one
// instance serves concurrent Run() calls.
#pragma once
#include "ort_api.h"

namespace onnxq {

class CompiledNode {
 public:
  virtual ~CompiledNode() = default;
  virtual void Compute(OrtKernelContext* context) const = 0;
  virtual const char* kernel_name() const = 0;
};

}  // namespace onnxq
