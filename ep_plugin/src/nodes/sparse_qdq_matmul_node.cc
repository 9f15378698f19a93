#include "nodes/sparse_qdq_matmul_node.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/aligned_buffer.h"
#include "kernels/cpu_features.h"
#include "kernels/qgemm_u8s8.h"

namespace onnxq {

bool SparseQdqMatMulNode::Pays(const QdqMatMulSpec& spec, SparseMode mode) {
  if (!spec.sparse || spec.is_fp8() || spec.block_k != 4 || spec.block_n != 1) return false;
  const kernels::CpuFeatures f = kernels::GetCpuFeatures();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  if (!f.avx512_vnni && !avx2) return false;
  if (mode == SparseMode::kNever) return false;
  if (mode == SparseMode::kAlways) return true;
  const double total = static_cast<double>(spec.K / 4) * static_cast<double>(spec.N);
  const double sparsity = 1.0 - static_cast<double>(spec.sparse_block_rows.size()) / total;
  if (!f.avx512_vnni) {
    // AVX2 (Zen 5 at ONNXQ_MAX_ISA=avx2, 1 thread, M = 32..512, BERT-base shapes): the sparse kernel matches the
    // exact dense AVX2 kernel (vpmaddwd, 4 x 24 tile) at 20-25% block sparsity and beats it by 1.31-1.37x at 40%;
    // llvm-mca puts both inner loops at ~16 products per cycle on Zen 2. Decode steps (M <= 4) pay only from about
    // 80-90%: the dense kernel streams the weight there.
    return sparsity >= 0.4;
  }
  // Measured (tools/bench_sparse.py, 1 thread): on Zen 4 the sparse kernel matches the dense VNNI kernel at about
  // 40% block sparsity and beats it by 1.13-1.30x at 50%; on a Sapphire-Rapids-class CPU the dense AMX kernel is
  // fast enough that sparse pays only from about 95%.
  const bool dense_is_amx = std::string(kernels::SelectQGemmU8S8Kernel().name) == "amx";
  return sparsity >= (dense_is_amx ? 0.95 : 0.5);
}

SparseQdqMatMulNode::SparseQdqMatMulNode(const QdqMatMulSpec& spec, size_t input_index, ThreadPool* pool)
    : input_index_(input_index), pool_(pool) {
  const int32_t shift = spec.activation_signed ? 128 : 0;
  activation_zero_point_u8_ = spec.activation_zero_point + shift;
  weights_ = kernels::MakeBlockSparseS8(spec.weight.data(), static_cast<int64_t>(spec.weight.size()),
                                        spec.sparse_block_rows.data(), static_cast<int64_t>(spec.sparse_block_rows.size()),
                                        spec.sparse_col_ptr.data(), static_cast<int64_t>(spec.sparse_col_ptr.size()),
                                        spec.K, spec.N, spec.block_k, spec.block_n);
  scale_ = spec.ColumnScales();
  bias_ = spec.bias;
  to_u8_.kind = spec.input_kind;
  to_u8_.is_signed = spec.activation_signed;
  to_u8_.quantize_scale = spec.quantize_scale;
  to_u8_.quantize_zero_point_u8 = spec.quantize_zero_point + shift;
  to_u8_.quantize = kernels::SelectQuantizeLinearU8();
  avx2_ = !kernels::GetCpuFeatures().avx512_vnni;  // Pays() checked that AVX2 + FMA + F16C are there at least
  if (avx2_) kernels::PrepareBlockSparseS8Avx2(&weights_);
  quantize_into_tiles_ = !avx2_ && spec.input_kind == QdqMatMulSpec::InputKind::kFloatQuantizeInKernel &&
                         kernels::QuantizeReciprocalIsExact(to_u8_.quantize_scale, to_u8_.quantize_zero_point_u8);
}

void SparseQdqMatMulNode::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  const int64_t K = weights_.K, N = weights_.N;
  const MatMulIO io = BindMatMulIO(context, input_index_, K, N);
  if (io.out == nullptr || io.M == 0) return;
  const Ort::ConstValue& input = io.input;
  const int64_t M = io.M;
  float* out = io.out;

  thread_local std::vector<uint8_t> a_u8;
  const int threads = pool_ == nullptr ? 1 : pool_->num_threads();
  kernels::SpmmU8S8Args args;
  args.M = M;
  args.lda = K;
  args.a_zero_point = activation_zero_point_u8_;
  args.B = &weights_;
  args.epilogue.scale = scale_.data();
  args.epilogue.bias = bias_.empty() ? nullptr : bias_.data();
  args.C = out;
  args.ldc = N;
  if (avx2_) {  // u8 rows (quantized with SelectQuantizeLinearU8's kernel), widened to s16 as they are packed
    thread_local kernels::AlignedBuffer<int16_t> packed16;
    if (a_u8.size() < static_cast<size_t>(M * K)) a_u8.resize(static_cast<size_t>(M * K));
    to_u8_(input, io.type, M, K, K, a_u8.data());
    packed16.EnsureSize(kernels::PackedTokensS16Size(M, K));
    kernels::PackTokensS16Avx2(a_u8.data(), M, K, K, packed16.data());
    args.A = a_u8.data();
    const int16_t* pk = packed16.data();
    ThreadPool::ParallelRanges(pool_, N, threads, [&](int64_t n0, int64_t n1) {
      kernels::SpmmU8S8_4x1_Avx2(args, pk, n0, n1);
    });
    return;
  }
  thread_local kernels::AlignedBuffer<uint8_t> packed;  // 64-byte aligned: the kernel's zmm loads never split lines
  packed.EnsureSize(kernels::PackedTokensSize(M, K));
  if (quantize_into_tiles_ && M > kernels::kSpmmGemvMaxM) {  // float rows straight into token tiles
    if (io.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw std::runtime_error("expected a float activation");
    const float* x = input.GetTensorData<float>();
    uint8_t* dst = packed.data();
    const int64_t tiles = kernels::PackedTokenTiles(M);
    // one tile per task over the pool: serial, this tenth of the run capped 2 threads at ~1.8x
    ThreadPool::ParallelRanges(pool_, tiles, threads > 1 ? tiles : 1, [&](int64_t t0, int64_t t1) {
      kernels::QuantizePackTokensU8Avx512(x, M, K, K, to_u8_.quantize_scale, to_u8_.quantize_zero_point_u8, dst, t0,
                                          t1);
    });
  } else {
    if (a_u8.size() < static_cast<size_t>(M * K)) a_u8.resize(static_cast<size_t>(M * K));
    to_u8_(input, io.type, M, K, K, a_u8.data());
    kernels::PackTokensU8Avx512(a_u8.data(), M, K, K, packed.data());
  }

  args.A = a_u8.data();
  const uint8_t* pk = packed.data();
  ThreadPool::ParallelRanges(pool_, N, threads, [&](int64_t n0, int64_t n1) {
    kernels::SpmmU8S8_4x1_Avx512Vnni(args, pk, n0, n1);
  });
}

}  // namespace onnxq
