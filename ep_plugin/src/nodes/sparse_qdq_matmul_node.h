// Compiled INT8 Q/DQ MatMul whose weight is block-sparse (4 x 1 blocks): the compact blocks are kept as they are
// (never expanded) and run by a tokens-as-lanes kernel (AVX512-VNNI, else AVX2), columns spread over the EP's pool.
#pragma once
#include <cstddef>
#include <vector>

#include "ep_config.h"
#include "kernels/quantize.h"
#include "kernels/spmm_u8s8.h"
#include "nodes/activation_u8.h"
#include "nodes/compiled_node.h"
#include "patterns/qdq_matmul_pattern.h"
#include "runtime/thread_pool.h"

namespace onnxq {

class SparseQdqMatMulNode : public CompiledNode {
 public:
  SparseQdqMatMulNode(const QdqMatMulSpec& spec, size_t input_index, ThreadPool* pool);
  void Compute(OrtKernelContext* context) const override;
  const char* kernel_name() const override { return avx2_ ? "sparse4x1-avx2" : "sparse4x1-avx512vnni"; }

  // Whether this node (rather than a dense fallback) should run `spec` on this CPU: never without a sparse kernel
  // under the ceiling; otherwise as `mode` says, by measured break-even sparsity for kAuto.
  static bool Pays(const QdqMatMulSpec& spec, SparseMode mode);

 private:
  size_t input_index_;
  int32_t activation_zero_point_u8_;
  kernels::BlockSparseS8 weights_;
  std::vector<float> scale_, bias_;
  ActivationToU8 to_u8_;
  bool quantize_into_tiles_ = false;  // float input, scale the divide-free quantizer is exact for (VNNI kernel)
  bool avx2_ = false;                 // the AVX2 kernel (no AVX512-VNNI under the ISA ceiling)
  ThreadPool* pool_;
};

}  // namespace onnxq
