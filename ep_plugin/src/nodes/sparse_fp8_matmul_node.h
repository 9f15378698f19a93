// Compiled FP8 Q/DQ MatMul whose weight is block-sparse (4 x 1): blocks widened to bf16 pairs once, activations
// (float weight-only, or FP8 through Q/DQ) brought to bf16 per run, tokens-as-lanes AVX512-BF16 kernel, else the
// AVX2 + FMA one (fp32 sums).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ep_config.h"
#include "kernels/fp8.h"
#include "kernels/spmm_bf16_fp8w.h"
#include "nodes/activation_bf16.h"
#include "nodes/compiled_node.h"
#include "patterns/qdq_matmul_pattern.h"
#include "runtime/thread_pool.h"

namespace onnxq {

class SparseFp8MatMulNode : public CompiledNode {
 public:
  SparseFp8MatMulNode(const QdqMatMulSpec& spec, size_t input_index, ThreadPool* pool);
  void Compute(OrtKernelContext* context) const override;
  const char* kernel_name() const override { return avx2_ ? "sparse4x1-fp8-avx2" : "sparse4x1-fp8-avx512bf16"; }
  // As SparseQdqMatMulNode::Pays, for FP8 weights.
  static bool Pays(const QdqMatMulSpec& spec, SparseMode mode);

 private:
  static bool UseAvx512();  // AVX512-BF16 kernel; else AVX2 (Pays() checked one of them is there)

  size_t input_index_;
  bool avx2_;
  ActivationToBf16 to_bf16_;
  kernels::BlockSparseBf16 weights_;
  std::vector<float> scale_, bias_;
  ThreadPool* pool_;
};

}  // namespace onnxq
