// Compiled standalone FP8 Q / DQ and fused DQ(table) -> Gather (see patterns/qdq_standalone_pattern.h).
#pragma once
#include <cstddef>
#include <string>

#include "kernels/fp8.h"
#include "nodes/compiled_node.h"
#include "patterns/qdq_standalone_pattern.h"

namespace onnxq {

class StandaloneQdqNode : public CompiledNode {
 public:
  StandaloneQdqNode(const StandaloneQdqSpec& spec, size_t input_index);
  void Compute(OrtKernelContext* context) const override;
  const char* kernel_name() const override;

 private:
  StandaloneQdqSpec spec_;
  size_t input_index_;
  // FP8 Q / DQ: the variants chosen when the node is built (the ISA ceiling applies), and the kernel name
  kernels::QuantizeFp8Fn* quantize_ = nullptr;
  kernels::DequantizeFp8Fn* dequantize_ = nullptr;
  std::string kernel_name_;
};

}  // namespace onnxq
