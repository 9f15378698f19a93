// Compiled activation x activation Q/DQ MatMul (attention's Q.K^T and P.V): both operands quantized per call, B
// packed per call, batches spread over the EP's pool. INT8 goes through the u8 x s8 GEMM family, FP8 through the
// bf16 GEMM with bf16-packed B.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/fp8.h"
#include "kernels/gemm_bf16_fp8w.h"
#include "kernels/qgemm_u8s8.h"
#include "kernels/quantize.h"
#include "nodes/compiled_node.h"
#include "patterns/qdq_act_matmul_pattern.h"
#include "runtime/thread_pool.h"

namespace onnxq {

class QdqActMatMulNode : public CompiledNode {
 public:
  QdqActMatMulNode(const QdqActMatMulSpec& spec, size_t a_index, size_t b_index, ThreadPool* pool);
  void Compute(OrtKernelContext* context) const override;
  const char* kernel_name() const override { return fp8_ ? fp8_kernel_->name : int8_kernel_->name; }

  // One operand's way into the kernels' domain.
  struct Side {
    size_t input_index = 0;
    qdq::QuantizedInput::Kind kind = qdq::QuantizedInput::Kind::kFloatQuantizeInKernel;
    float quantize_scale = 1.0f;
    int32_t quantize_zero_point_u8 = 0;  // INT8: zero point in the u8 domain (s8 + 128)
    int32_t zero_point_u8 = 0;           // INT8: the dequantize zero point in the u8 domain
    bool is_signed = false;
    kernels::Fp8Format format = kernels::Fp8Format::kE4M3FN;
    uint16_t fp8_to_bf16[256] = {};
  };

 private:
  void ComputeInt8(Ort::ConstValue a, Ort::ConstValue b, const std::vector<int64_t>& batch, int64_t M, int64_t K,
                   int64_t N, float* out) const;
  // K past kQGemmMaxK (possible only when K was unknown at claim time): exact int64 sums, scalar.
  void ComputeInt8Wide(Ort::ConstValue a, Ort::ConstValue b, const std::vector<int64_t>& batch, int64_t M, int64_t K,
                       int64_t N, float* out) const;
  void ComputeFp8(Ort::ConstValue a, Ort::ConstValue b, const std::vector<int64_t>& batch, int64_t M, int64_t K,
                  int64_t N, float* out) const;

  bool fp8_;
  Side a_, b_;
  float scale_;  // a_scale * b_scale
  const kernels::QGemmU8S8Kernel* int8_kernel_ = nullptr;
  const kernels::GemmBf16Fp8Kernel* fp8_kernel_ = nullptr;
  kernels::QuantizeLinearU8Fn quantize_u8_;
  kernels::QuantizeFp8ToBf16Fn* quantize_fp8_to_bf16_;  // FP8: float operands quantized in the kernel
  // FP8: B's bf16 panels packed with the AVX-512 packer where the AVX512-BF16 GEMM's features are present
  bool avx512_panels_;
  ThreadPool* pool_;
};

}  // namespace onnxq
