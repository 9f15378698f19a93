// The compiled form of a claimed FP8 Q/DQ MatMul / Gemm group: FP8 weights (E4M3FN / E5M2) packed once, float or
// FP8 activations brought to bf16 per Run(), bf16 x FP8 GEMM with the dequantization scales and bias fused.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/fp8.h"
#include "kernels/gemm_bf16_fp8w.h"
#include "nodes/activation_bf16.h"
#include "nodes/compiled_node.h"
#include "patterns/qdq_matmul_pattern.h"
#include "runtime/thread_pool.h"

namespace onnxq {

class Fp8MatMulNode : public CompiledNode {
 public:
  Fp8MatMulNode(const QdqMatMulSpec& spec, size_t input_index, ThreadPool* pool);

  void Compute(OrtKernelContext* context) const override;
  const char* kernel_name() const override { return kernel_->name; }

 private:
  size_t input_index_;
  const kernels::GemmBf16Fp8Kernel* kernel_;
  ActivationToBf16 to_bf16_;
  kernels::PackedWeightsFp8 weights_;
  std::vector<float> scale_;  // (activation_scale *) weight_scale[n]
  std::vector<float> bias_;
  ThreadPool* pool_;
};

}  // namespace onnxq
