// Compiled GELU group (see patterns/gelu_pattern.h): elementwise, split over the EP's pool for large inputs.
#pragma once
#include <cstddef>

#include "nodes/compiled_node.h"
#include "runtime/thread_pool.h"

namespace onnxq {

class GeluNode : public CompiledNode {
 public:
  GeluNode(size_t input_index, ThreadPool* pool);
  void Compute(OrtKernelContext* context) const override;
  const char* kernel_name() const override { return fast_ ? "gelu-avx512" : "gelu-ref"; }

 private:
  size_t input_index_;
  ThreadPool* pool_;
  bool fast_;
};

}  // namespace onnxq
