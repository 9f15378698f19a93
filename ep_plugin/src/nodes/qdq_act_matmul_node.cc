#include "nodes/qdq_act_matmul_node.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cpu_features.h"
#include "kernels/parallel_gemm.h"
#include "nodes/activation_bf16.h"

namespace onnxq {
namespace {

QdqActMatMulNode::Side MakeSide(const qdq::QuantizedInput& in, size_t index) {
  QdqActMatMulNode::Side s;
  s.input_index = index;
  s.kind = in.kind;
  s.is_signed = in.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
  const int32_t shift = s.is_signed ? 128 : 0;
  s.quantize_scale = in.quantize_scale;
  s.quantize_zero_point_u8 = in.quantize_zero_point + shift;
  s.zero_point_u8 = in.dequantize_zero_point + shift;
  if (qdq::IsFp8(in.type)) {
    s.format = Fp8FormatOf(in.type);
    for (int i = 0; i < 256; ++i)
      s.fp8_to_bf16[i] = kernels::FloatToBf16(kernels::Fp8ToFloat(static_cast<uint8_t>(i), s.format));
  }
  return s;
}

// Numpy-style broadcast of the batch dimensions (all but the last two).
std::vector<int64_t> BroadcastBatch(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  const size_t na = a.size() - 2, nb = b.size() - 2, n = std::max(na, nb);
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i + na >= n ? a[i + na - n] : 1;
    const int64_t db = i + nb >= n ? b[i + nb - n] : 1;
    if (da != db && da != 1 && db != 1)
      throw std::runtime_error("MatMul batch dimensions do not broadcast: " + std::to_string(da) + " vs " +
                               std::to_string(db));
    out[i] = std::max(da, db);
  }
  return out;
}

// Index of output batch `p` in an operand with batch dims `dims` (broadcast dims of size 1 repeat).
int64_t OperandBatch(int64_t p, const std::vector<int64_t>& out_batch, const std::vector<int64_t>& shape) {
  const size_t n = out_batch.size(), nd = shape.size() - 2;
  int64_t index = 0, stride = 1;
  for (size_t i = n; i-- > 0;) {
    const int64_t coord = p % out_batch[i];
    p /= out_batch[i];
    if (i + nd >= n) {
      const int64_t d = shape[i + nd - n];
      index += (d == 1 ? 0 : coord) * stride;
      stride *= d;
    }
  }
  return index;
}

// u8-domain values of one operand (INT8 path), contiguous.
// (`type` is looked up once per Compute: each GetTensorTypeAndShapeInfo call allocates.)
void ToU8(const QdqActMatMulNode::Side& s, const Ort::ConstValue& v, ONNXTensorElementDataType type,
          kernels::QuantizeLinearU8Fn quantize, size_t offset, size_t n, uint8_t* dst) {
  if (s.kind == qdq::QuantizedInput::Kind::kFloatQuantizeInKernel) {
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw std::runtime_error("expected a float input");
    quantize(v.GetTensorData<float>() + offset, n, s.quantize_scale, s.quantize_zero_point_u8, dst);
  } else if (s.is_signed) {
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8) throw std::runtime_error("expected an int8 input");
    kernels::ShiftS8ToU8Ref(v.GetTensorData<int8_t>() + offset, n, dst);
  } else {
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) throw std::runtime_error("expected a uint8 input");
    std::memcpy(dst, v.GetTensorData<uint8_t>() + offset, n);
  }
}

// bf16 values of one operand (FP8 path), contiguous.
void ToBf16(const QdqActMatMulNode::Side& s, const Ort::ConstValue& v, ONNXTensorElementDataType type,
            kernels::QuantizeFp8ToBf16Fn* quantize, size_t offset, size_t n, uint16_t* dst) {
  if (s.kind == qdq::QuantizedInput::Kind::kFloatQuantizeInKernel) {
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw std::runtime_error("expected a float input");
    quantize(v.GetTensorData<float>() + offset, n, s.quantize_scale, s.format, dst);
  } else {
    const uint8_t* src = static_cast<const uint8_t*>(v.GetTensorRawData()) + offset;
    for (size_t i = 0; i < n; ++i) dst[i] = s.fp8_to_bf16[src[i]];
  }
}

}  // namespace

QdqActMatMulNode::QdqActMatMulNode(const QdqActMatMulSpec& spec, size_t a_index, size_t b_index, ThreadPool* pool)
    : fp8_(spec.fp8),
      a_(MakeSide(spec.a, a_index)),
      b_(MakeSide(spec.b, b_index)),
      scale_(spec.a.dequantize_scale * spec.b.dequantize_scale),
      quantize_u8_(kernels::SelectQuantizeLinearU8()),
      quantize_fp8_to_bf16_(kernels::QuantizeFp8ToBf16Variants().front().fn),
      pool_(pool) {
  // PackBf16PanelsAvx512 lives in the AVX512-BF16 GEMM's file: enter it only where that GEMM could run
  const kernels::CpuFeatures f = kernels::GetCpuFeatures();
  avx512_panels_ = f.avx512_bf16 && f.avx512_vbmi && f.avx512bw && f.avx512vl;
  if (fp8_)
    fp8_kernel_ = &kernels::SelectGemmBf16Fp8Kernel();
  else
    int8_kernel_ = &kernels::SelectQGemmU8S8Kernel();
}

void QdqActMatMulNode::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  const size_t n_inputs = context.GetInputCount();
  if (a_.input_index >= n_inputs || b_.input_index >= n_inputs) throw std::runtime_error("MatMul input missing");
  Ort::ConstValue a = context.GetInput(a_.input_index);
  Ort::ConstValue b = context.GetInput(b_.input_index);
  if (static_cast<const OrtValue*>(a) == nullptr || !a.IsTensor())
    throw std::runtime_error("input is missing or not a tensor");
  if (static_cast<const OrtValue*>(b) == nullptr || !b.IsTensor())
    throw std::runtime_error("input is missing or not a tensor");
  const std::vector<int64_t> sa = a.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> sb = b.GetTensorTypeAndShapeInfo().GetShape();
  if (sa.size() < 2 || sb.size() < 2) throw std::runtime_error("activation MatMul needs inputs of rank >= 2");
  const int64_t M = sa[sa.size() - 2], K = sa.back(), N = sb.back();
  if (sb[sb.size() - 2] != K)
    throw std::runtime_error("MatMul inner dimensions differ: " + std::to_string(K) + " vs " +
                             std::to_string(sb[sb.size() - 2]));
  const std::vector<int64_t> batch = BroadcastBatch(sa, sb);
  std::vector<int64_t> out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Ort::UnownedValue output = context.GetOutput(0, out_shape);
  // onnxruntime hands out no buffer for an output nothing reads (e.g. a hostile file dropped it from the graph
  // outputs): a null value, whose data pointer must not be taken. Nothing to compute then. (tools/fuzz)
  if (static_cast<OrtValue*>(output) == nullptr) return;
  float* out = output.GetTensorMutableData<float>();
  int64_t batches = 1;
  for (int64_t d : batch) batches *= d;
  if (batches == 0 || M == 0 || N == 0) return;
  if (K == 0) {
    std::fill(out, out + batches * M * N, 0.0f);
    return;
  }
  if (fp8_)
    ComputeFp8(a, b, batch, M, K, N, out);
  else if (K > kernels::kQGemmMaxK)
    ComputeInt8Wide(a, b, batch, M, K, N, out);
  else
    ComputeInt8(a, b, batch, M, K, N, out);
}

void QdqActMatMulNode::ComputeInt8Wide(Ort::ConstValue a, Ort::ConstValue b, const std::vector<int64_t>& batch,
                                       int64_t M, int64_t K, int64_t N, float* out) const {
  const std::vector<int64_t> sa = a.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> sb = b.GetTensorTypeAndShapeInfo().GetShape();
  const ONNXTensorElementDataType ta = a.GetTensorTypeAndShapeInfo().GetElementType();
  const ONNXTensorElementDataType tb = b.GetTensorTypeAndShapeInfo().GetElementType();
  int64_t batches = 1;
  for (int64_t d : batch) batches *= d;
  std::vector<uint8_t> a_u8(static_cast<size_t>(M * K)), b_u8(static_cast<size_t>(K * N));
  const int32_t za = a_.zero_point_u8, zb = b_.zero_point_u8;
  for (int64_t p = 0; p < batches; ++p) {
    const int64_t ia = OperandBatch(p, batch, sa), ib = OperandBatch(p, batch, sb);
    ToU8(a_, a, ta, quantize_u8_, static_cast<size_t>(ia * M * K), static_cast<size_t>(M * K), a_u8.data());
    ToU8(b_, b, tb, quantize_u8_, static_cast<size_t>(ib * K * N), static_cast<size_t>(K * N), b_u8.data());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        int64_t acc = 0;
        for (int64_t k = 0; k < K; ++k)
          acc += static_cast<int64_t>(a_u8[m * K + k] - za) * static_cast<int64_t>(b_u8[k * N + n] - zb);
        out[(p * M + m) * N + n] = static_cast<float>(acc) * scale_;
      }
  }
}

void QdqActMatMulNode::ComputeInt8(Ort::ConstValue a, Ort::ConstValue b, const std::vector<int64_t>& batch, int64_t M,
                                   int64_t K, int64_t N, float* out) const {
  const std::vector<int64_t> sa = a.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> sb = b.GetTensorTypeAndShapeInfo().GetShape();
  int64_t batches = 1;
  for (int64_t d : batch) batches *= d;
  const std::vector<float> scale(static_cast<size_t>(N), scale_);
  const int8_t b_zero_point = static_cast<int8_t>(b_.zero_point_u8 - 128);
  const ONNXTensorElementDataType ta = a.GetTensorTypeAndShapeInfo().GetElementType();
  const ONNXTensorElementDataType tb = b.GetTensorTypeAndShapeInfo().GetElementType();
  auto one = [&](int64_t p, ThreadPool* inner) {
    const int64_t ia = OperandBatch(p, batch, sa), ib = OperandBatch(p, batch, sb);
    const int64_t lda = kernels::RoundUp(K, int8_kernel_->k_align);
    thread_local std::vector<uint8_t> a_u8, b_u8;
    thread_local std::vector<int8_t> b_s8;
    a_u8.resize(static_cast<size_t>(kernels::RoundUp(M, int8_kernel_->m_align) * lda));
    if (lda == K) {
      ToU8(a_, a, ta, quantize_u8_, static_cast<size_t>(ia * M * K), static_cast<size_t>(M * K), a_u8.data());
    } else {
      for (int64_t m = 0; m < M; ++m)
        ToU8(a_, a, ta, quantize_u8_, static_cast<size_t>((ia * M + m) * K), static_cast<size_t>(K),
             a_u8.data() + m * lda);
    }
    b_u8.resize(static_cast<size_t>(K * N));
    ToU8(b_, b, tb, quantize_u8_, static_cast<size_t>(ib * K * N), static_cast<size_t>(K * N), b_u8.data());
    b_s8.resize(b_u8.size());
    const uint8_t* bu = b_u8.data();
    int8_t* bs = b_s8.data();
    for (size_t i = 0, n8 = b_u8.size(); i < n8; ++i) bs[i] = static_cast<int8_t>(bu[i] ^ 0x80u);
    thread_local kernels::PackedWeightsS8 packed;  // storage reused across heads and runs
    kernels::RepackWeightsS8(int8_kernel_->layout, b_s8.data(), K, N, b_zero_point, &packed);
    kernels::QGemmU8S8Args args;
    args.M = M;
    args.A = a_u8.data();
    args.lda = lda;
    args.a_zero_point = a_.zero_point_u8;
    args.B = &packed;
    args.epilogue.scale = scale.data();
    args.C = out + p * M * N;
    args.ldc = N;
    kernels::ParallelGemm(inner, M, N, K, int8_kernel_->panel_width, int8_kernel_->m_step,
                          [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
                            int8_kernel_->compute(args, m0, m1, n0, n1);
                          });
  };
  if (batches == 1 || pool_ == nullptr || pool_->num_threads() == 1) {
    for (int64_t p = 0; p < batches; ++p) one(p, pool_);
  } else {
    pool_->ParallelFor(static_cast<size_t>(batches), [&](size_t p) { one(static_cast<int64_t>(p), nullptr); });
  }
}

void QdqActMatMulNode::ComputeFp8(Ort::ConstValue a, Ort::ConstValue b, const std::vector<int64_t>& batch, int64_t M,
                                  int64_t K, int64_t N, float* out) const {
  const std::vector<int64_t> sa = a.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> sb = b.GetTensorTypeAndShapeInfo().GetShape();
  int64_t batches = 1;
  for (int64_t d : batch) batches *= d;
  const std::vector<float> scale(static_cast<size_t>(N), scale_);
  const ONNXTensorElementDataType ta = a.GetTensorTypeAndShapeInfo().GetElementType();
  const ONNXTensorElementDataType tb = b.GetTensorTypeAndShapeInfo().GetElementType();
  kernels::PackedWeightsFp8 header;  // shape only: B arrives packed as bf16 panels
  header.K = K;
  header.N = N;
  header.k_padded = (K + 1) / 2 * 2;
  auto one = [&](int64_t p, ThreadPool* inner) {
    const int64_t ia = OperandBatch(p, batch, sa), ib = OperandBatch(p, batch, sb);
    const int64_t lda = header.k_padded;
    thread_local std::vector<uint16_t> a_bf16, b_bf16, panels;
    a_bf16.resize(static_cast<size_t>(M * lda));
    for (int64_t m = 0; m < M; ++m) {
      ToBf16(a_, a, ta, quantize_fp8_to_bf16_, static_cast<size_t>((ia * M + m) * K), static_cast<size_t>(K),
             a_bf16.data() + m * lda);
      if (lda > K) a_bf16[m * lda + K] = 0;
    }
    b_bf16.resize(static_cast<size_t>(K * N));
    ToBf16(b_, b, tb, quantize_fp8_to_bf16_, static_cast<size_t>(ib * K * N), static_cast<size_t>(K * N),
           b_bf16.data());
    panels.resize(kernels::Bf16PanelsSize(K, N));
    (avx512_panels_ ? kernels::PackBf16PanelsAvx512 : kernels::PackBf16Panels)(b_bf16.data(), K, N, N,
                                                                                panels.data());
    kernels::GemmBf16Fp8Args args;
    args.M = M;
    args.A = a_bf16.data();
    args.lda = lda;
    args.B = &header;
    args.scale = scale.data();
    args.C = out + p * M * N;
    args.ldc = N;
    const uint16_t* pp = panels.data();
    kernels::ParallelGemm(inner, M, N, K, 64, fp8_kernel_->m_step, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
      fp8_kernel_->compute_bf16_panels(args, pp, m0, m1, n0, n1);
    });
  };
  if (batches == 1 || pool_ == nullptr || pool_->num_threads() == 1) {
    for (int64_t p = 0; p < batches; ++p) one(p, pool_);
  } else {
    pool_->ParallelFor(static_cast<size_t>(batches), [&](size_t p) { one(static_cast<int64_t>(p), nullptr); });
  }
}

}  // namespace onnxq
