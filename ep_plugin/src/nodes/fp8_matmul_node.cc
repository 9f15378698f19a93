#include "nodes/fp8_matmul_node.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/parallel_gemm.h"

namespace onnxq {
namespace {

kernels::Fp8Format FormatOf(ONNXTensorElementDataType t) {
  return t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E5M2 ? kernels::Fp8Format::kE5M2 : kernels::Fp8Format::kE4M3FN;
}

}  // namespace

Fp8MatMulNode::Fp8MatMulNode(const QdqMatMulSpec& spec, size_t input_index, ThreadPool* pool)
    : input_index_(input_index),
      input_kind_(spec.input_kind),
      quantize_scale_(spec.quantize_scale),
      kernel_(&kernels::SelectGemmBf16Fp8Kernel()),
      fast_convert_(kernels::HasFastGemmBf16Fp8Kernel()),
      pool_(pool) {
  if (input_kind_ != QdqMatMulSpec::InputKind::kFloatWeightOnly) activation_format_ = FormatOf(spec.activation_type);
  const std::vector<int8_t> dense = DenseWeight(spec);  // sparse FP8: dense fallback (no sparse FP8 kernel yet)
  weights_ = kernels::PackWeightsFp8(kernel_->layout, reinterpret_cast<const uint8_t*>(dense.data()), spec.K, spec.N,
                                     FormatOf(spec.weight_type));
  const float a_scale = input_kind_ == QdqMatMulSpec::InputKind::kFloatWeightOnly ? 1.0f : spec.activation_scale;
  scale_.resize(static_cast<size_t>(spec.N));
  for (int64_t n = 0; n < spec.N; ++n) scale_[n] = a_scale * spec.weight_scale[spec.weight_scale.size() == 1 ? 0 : n];
  bias_ = spec.bias;
  for (int i = 0; i < 256; ++i)
    fp8_to_bf16_[i] = kernels::FloatToBf16(kernels::Fp8ToFloat(static_cast<uint8_t>(i), activation_format_));
}

void Fp8MatMulNode::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  const int64_t K = weights_.K, N = weights_.N;
  const MatMulIO io = BindMatMulIO(context, input_index_, K, N);
  if (io.out == nullptr || io.M == 0) return;
  const Ort::ConstValue& input = io.input;
  const int64_t M = io.M;
  float* out = io.out;

  // Activations as bf16 rows of k_padded (an odd K gets a +0 pad: the pad weight is 0, and 0 * garbage could be NaN).
  const int64_t lda = weights_.k_padded;
  const int64_t rows = (M + kernel_->m_align - 1) / kernel_->m_align * kernel_->m_align;
  thread_local std::vector<uint16_t> a;
  if (a.size() < static_cast<size_t>(rows * lda)) a.resize(static_cast<size_t>(rows * lda));
  const auto type = io.type;
  if (input_kind_ == QdqMatMulSpec::InputKind::kQuantized) {
    const uint8_t* src = static_cast<const uint8_t*>(input.GetTensorRawData());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) a[m * lda + k] = fp8_to_bf16_[src[m * K + k]];
  } else {
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw std::runtime_error("expected a float activation");
    const float* x = input.GetTensorData<float>();
    const bool weight_only = input_kind_ == QdqMatMulSpec::InputKind::kFloatWeightOnly;
    for (int64_t m = 0; m < M; ++m) {
      uint16_t* dst = a.data() + m * lda;
      if (weight_only) {
        (fast_convert_ ? kernels::ConvertToBf16Avx512 : kernels::ConvertToBf16Ref)(x + m * K, static_cast<size_t>(K), dst);
      } else {
        (fast_convert_ ? kernels::QuantizeFp8ToBf16Avx512 : kernels::QuantizeFp8ToBf16Ref)(
            x + m * K, static_cast<size_t>(K), quantize_scale_, activation_format_, dst);
      }
    }
  }
  if (lda > K)
    for (int64_t m = 0; m < M; ++m) std::fill(a.begin() + m * lda + K, a.begin() + (m + 1) * lda, uint16_t{0});

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
