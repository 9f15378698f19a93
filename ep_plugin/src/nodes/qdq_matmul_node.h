// The compiled form of a claimed INT8 Q/DQ MatMul / Gemm group (u8/s8 activations x s8 weights): weights prepacked once (at session creation)
// for the kernel variant chosen for this CPU, then a const (thread-safe) Compute per Run().
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/qgemm_u8s8.h"
#include "nodes/activation_u8.h"
#include "nodes/compiled_node.h"
#include "kernels/quantize.h"
#include "ort_api.h"
#include "patterns/qdq_matmul_pattern.h"
#include "runtime/thread_pool.h"

namespace onnxq {

class QdqMatMulNode : public CompiledNode {
 public:
  static constexpr size_t kNoInput = static_cast<size_t>(-1);
  // `input_index` is the position of the activation among the fused node's inputs; `token_scale_index` that of the
  // per-row scale for per-token specs (kFloatPerToken).
  QdqMatMulNode(const QdqMatMulSpec& spec, size_t input_index, ThreadPool* pool, size_t token_scale_index = kNoInput);

  void Compute(OrtKernelContext* context) const override;
  const char* kernel_name() const override { return kernel_->name; }

 private:
  size_t input_index_;
  QdqMatMulSpec::InputKind input_kind_;
  bool activation_signed_;
  float quantize_scale_;
  int32_t quantize_zero_point_u8_;  // zero point in the u8 domain (s8 zero point + 128)
  int32_t activation_zero_point_u8_;
  const kernels::QGemmU8S8Kernel* kernel_;
  kernels::QuantizeLinearU8Fn quantize_;
  kernels::PackedWeightsS8 weights_;
  std::vector<float> scale_;  // activation_scale * weight_scale[n] (per-token: weight_scale[n])
  std::vector<float> bias_;   // empty or N
  size_t token_scale_index_;   // kNoInput unless per-token
  ActivationToU8 to_u8_;
  ThreadPool* pool_;
};

// y[m, n] = y[m, n] * row_scale[m] (+ bias[n]): the per-token epilogue, after the GEMM's per-column scale.
void ApplyRowScales(float* y, int64_t M, int64_t N, const float* row_scale, const float* bias);

}  // namespace onnxq
