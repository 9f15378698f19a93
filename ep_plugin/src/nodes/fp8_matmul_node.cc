#include "nodes/fp8_matmul_node.h"

#include "kernels/cpu_features.h"
#include "kernels/parallel_gemm.h"

namespace onnxq {

Fp8MatMulNode::Fp8MatMulNode(const QdqMatMulSpec& spec, size_t input_index, ThreadPool* pool)
    : input_index_(input_index),
      kernel_(&kernels::SelectGemmBf16Fp8Kernel()),
      to_bf16_(spec),
      pool_(pool) {
  const std::vector<int8_t> dense = DenseWeight(spec);  // a sparse spec lands here when dense pays better
  weights_ = kernels::PackWeightsFp8(kernel_->layout, reinterpret_cast<const uint8_t*>(dense.data()), spec.K, spec.N,
                                     Fp8FormatOf(spec.weight_type));
  scale_ = spec.ColumnScales();
  bias_ = spec.bias;
}

void Fp8MatMulNode::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  const int64_t K = weights_.K, N = weights_.N;
  const MatMulIO io = BindMatMulIO(context, input_index_, K, N);
  if (io.out == nullptr || io.M == 0) return;
  const int64_t M = io.M;
  float* out = io.out;

  // Activations as bf16 rows of k_padded (an odd K gets a +0 pad: the pad weight is 0, and 0 * garbage could be NaN).
  const int64_t lda = weights_.k_padded;
  const int64_t rows = (M + kernel_->m_align - 1) / kernel_->m_align * kernel_->m_align;
  thread_local std::vector<uint16_t> a;
  if (a.size() < static_cast<size_t>(rows * lda)) a.resize(static_cast<size_t>(rows * lda));
  to_bf16_(io.input, io.type, M, K, lda, a.data());

  kernels::GemmBf16Fp8Args args;
  args.M = M;
  args.A = a.data();
  args.lda = lda;
  args.B = &weights_;
  args.scale = scale_.data();
  args.bias = bias_.empty() ? nullptr : bias_.data();
  args.C = out;
  args.ldc = N;
  kernels::ParallelGemm(pool_, M, N, K, kernel_->panel_width, kernel_->m_step,
                        [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) { kernel_->compute(args, m0, m1, n0, n1); });
}

}  // namespace onnxq
