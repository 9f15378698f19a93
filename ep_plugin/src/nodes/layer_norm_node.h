// Compiled residual + LayerNorm group (see patterns/layer_norm_pattern.h): rows spread over the EP's pool.
#pragma once
#include <cstddef>
#include <vector>

#include "kernels/layer_norm.h"
#include "nodes/compiled_node.h"
#include "patterns/layer_norm_pattern.h"
#include "runtime/thread_pool.h"

namespace onnxq {

class LayerNormNode : public CompiledNode {
 public:
  // skip_index: the fused node's input index of the residual, ignored when spec.skip_name is empty
  LayerNormNode(const LayerNormSpec& spec, size_t input_index, size_t skip_index, ThreadPool* pool);
  void Compute(OrtKernelContext* context) const override;
  const char* kernel_name() const override { return kernel_name_; }

 private:
  std::vector<float> gamma_, beta_, bias_;
  float epsilon_;
  int64_t D_;
  bool has_skip_;
  size_t input_index_, skip_index_;
  ThreadPool* pool_;
  void (*kernel_)(const kernels::LayerNormArgs&, int64_t, int64_t);  // chosen at construction (ISA ceiling applies)
  const char* kernel_name_;
};

}  // namespace onnxq
