#include "nodes/qdq_matmul_node.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/qgemm_u8s8_parallel.h"

namespace onnxq {

QdqMatMulNode::QdqMatMulNode(const QdqMatMulSpec& spec, size_t input_index, ThreadPool* pool,
                             size_t token_scale_index)
    : input_index_(input_index),
      input_kind_(spec.input_kind),
      activation_signed_(spec.activation_signed),
      quantize_scale_(spec.quantize_scale),
      kernel_(&kernels::SelectQGemmU8S8Kernel()),
      quantize_(kernels::SelectQuantizeLinearU8()),
      pool_(pool) {
  const int32_t shift = spec.activation_signed ? 128 : 0;
  quantize_zero_point_u8_ = spec.quantize_zero_point + shift;
  activation_zero_point_u8_ = spec.activation_zero_point + shift;
  const int8_t* zp = spec.weight_zero_point.empty() ? nullptr : spec.weight_zero_point.data();
  const std::vector<int8_t> dense = DenseWeight(spec);  // a sparse spec lands here when dense pays better
  weights_ = kernels::PackWeightsS8(kernel_->layout, dense.data(), spec.K, spec.N, zp,
                                    static_cast<int64_t>(spec.weight_zero_point.size()));
  to_u8_.kind = spec.input_kind;
  to_u8_.is_signed = spec.activation_signed;
  to_u8_.quantize_scale = spec.quantize_scale;
  to_u8_.quantize_zero_point_u8 = quantize_zero_point_u8_;
  to_u8_.quantize = quantize_;
  scale_ = spec.ColumnScales();
  bias_ = spec.bias;
  token_scale_index_ = token_scale_index;
  if (spec.per_token() != (token_scale_index != kNoInput))
    throw std::runtime_error("per-token MatMul group without its scale input");
}

void QdqMatMulNode::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  const int64_t K = weights_.K, N = weights_.N;
  const MatMulIO io = BindMatMulIO(context, input_index_, K, N);
  if (io.out == nullptr || io.M == 0) return;
  const Ort::ConstValue& input = io.input;
  const int64_t M = io.M;
  float* out = io.out;

  // Activations in u8, rows padded to the kernels' K groups. Per-thread scratch: concurrent Run()s each use
  // their own calling thread's buffer, and steady-state runs allocate nothing.
  const int64_t lda = kernels::RoundUp(K, kernel_->k_align);
  const int64_t rows = kernels::RoundUp(M, kernel_->m_align);
  thread_local std::vector<uint8_t> a_u8;
  if (a_u8.size() < static_cast<size_t>(rows * lda)) a_u8.resize(static_cast<size_t>(rows * lda));
  const float* row_scale = nullptr;
  if (token_scale_index_ != kNoInput) {
    // Per-token (ZeroQuant): row m is quantized with its own scale s_m (s8, shifted to u8 with zero point 128);
    // the GEMM applies weight_scale[n]; the row scale and the bias follow, in this order:
    // y = (acc * weight_scale[n]) * s_m + bias[n].
    const Ort::ConstValue s = context.GetInput(token_scale_index_);
    const auto info = s.GetTensorTypeAndShapeInfo();
    const bool quantized = input_kind_ == QdqMatMulSpec::InputKind::kQuantizedPerToken;
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ||
        io.type != (quantized ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT))
      throw std::runtime_error("per-token MatMul: the activation must be float (or int8) and the scale float");
    if (info.GetElementCount() != static_cast<size_t>(M))
      throw std::runtime_error("per-token MatMul: the scale has " + std::to_string(info.GetElementCount()) +
                               " values for " + std::to_string(M) + " rows");
    row_scale = s.GetTensorData<float>();
    if (quantized) {
      const int8_t* xq = input.GetTensorData<int8_t>();
      for (int64_t m = 0; m < M; ++m) kernels::ShiftS8ToU8Ref(xq + m * K, static_cast<size_t>(K), a_u8.data() + m * lda);
    } else {
      const float* x = input.GetTensorData<float>();
      for (int64_t m = 0; m < M; ++m)
        quantize_(x + m * K, static_cast<size_t>(K), row_scale[m], 128, a_u8.data() + m * lda);
    }
  } else {
    to_u8_(input, io.type, M, K, lda, a_u8.data());
  }

  kernels::QGemmU8S8Args args;
  args.M = M;
  args.A = a_u8.data();
  args.lda = lda;
  args.a_zero_point = activation_zero_point_u8_;
  args.B = &weights_;
  args.epilogue.scale = scale_.data();
  args.epilogue.bias = bias_.empty() || row_scale != nullptr ? nullptr : bias_.data();
  args.C = out;
  args.ldc = N;
  kernels::QGemmU8S8Parallel(*kernel_, args, pool_);
  if (row_scale != nullptr) ApplyRowScales(out, M, N, row_scale, bias_.empty() ? nullptr : bias_.data());
}

void ApplyRowScales(float* y, int64_t M, int64_t N, const float* row_scale, const float* bias) {
  for (int64_t m = 0; m < M; ++m) {
    float* row = y + m * N;
    const float s = row_scale[m];
    if (bias == nullptr) {
      for (int64_t n = 0; n < N; ++n) row[n] = row[n] * s;
    } else {
      for (int64_t n = 0; n < N; ++n) row[n] = row[n] * s + bias[n];
    }
  }
}

}  // namespace onnxq
